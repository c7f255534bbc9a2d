"""The ``openai-compatible`` backend: a server speaking the OpenAI HTTP API, through plain :mod:`urllib`.

Explanations come from ``/chat/completions``; simulations from ``/completions`` with ``echo`` and
``logprobs``, read at each placeholder's position as in Bills et al.'s "all at once" simulator.
:mod:`sae_paper.analysis.autointerp.testserver` speaks the same API for the tests.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from sae_paper.analysis.autointerp.backends import (
    EXPLAIN_INSTRUCTIONS,
    PLACEHOLDER,
    Backend,
    BackendFailure,
    expected_value,
)


class OpenAICompatibleBackend(Backend):
    """A server speaking the OpenAI API. Explanations from ``/chat/completions``; simulations from
    ``/completions`` with ``echo`` and ``logprobs`` (top 15 at each prompt position), read at each
    placeholder's position as in Bills et al.'s "all at once" simulator."""

    name = "openai-compatible"

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, top_logprobs: int = 15):
        import os

        self.model, self.base_url, self.timeout, self.top_logprobs = model, base_url.rstrip("/"), timeout, top_logprobs
        self._api_key = os.environ.get(api_key_env, "")

    def _post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(self.base_url + path, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self._api_key}"} if self._api_key else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise BackendFailure(f"{self.base_url}{path}: {error}") from None
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise BackendFailure(f"{self.base_url}{path}: reply is not JSON ({body[:60]!r})") from None

    def explain(self, prompt: str) -> str:
        reply = self._post("/chat/completions", {
            "model": self.model, "temperature": 0, "max_tokens": 60,
            "messages": [{"role": "system", "content": EXPLAIN_INSTRUCTIONS}, {"role": "user", "content": prompt}],
        })
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendFailure("chat reply has no choices[0].message.content") from None
        if not isinstance(text, str) or not text.strip():
            raise BackendFailure("empty explanation")
        return text.strip().split("\n")[0]

    def simulate(self, prompt: str, n_tokens: int) -> list[float]:
        offsets = _placeholder_offsets(prompt)
        reply = self._post("/completions", {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                                            "echo": True, "logprobs": self.top_logprobs})
        try:
            logprobs = reply["choices"][0]["logprobs"]
            position = {int(offset): index for index, offset in enumerate(logprobs["text_offset"])}
            tops = logprobs["top_logprobs"]
            predictions = []
            for offset in offsets:
                if offset not in position:
                    raise BackendFailure(f"no prompt token starts at placeholder offset {offset}")
                predictions.append(expected_value(tops[position[offset]] or {}))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise BackendFailure("completion reply has no usable choices[0].logprobs (text_offset, top_logprobs)") from None
        return predictions


def _placeholder_offsets(prompt: str) -> list[int]:
    """Character offsets of the simulation placeholders after the last ``<start>`` (the fragment's)."""
    start = prompt.rindex("<start>\n") + len("<start>\n")
    pattern = re.escape("\t" + PLACEHOLDER + "\n")
    return [start + m.start() + 1 for m in re.finditer(pattern, prompt[start:])]
