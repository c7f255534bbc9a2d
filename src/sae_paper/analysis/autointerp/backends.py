"""Explainer and simulator backends behind one small interface, chosen by name, every call cached on disk.

A :class:`Backend` does two things (Bills et al. 2023, as Section 3 of the paper used them):

- ``explain(records)``: from a few top fragments with their per-token activations (integers
  0..10) write an explanation of what the feature fires on;
- ``simulate(explanation, fragment)``: from the explanation alone predict the feature's
  activation on every token of a fragment, as the expected value over the probabilities of
  the values "0".."10" ("all at once": one prompt per fragment, logprobs read at every
  token's position).

Backends (:data:`BACKENDS`, ``make_backend(name, ...)``):

- ``token-list``: **a deterministic stand-in for the paper's GPT-4 explainer and GPT-3.5
  simulator, not an LLM**. The explanation lists the tokens that carry the activation in the
  top fragments, with their mean activation as weight; the simulator predicts that weight on
  every token of the list and 0 elsewhere. Fast, no model; a lower bound on what an
  explanation that only names tokens can do.
- ``openai-compatible``: any server speaking the OpenAI HTTP API (the ``paper`` profile's
  GPT-4 explainer and GPT-3.5 simulator, a llama.cpp or vLLM server): ``/chat/completions``
  for the explanation, ``/completions`` with ``echo`` and ``logprobs`` for the simulation
  (:mod:`sae_paper.analysis.autointerp.openai_compatible`).
- ``local``: a causal LM run in-process with llama-cpp-python (``sae_paper.analysis.autointerp.local``).

A call that fails or returns unusable output raises :class:`BackendFailure`; the scorer counts
it and reports it next to the figure. It is never turned into a score of zero, and it is not
cached, so a rerun tries it again. Successful calls are cached in one SQLite file keyed by
(backend, model, kind, prompt): :class:`CallCache`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sae_paper.analysis.autointerp.classify import Example, classify_prompt
from sae_paper.data.paths import cache_dir
from sae_paper.errors import BackendFailure


@dataclass(frozen=True)
class ActivationRecord:
    """One fragment as a backend sees it: token texts and (for the explainer) activations 0..10, on the reference's
    floor scale of the explainer's own maximum (:func:`~sae_paper.analysis.autointerp.fragments.rescale`)."""

    tokens: tuple[str, ...]
    activations: tuple[int, ...] = ()


# --------------------------------------------------------------------------------------
# Prompts (after Bills et al. 2023, "Language models can explain neurons in language models")
# --------------------------------------------------------------------------------------

EXPLAIN_INSTRUCTIONS = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short "
    "document. Look at the parts of the document the neuron activates for and summarize in a single sentence "
    "what the neuron is looking for. Don't list examples of words.\n\n"
    "The activation format is token<tab>activation. Activation values range from 0 to 10. A neuron finding "
    "what it's looking for is represented by a non-zero activation value. The higher the activation value, "
    "the stronger the match."
)
EXPLANATION_LEAD = "the main thing this neuron does is find"

SIMULATE_INSTRUCTIONS = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short "
    "document. Look at an explanation of what the neuron does, and try to predict its activations on each "
    "token.\n\nThe activation format is token<tab>activation, activations go from 0 to 10, \"unknown\" "
    "indicates an unknown activation. Most activations will be 0.\n\n"
)
FEW_SHOT = (
    ("years, mostly four-digit years in dates",
     (("The", 0), (" war", 0), (" ended", 0), (" in", 0), (" 19", 10), ("45", 9), (" and", 0), (" the", 0),
      (" treaty", 0), (" followed", 0), (" in", 0), (" 1947", 10), (".", 0))),
    ("the word \"and\" joining two items",
     (("salt", 0), (" and", 10), (" pepper", 0), (",", 0), (" bread", 0), (" and", 9), (" butter", 0), (".", 0))),
)
PLACEHOLDER = "unknown"
VALUES = tuple(str(v) for v in range(11))


def _show(token: str) -> str:
    """A token as one line of the prompt: tabs and newlines made visible."""
    return token.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def explain_prompt(records: Sequence[ActivationRecord]) -> str:
    """The explainer's user message: each record as token<tab>activation lines, then the non-zero ones."""
    parts = []
    for record in records:
        lines = "".join(f"{_show(t)}\t{a}\n" for t, a in zip(record.tokens, record.activations))
        parts.append(f"<start>\n{lines}<end>\n")
    nonzero = []
    for record in records:
        lines = "".join(f"{_show(t)}\t{a}\n" for t, a in zip(record.tokens, record.activations) if a > 0)
        nonzero.append(f"<start>\n{lines}<end>\n")
    return ("Neuron 1\nActivations:\n" + "\n".join(parts) + "\nSame activations, but with all zeros filtered out:\n"
            + "\n".join(nonzero) + f"\nExplanation of neuron 1 behavior: {EXPLANATION_LEAD}")


def simulate_prefix(explanation: str, top: int = 10) -> str:
    """Everything of a simulation prompt before the fragment's tokens (shared by one feature's fragments).

    ``top``: the largest value of the scale shown (10 as in the paper; the ``local`` backend uses 9 so
    that every value is one token for tokenizers that split "10")."""
    shots = []
    for number, (text, pairs) in enumerate(FEW_SHOT, start=1):
        lines = "".join(f"{t}\t{round(a * top / 10)}\n" for t, a in pairs)
        shots.append(f"Neuron {number}\nExplanation of neuron {number} behavior: {EXPLANATION_LEAD} {text}\n"
                     f"Activations:\n<start>\n{lines}<end>\n\n")
    n = len(FEW_SHOT) + 1
    return (SIMULATE_INSTRUCTIONS.replace("from 0 to 10", f"from 0 to {top}") + "".join(shots)
            + f"Neuron {n}\nExplanation of neuron {n} behavior: {EXPLANATION_LEAD} {explanation.strip()}\nActivations:\n<start>\n")


def simulate_body(tokens: Sequence[str]) -> tuple[str, list[int]]:
    """The fragment's part of a simulation prompt, and the character offset of each placeholder in it."""
    text, offsets = "", []
    for token in tokens:
        text += f"{_show(token)}\t"
        offsets.append(len(text))
        text += f"{PLACEHOLDER}\n"
    return text + "<end>\n", offsets


def expected_value(top_logprobs: dict[str, float]) -> float:
    """Expected activation over the candidate tokens that read as 0..10, renormalised over them.

    Raises :class:`BackendFailure` when none of the candidates is a value. Tokenizers that split
    "10" into "1", "0" (Qwen, SmolLM2, Llama-3) can only put the mass of "10" on "1" here; the
    ``local`` backend reads those two tokens properly (see :mod:`sae_paper.analysis.autointerp.local`).
    """
    import math

    mass = {value: 0.0 for value in range(11)}
    for token, logprob in top_logprobs.items():
        key = token.strip()
        if key in VALUES:
            mass[int(key)] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        raise BackendFailure("no value token (0..10) among the simulator's top logprobs")
    return sum(v * p for v, p in mass.items()) / total


# --------------------------------------------------------------------------------------
# The interface and the call cache
# --------------------------------------------------------------------------------------


class Backend(ABC):
    """What the scorer needs from an explainer/simulator. Subclasses build prompts and call a model."""

    name: ClassVar[str]
    model: str
    stand_in: ClassVar[bool] = False
    """True for a backend that is not a language model (reported next to every figure)."""

    def explain_request(self, records: Sequence[ActivationRecord]) -> str:
        """The explainer prompt (the cache key); default: Bills et al.'s."""
        return explain_prompt(records)

    @abstractmethod
    def explain(self, prompt: str) -> str:
        """Call the model; the explanation text. Raises :class:`BackendFailure`."""

    def simulate_request(self, explanation: str, tokens: Sequence[str]) -> str:
        """The simulation prompt for one fragment (the cache key); default: Bills et al.'s."""
        return simulate_prefix(explanation) + simulate_body(tokens)[0]

    @abstractmethod
    def simulate(self, prompt: str, n_tokens: int) -> list[float]:
        """Call the model; one prediction in [0, 10] per token. Raises :class:`BackendFailure`."""

    def simulation_kind(self) -> str:
        """The call cache's kind for a simulation. A backend whose reading of a reply depends on more than the prompt
        (a server's position convention) names that here, so a cached answer is never reused across it."""
        return "simulate"

    def classify_request(self, task: str, explanation: str, examples: Sequence[Example]) -> str:
        """The detection or fuzzing prompt for one batch of examples (the cache key); default: a chat prompt asking
        for a list of 0/1 answers (:func:`~sae_paper.analysis.autointerp.classify.classify_prompt`)."""
        return classify_prompt(task, explanation, examples)

    def classify(self, prompt: str, n_examples: int) -> list[float]:
        """Call the model; a probability in [0, 1] per example that it is positive. Raises :class:`BackendFailure`."""
        raise BackendFailure(f"the {self.name} backend cannot classify (detection, fuzzing)")

    def settings(self) -> dict[str, object]:
        """What decides its answers: its name, model and public plain settings (a cached score's key)."""
        plain = {k: v for k, v in vars(self).items() if not k.startswith("_") and isinstance(v, (str, int, float, bool))}
        return {**plain, "backend": self.name, "model": self.model}

    def label(self) -> str:
        note = " (deterministic stand-in for the paper's GPT-4/GPT-3.5, not an LLM)" if self.stand_in else ""
        return f"{self.name}:{self.model}{note}"


class CallCache:
    """Every successful model call, keyed by (backend, model, kind, prompt), in one SQLite file; and
    every method's scores, keyed by what they were computed from
    (:func:`~sae_paper.analysis.autointerp.scoring.score_decomposition`), so that scoring done is not redone."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else cache_dir("autointerp") / "calls.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        # WAL without a sync per commit: a crash can lose the last calls (they are redone), not corrupt the file;
        # the token-list backend makes thousands of tiny calls, and a sync each costs more than the call.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, backend TEXT, model TEXT, kind TEXT, "
                         "prompt TEXT, response TEXT, seconds REAL)")
        if "seconds" not in {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}:
            self._db.execute("ALTER TABLE calls ADD COLUMN seconds REAL")  # a file from before calls were timed
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, result TEXT)")
        self.hits = self.misses = 0
        self.scores_reused = self.scores_missing = 0
        """Methods whose stored scores were found, or not (:meth:`stored_scores`)."""

    @staticmethod
    def key(backend: str, model: str, kind: str, prompt: str) -> str:
        return hashlib.sha256(json.dumps([backend, model, kind, prompt]).encode()).hexdigest()

    def call(self, backend: Backend, kind: str, prompt: str, compute: Callable[[], object]):
        key = self.key(backend.name, backend.model, kind, prompt)
        with self._lock:
            row = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.hits += 1
            return json.loads(row[0])
        self.misses += 1
        began = time.perf_counter()
        response = compute()  # a BackendFailure propagates and is not stored
        seconds = time.perf_counter() - began
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (key, backend.name, backend.model, kind, prompt, json.dumps(response), seconds))
            self._db.commit()
        return response


    def timings(self, backend: Backend) -> dict[str, dict[str, float]]:
        """Per kind of call to ``backend``'s model: how many are stored, how many of those were timed (calls
        stored before calls were timed were not), and the timed ones' mean and total seconds. What a
        measurement reports as cost, since a resumed run reads most of its calls back rather than making them."""
        with self._lock:
            rows = self._db.execute("SELECT kind, COUNT(*), COUNT(seconds), AVG(seconds), TOTAL(seconds) FROM calls "
                                    "WHERE backend = ? AND model = ? GROUP BY kind", (backend.name, backend.model))
            return {kind: {"calls": n, "timed": timed, "mean_seconds": mean, "seconds": total}
                    for kind, n, timed, mean, total in rows.fetchall()}

    def stored_scores(self, key: str) -> dict | None:
        """The scores stored under ``key`` (JSON as :meth:`store_scores` got it), or None."""
        with self._lock:
            row = self._db.execute("SELECT result FROM scores WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.scores_missing += 1
            return None
        self.scores_reused += 1
        return json.loads(row[0])

    def store_scores(self, key: str, payload: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?)", (key, json.dumps(payload)))
            self._db.commit()


class Cached:
    """A backend with every call going through a :class:`CallCache`."""

    def __init__(self, backend: Backend, cache: CallCache | None):
        self.backend, self.cache = backend, cache

    def explain(self, records: Sequence[ActivationRecord]) -> str:
        prompt = self.backend.explain_request(records)
        return self._through_cache("explain", prompt, lambda: self.backend.explain(prompt))

    def simulate(self, explanation: str, tokens: Sequence[str]) -> list[float]:
        prompt = self.backend.simulate_request(explanation, tokens)
        return self._through_cache(self.backend.simulation_kind(), prompt,
                                   lambda: _checked(self.backend.simulate(prompt, len(tokens)), len(tokens)))

    def classify(self, task: str, explanation: str, examples: Sequence[Example]) -> list[float]:
        prompt = self.backend.classify_request(task, explanation, examples)
        return self._through_cache(task, prompt,
                                   lambda: _checked(self.backend.classify(prompt, len(examples)), len(examples), top=1))

    def _through_cache(self, kind: str, prompt: str, compute: Callable[[], Any]) -> Any:
        """``compute()``'s answer to ``prompt``, from the cache when it holds one (a kind of call is its key's part)."""
        return compute() if self.cache is None else self.cache.call(self.backend, kind, prompt, compute)


def _checked(predictions: Sequence[float], n: int, top: float = 10) -> list[float]:
    values = [float(p) for p in predictions]
    if len(values) != n or any(not 0 <= v <= top for v in values):
        raise BackendFailure(f"backend returned {len(values)} answers for {n} or values outside [0, {top:g}]")
    return values


# --------------------------------------------------------------------------------------
# token-list: the deterministic stand-in
# --------------------------------------------------------------------------------------

TOKEN_LIST_LEAD = "tokens (weight 0-10): "


def normal_token(token: str) -> str:
    """How the token-list stand-in compares tokens: stripped of surrounding whitespace, lower-cased."""
    return token.strip().lower() or token


def token_list_explanation(means: Mapping[str, float], max_tokens: int) -> str:
    """The token-list explanation from each normalised token's mean activation on the explainer's 0..10 floor scale:
    those of at least 1 (a token whose mean is under the scale's first step is not listed, and a feature with none
    predicts a constant 0, an undefined correlation), the largest ``max_tokens`` first (ties by token), each weight
    rounded to 0.1."""
    top = sorted(((t, w) for t, w in means.items() if w >= 1), key=lambda item: (-item[1], item[0]))[:max_tokens]
    return TOKEN_LIST_LEAD + json.dumps({t: round(w, 1) for t, w in top}, ensure_ascii=False)


def token_list_weights(explanation: str) -> tuple[dict[str, float], dict[str, float]]:
    """(every listed token's weight, the symbol-only entries among them) from a token-list explanation."""
    if not explanation.startswith(TOKEN_LIST_LEAD):
        raise BackendFailure(f"token-list simulator cannot read a free-text explanation: {explanation[:60]!r}")
    try:
        weights = {t: float(w) for t, w in json.loads(explanation[len(TOKEN_LIST_LEAD):]).items()}
    except json.JSONDecodeError:
        raise BackendFailure("token-list explanation is not a JSON token list") from None
    return weights, {t: w for t, w in weights.items() if t.strip() and not any(c.isalnum() for c in t)}


class TokenListBackend(Backend):
    """Explanation = the tokens that carry the activation in the top fragments, with weights; simulation =
    that weight on each listed token, 0 elsewhere. A stand-in for GPT-4/GPT-3.5, not a language model.

    Tokens are compared stripped of surrounding whitespace and lower-cased. The one generalisation
    beyond the list: a listed entry made only of symbols (no letter or digit, e.g. ``'`` or ``)``)
    also matches tokens that contain it (``'re``, ``),``), as "apostrophes" would for an LLM; the
    largest such weight is predicted. ``max_tokens``: entries kept, by weight (mean activation of
    the token over its occurrences in the explainer's fragments, at least 1).

    This is the reference, one call per fragment through the call cache; the scorer takes the
    same rules over many fragments at once without calls (:mod:`sae_paper.analysis.autointerp.token_list`)."""

    name = "token-list"
    stand_in = True

    def __init__(self, model: str = "v1", max_tokens: int = 20):
        self.model, self.max_tokens = model, max_tokens

    def explain_request(self, records: Sequence[ActivationRecord]) -> str:
        return json.dumps([[list(r.tokens), list(r.activations)] for r in records])

    def explain(self, prompt: str) -> str:
        totals: dict[str, list[int]] = {}
        for tokens, activations in json.loads(prompt):
            for token, activation in zip(tokens, activations):
                totals.setdefault(normal_token(token), []).append(activation)
        return token_list_explanation({t: sum(a) / len(a) for t, a in totals.items()}, self.max_tokens)

    def simulate_request(self, explanation: str, tokens: Sequence[str]) -> str:
        return json.dumps({"explanation": explanation, "tokens": list(tokens)}, ensure_ascii=False)

    def simulate(self, prompt: str, n_tokens: int) -> list[float]:
        request = json.loads(prompt)
        weights, symbols = token_list_weights(request["explanation"])

        def predict(token: str) -> float:
            key = normal_token(token)
            if key in weights:
                return weights[key]
            return max((w for symbol, w in symbols.items() if symbol in key), default=0.0)

        return [min(10.0, max(0.0, predict(t))) for t in request["tokens"]]

    def classify_request(self, task: str, explanation: str, examples: Sequence[Example]) -> str:
        return json.dumps({"task": task, "explanation": explanation,
                           "examples": [[list(e.tokens), list(e.marked)] for e in examples]}, ensure_ascii=False)

    def classify(self, prompt: str, n_examples: int) -> list[float]:
        """Detection: 0 with no listed token in the example, else 0.5 + 0.05 × the largest listed weight. Fuzzing:
        the share of highlighted tokens that are listed (called correct from one half)."""
        request = json.loads(prompt)
        answers = []
        for tokens, marked in request["examples"]:
            predicted = self.simulate(json.dumps({"explanation": request["explanation"], "tokens": tokens}), len(tokens))
            if request["task"] == "detection":
                answers.append(0.0 if max(predicted, default=0) <= 0 else 0.5 + 0.05 * max(predicted))
            else:
                hits = [p > 0 for p, m in zip(predicted, marked) if m]
                answers.append(sum(hits) / len(hits) if hits else 0.0)
        return answers
