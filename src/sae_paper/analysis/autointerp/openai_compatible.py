"""The ``openai-compatible`` backend: a server speaking the OpenAI HTTP API, through plain :mod:`urllib`.

Explanations come from ``/chat/completions``; simulations from ``/completions`` with ``echo`` and
``logprobs``, read at each placeholder's position as in Bills et al.'s "all at once" simulator.
:mod:`sae_paper.analysis.autointerp.testserver` speaks the same API for the tests.

Servers disagree on where a prompt token's distribution sits in the echoed logprobs
(``docs/servers.md``). OpenAI's convention, which vLLM follows, puts at entry ``i`` the distribution
the model gave for token ``i`` given the tokens before it (entry 0: None). llama-cpp-python 0.3.36's
server puts there the distribution of token ``i + 1`` (abetlen/llama-cpp-python#1983), so reading
the placeholder's own entry reads what follows the placeholder, silently. The backend therefore
checks each server once, before its first simulation: it sends :data:`PROBE`, a counting sequence
whose every next token is predictable, and finds the shift at which the prompt's own tokens are the
top candidates (:func:`convention_of`). It then reads each placeholder ``shift`` entries earlier,
or refuses the server with one line that says why.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import ClassVar, NamedTuple

from sae_paper.analysis.autointerp.backends import (
    EXPLAIN_INSTRUCTIONS,
    PLACEHOLDER,
    Backend,
    BackendFailure,
    expected_value,
)
from sae_paper.analysis.autointerp.classify import parse_answers

PROBE = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12"
"""The convention check's prompt: after the first few numbers even a 135M model predicts each next token."""
SHIFTS = {"openai": 0, "shifted-by-one": 1}
"""Each convention by how many entries before a token its distribution sits in the echoed logprobs."""
MIN_AGREEMENT = 0.5
"""The share of the probe's tokens that must be the top candidate at the chosen shift (SmolLM2-135M: 0.98)."""
CHAT_ONLY = "this server cannot simulate with logprobs; use scoring=detection or scoring=fuzzing"
REFUSED_STATUSES = (400, 404, 405, 422, 501)
"""HTTP statuses by which a server says it has no ``/completions`` with echo and logprobs (not a passing fault)."""


class Refused(BackendFailure):
    """The server cannot simulate (no ``/completions``, no echo logprobs, or a convention not found): a verdict
    on the server, kept for the process, unlike a passing fault."""


class EchoLogprobs(NamedTuple):
    """A ``/completions`` reply's echoed prompt: each token, where it starts in the prompt, its top candidates."""

    tokens: list[str]
    offsets: list[int]
    tops: list[dict[str, float] | None]
    """Entry i as the server put it (which token's distribution it is depends on the server's convention)."""


def echo_logprobs(reply: Mapping, prompt: str) -> EchoLogprobs:
    """The echoed logprobs of a reply, in the shapes seen: OpenAI's and llama-cpp-python's ``choices[0].logprobs``
    (None entries kept), vLLM's as well: its ``prompt_logprobs`` (token id -> {logprob, decoded_token}) fill
    missing entries, and a BOS token it decodes into the echo (text not in the prompt) is taken out of
    ``text_offset``. Raises :class:`Refused` (:data:`CHAT_ONLY`) when the reply has none."""
    try:
        choice = reply["choices"][0]
        logprobs = choice.get("logprobs") or {}
        tokens = [str(t) for t in logprobs["tokens"]]
        offsets = [int(o) for o in logprobs["text_offset"]]
        tops = list(logprobs.get("top_logprobs") or [None] * len(tokens))
        for i, entry in enumerate(choice.get("prompt_logprobs") or []):
            if entry and i < len(tops) and not tops[i]:
                tops[i] = {str(v["decoded_token"]): float(v["logprob"]) for v in entry.values()}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise Refused(f"completion reply has no echoed logprobs: {CHAT_ONLY}") from None
    if not tokens or len(offsets) != len(tokens) or len(tops) < len(tokens) or not any(tops):
        raise Refused(f"completion reply has no echoed logprobs: {CHAT_ONLY}")
    if len(tokens) > 1 and not prompt.startswith(tokens[0]) and prompt.startswith(tokens[1]):
        offsets = [o - offsets[1] for o in offsets]  # vLLM: the BOS token's text counted before the prompt
    return EchoLogprobs(tokens, offsets, [dict(t) if t else None for t in tops])


def agreement(echo: EchoLogprobs, shift: int) -> float:
    """The share of tokens that are the top candidate of the entry ``shift`` before them (where one exists)."""
    hits = total = 0
    for j, token in enumerate(echo.tokens):
        top = echo.tops[j - shift] if 0 <= j - shift < len(echo.tops) else None
        if top:
            total += 1
            hits += max(top, key=top.__getitem__) == token
    return hits / total if total else 0.0


def convention_of(echo: EchoLogprobs) -> str:
    """Which of :data:`SHIFTS` the probe's echo follows: the shift at which most of its tokens are the top
    candidates, if at least :data:`MIN_AGREEMENT` of them are and no other shift does as well. Raises
    :class:`Refused` otherwise."""
    shares = {name: agreement(echo, shift) for name, shift in SHIFTS.items()}
    best = max(shares, key=shares.__getitem__)
    if shares[best] < MIN_AGREEMENT or sum(share == shares[best] for share in shares.values()) > 1:
        found = ", ".join(f"{share:.0%} at {name}" for name, share in shares.items())
        raise Refused(f"echo logprobs match the prompt at no offset (the probe's tokens top candidates: {found}); "
                      "cannot simulate")
    return best


class OpenAICompatibleBackend(Backend):
    """A server speaking the OpenAI API. Explanations from ``/chat/completions``; simulations from
    ``/completions`` with ``echo`` and ``logprobs`` (top 15 at each prompt position), read at each
    placeholder's position as in Bills et al.'s "all at once" simulator, after the server's position
    convention was checked (:meth:`check_convention`)."""

    name = "openai-compatible"
    _checked: ClassVar[dict[tuple[str, str], tuple[str, str | None]]] = {}
    """(base_url, model) -> (convention, the refusal or None): every server is probed once per process."""

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, top_logprobs: int = 15):
        import os

        self.model, self.base_url, self.timeout, self.top_logprobs = model, base_url.rstrip("/"), timeout, top_logprobs
        self._api_key = os.environ.get(api_key_env, "")
        self.convention = "unchecked"
        """Where the server puts a token's distribution in its echo: a key of :data:`SHIFTS` once
        :meth:`check_convention` found it, "refused" when the server cannot simulate."""

    def _post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(self.base_url + path, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self._api_key}"} if self._api_key else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            kind = Refused if error.code in REFUSED_STATUSES else BackendFailure
            raise kind(f"{self.base_url}{path}: HTTP {error.code} {error.reason}{_said(error)}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise BackendFailure(f"{self.base_url}{path}: {error}") from None
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise BackendFailure(f"{self.base_url}{path}: reply is not JSON ({body[:60]!r})") from None

    def _chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        reply = self._post("/chat/completions", {"model": self.model, "temperature": 0, "max_tokens": max_tokens,
                                                 "messages": messages})
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendFailure("chat reply has no choices[0].message.content") from None
        if not isinstance(text, str) or not text.strip():
            raise BackendFailure("empty chat reply")
        return text.strip()

    def explain(self, prompt: str) -> str:
        messages = [{"role": "system", "content": EXPLAIN_INSTRUCTIONS}, {"role": "user", "content": prompt}]
        return self._chat(messages, max_tokens=60).split("\n")[0]

    def classify(self, prompt: str, n_examples: int) -> list[float]:
        """Detection or fuzzing through ``/chat/completions`` (any chat server will do, no logprobs): the reply's
        list of 0/1 answers (:func:`~sae_paper.analysis.autointerp.classify.parse_answers`)."""
        # "[1, 0, 1]": three tokens an answer at most, and room for a lead-in the parser skips
        return parse_answers(self._chat([{"role": "user", "content": prompt}], max_tokens=4 * n_examples + 24), n_examples)

    def settings(self) -> dict[str, object]:
        """Its settings with the server's :attr:`convention` (probed here if not yet, a refusal not raised):
        a score read at one convention is never reused for another."""
        try:
            self.check_convention()
        except BackendFailure:
            pass
        return super().settings()

    def simulation_kind(self) -> str:
        """``simulate@<convention>``: an answer read at one convention is not reused for another."""
        return f"simulate@{self.settings()['convention']}"

    def check_convention(self) -> str:
        """The server's convention (:data:`SHIFTS`), probed once per (base_url, model) with :data:`PROBE`.

        Raises :class:`BackendFailure`: for a server without echo logprobs, :data:`CHAT_ONLY`; for one
        whose echo matches the probe at no shift, the line of :func:`convention_of`; both are kept, so
        that a refused server is asked once. A passing fault (connection, timeout, 5xx) is not kept."""
        key = (self.base_url, self.model)
        if key not in self._checked:
            try:
                self._checked[key] = (convention_of(echo_logprobs(self._complete(PROBE), PROBE)), None)
            except Refused as refused:
                reason = str(refused).removeprefix(self.base_url)
                reason += "" if "cannot simulate" in reason else f": {CHAT_ONLY}"
                self._checked[key] = ("refused", f"{self.base_url} (model {self.model}): {reason}")
        self.convention, refusal = self._checked[key]
        if refusal is not None:
            raise Refused(refusal)
        return self.convention

    def _complete(self, prompt: str) -> dict:
        return self._post("/completions", {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                                           "echo": True, "logprobs": self.top_logprobs})

    def simulate(self, prompt: str, n_tokens: int) -> list[float]:
        shift = SHIFTS[self.check_convention()]
        echo = echo_logprobs(self._complete(prompt), prompt)
        position = {offset: index for index, offset in enumerate(echo.offsets)}
        predictions = []
        for offset in _placeholder_offsets(prompt):
            if offset not in position:
                raise BackendFailure(f"no prompt token starts at placeholder offset {offset}")
            # the placeholder's distribution: its own entry (OpenAI, vLLM), the one before it (llama-cpp-python)
            predictions.append(expected_value(echo.tops[position[offset] - shift] or {}))
        return predictions


def _said(error: urllib.error.HTTPError) -> str:
    """What the server said with an error status, on one line (llama.cpp: e.g. that the prompt exceeds n_ctx)."""
    try:
        body = json.loads(error.read() or b"null")
    except (OSError, ValueError):
        return ""
    said = body.get("error", body) if isinstance(body, dict) else body
    said = said.get("message", said) if isinstance(said, dict) else said
    return f" ({' '.join(str(said).split())[:200]})" if said else ""


def _placeholder_offsets(prompt: str) -> list[int]:
    """Character offsets of the simulation placeholders after the last ``<start>`` (the fragment's)."""
    start = prompt.rindex("<start>\n") + len("<start>\n")
    pattern = re.escape("\t" + PLACEHOLDER + "\n")
    return [start + m.start() + 1 for m in re.finditer(pattern, prompt[start:])]
