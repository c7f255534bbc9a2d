"""Detection and fuzzing: an explanation scored by how well it lets a model classify fragments.

Paulo et al. 2024 ("Automatically Interpreting Millions of Features in Large Language Models",
arXiv 2410.13928; EleutherAI's delphi) score explanations without the echo + logprobs that the
paper's simulator needs (OpenAI's API no longer offers them) and with a few output tokens per
batch of fragments, which small local models can do:

- **detection**: the scorer sees the explanation and a batch of fragments, some *activating*
  (drawn across the quantiles of the feature's activating fragments) and some *non-activating*,
  and says of each whether the feature fires in it;
- **fuzzing**: the scorer sees activating fragments with tokens highlighted: in half of them the
  tokens where the feature fires, in the other half as many tokens where it does not, and says of
  each whether the highlighting is correct (specificity at the token level).

Here a fragment *activates* when the feature shows a non-zero value on the 0–10 scale the explainer
sees (:func:`~sae_paper.analysis.autointerp.fragments.rescale`, the reference's floor scale: at least 10 % of
its maximum) on one of its tokens. Detection's positives are drawn from the activating fragments in the upper half of the pool
ranked by maximum activation, its negatives from the lower half. For a sparse feature (an SAE's,
mostly) the lower half is silent: 0 on every token, Paulo et al.'s non-activating examples. A dense
feature (a residual dimension, a random direction, a PCA component after the ReLU) is above 10 % of
its maximum somewhere in almost every fragment, so it has no silent fragments. Its negatives are then
its weakest fragments. One rule for every method, so that the baselines can be scored at all. This
departs from the paper's "contexts where the latent is zero". Fragments shown to the explainer are
never scored. Each feature gets a score per example (a probability that it is positive); its
**AUROC** (0.5 = chance; threshold-free, so scorers that give only 0/1 answers and those that give
probabilities are comparable) is the headline, with **balanced accuracy** (mean of the true
positive and true negative rates at probability 0.5). A feature without enough fragments of both
kinds gets no score and says why (:class:`NotEnoughFragments`); a failed call is a failure, counted,
never a 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sae_paper.errors import BackendFailure, SaePaperError

TASKS = ("detection", "fuzzing")
SCORINGS = ("simulation", *TASKS)
MARK_OPEN, MARK_CLOSE = "[[", "]]"


@dataclass(frozen=True)
class Example:
    """One fragment as a classifier sees it: token texts and, for fuzzing, which tokens are highlighted."""

    tokens: tuple[str, ...]
    marked: tuple[bool, ...] = ()

    def text(self) -> str:
        """The fragment as text, each run of highlighted tokens in one pair of [[double brackets]] (the explainer's
        marking), as delphi marks a run (``<<…>>``): a token per pair would cost a dense feature three prompt tokens
        for each of its own."""
        return marked_text(self.tokens, self.marked or (False,) * len(self.tokens))


def marked_text(tokens: Sequence[str], marks: Sequence[bool]) -> str:
    """``tokens`` joined, each run of consecutive marked ones inside one pair of [[double brackets]]."""
    pieces, inside = [], False
    for token, mark in zip(tokens, marks):
        if mark != inside:
            pieces.append(MARK_OPEN if mark else MARK_CLOSE)
            inside = mark
        pieces.append(token)
    return "".join(pieces + ([MARK_CLOSE] if inside else []))


INSTRUCTIONS = {
    "detection": ("A neuron in a language model fires on some texts and not on others. Here is an explanation of what "
                  "it fires on, and {n} numbered text examples. For each example, answer 1 if the neuron fires "
                  "somewhere in it according to the explanation, else 0."),
    "fuzzing": ("A neuron in a language model fires on some tokens of a text. Here is an explanation of what it fires "
                "on, and {n} numbered text examples in which some tokens are marked with [[double brackets]]. For "
                "each example, answer 1 if the marked tokens are the ones the neuron fires on according to the "
                "explanation, else 0."),
}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise SaePaperError(f"unknown classification task {task!r}; known: {', '.join(TASKS)}")
    return task


def classify_prompt(task: str, explanation: str, examples: Sequence[Example]) -> str:
    """The chat prompt for one batch: instructions, the explanation, the numbered examples, and the answer format
    (a list such as ``[1, 0, 1]``, one entry per example, in order)."""
    head = INSTRUCTIONS[check_task(task)].format(n=len(examples))
    body = "\n".join(f"Example {i}: {example.text()}" for i, example in enumerate(examples, start=1))
    return (f"{head}\n\nExplanation: {explanation.strip()}\n\n{body}\n\n"
            f"Answer with only a list of {len(examples)} numbers, 1 or 0, in the order of the examples, e.g. "
            f"[{', '.join(['1', '0'] * (len(examples) // 2) + ['1'] * (len(examples) % 2))}].")


def parse_answers(text: str, n: int) -> list[float]:
    """The first ``[...]`` list of ``n`` answers (0 or 1; probabilities in [0, 1] are kept) in a reply."""
    match = re.search(r"\[([^\[\]]*)\]", text or "")
    if match is None:
        raise BackendFailure(f"classifier reply has no [..] list of answers: {(text or '')[:60]!r}")
    try:
        values = [float(v) for v in json.loads(f"[{match.group(1)}]")]
    except (json.JSONDecodeError, TypeError, ValueError):
        raise BackendFailure(f"classifier answers are not numbers: {match.group(0)[:60]!r}") from None
    if len(values) != n or any(not 0 <= v <= 1 for v in values):
        raise BackendFailure(f"classifier gave {len(values)} answers for {n} examples, or values outside [0, 1]")
    return values


# --------------------------------------------------------------------------------------
# Which fragments a feature is classified on
# --------------------------------------------------------------------------------------


class NotEnoughFragments(SaePaperError):
    """A feature has too few activating or non-activating fragments for the task (no score; counted)."""


@dataclass(frozen=True)
class ClassifyConfig:
    """How many examples detection and fuzzing show per feature, and per prompt."""

    n_activating: int = 10
    """Positives per feature: detection's activating fragments; fuzzing's activating fragments highlighted right."""
    n_non_activating: int = 10
    """Negatives per feature: detection's lower-half fragments; fuzzing's activating fragments highlighted wrong."""
    n_quantiles: int = 5
    """Activating fragments are drawn evenly from this many quantiles of their maximum activation."""
    examples_per_prompt: int = 5


@dataclass(frozen=True)
class ClassifySet:
    """One feature's examples for a task: fragment indices in the order shown, the truth, the highlights."""

    fragments: tuple[int, ...]
    positive: tuple[bool, ...]
    marked: tuple[tuple[bool, ...], ...]
    """Highlighted tokens per example (fuzzing), empty tuples for detection."""


def _quantile_draw(indices: Tensor, maxima: Tensor, n: int, n_quantiles: int, generator: torch.Generator) -> list[int]:
    """``n`` of ``indices`` drawn round-robin from ``n_quantiles`` bins of equal size by ``maxima`` (highest first)."""
    order = indices[maxima[indices].argsort(descending=True, stable=True)]
    bins = [b for b in torch.tensor_split(order, min(n_quantiles, len(order))) if len(b)]
    pools = [b[torch.randperm(len(b), generator=generator)].tolist() for b in bins]
    drawn: list[int] = []
    while len(drawn) < n and any(pools):
        for pool in pools:
            if pool and len(drawn) < n:
                drawn.append(pool.pop())
    return drawn


def select_examples(task: str, scaled: Tensor, exclude: Sequence[int], config: ClassifyConfig, *, seed: int) -> ClassifySet:
    """The examples of ``task`` for one feature from its activations on the 0–10 scale ``[n_fragments, pos]``
    (``exclude``: the fragments the explainer saw). Raises :class:`NotEnoughFragments`."""
    generator = torch.Generator().manual_seed(seed)
    maxima = scaled.amax(1)
    allowed = torch.ones(len(scaled), dtype=torch.bool)
    allowed[list(exclude)] = False
    activating = torch.nonzero(allowed & (maxima > 0)).flatten()
    if check_task(task) == "detection":
        upper = torch.zeros(len(scaled), dtype=torch.bool)
        upper[maxima.argsort(descending=True, stable=True)[: len(scaled) // 2]] = True
        activating = torch.nonzero(allowed & (maxima > 0) & upper).flatten()
        silent = torch.nonzero(allowed & ~upper).flatten()
        if len(activating) < config.n_activating or len(silent) < config.n_non_activating:
            raise NotEnoughFragments(f"{len(activating)} activating and {len(silent)} lower-half fragments; "
                                     f"detection needs {config.n_activating} and {config.n_non_activating}")
        positives = _quantile_draw(activating, maxima, config.n_activating, config.n_quantiles, generator)
        negatives = silent[torch.randperm(len(silent), generator=generator)[: config.n_non_activating]].tolist()
        chosen = [(i, True, ()) for i in positives] + [(i, False, ()) for i in negatives]
    else:
        n = config.n_activating + config.n_non_activating
        if len(activating) < n:
            raise NotEnoughFragments(f"{len(activating)} activating fragments; fuzzing needs {n}")
        drawn = _quantile_draw(activating, maxima, n, config.n_quantiles, generator)
        wrong_every = n / max(1, config.n_non_activating)
        wrong_at = {int(k * wrong_every) for k in range(config.n_non_activating)}  # spread over the quantiles
        chosen = []
        for k, i in enumerate(drawn):
            active = scaled[i] > 0
            if k not in wrong_at or bool(active.all()):
                chosen.append((i, True, tuple(active.tolist())))
                continue
            quiet = torch.nonzero(~active).flatten()
            wrong = quiet[torch.randperm(len(quiet), generator=generator)[: int(active.sum())]]
            marks = torch.zeros(len(active), dtype=torch.bool)
            marks[wrong] = True
            chosen.append((i, False, tuple(marks.tolist())))
    order = torch.randperm(len(chosen), generator=generator).tolist()
    shown = [chosen[k] for k in order]
    return ClassifySet(tuple(i for i, _, _ in shown), tuple(p for _, p, _ in shown), tuple(m for _, _, m in shown))


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


def auroc(probabilities: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance that a random positive gets a higher probability than a random negative,
    ties counting half (Mann–Whitney). Needs both classes."""
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    truth = torch.as_tensor(positive, dtype=torch.bool)
    pos, neg = p[truth], p[~truth]
    if not len(pos) or not len(neg):
        raise SaePaperError("AUROC needs positive and negative examples")
    greater = (pos[:, None] > neg[None, :]).double().sum() + 0.5 * (pos[:, None] == neg[None, :]).double().sum()
    return float(greater / (len(pos) * len(neg)))


def balanced_accuracy(probabilities: Sequence[float], positive: Sequence[bool], threshold: float = 0.5) -> float:
    """Mean of the true positive and true negative rates, an example called positive at ``threshold`` or above."""
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    truth = torch.as_tensor(positive, dtype=torch.bool)
    called = p >= threshold
    return float(0.5 * (called[truth].double().mean() + (~called[~truth]).double().mean()))


def classify_feature(task: str, explanation: str, examples: ClassifySet, token_strings, classifier,
                     config: ClassifyConfig) -> tuple[float, float]:
    """(AUROC, balanced accuracy) of ``classifier`` (a :class:`~sae_paper.analysis.autointerp.backends.Cached`
    backend) on one feature's examples, ``examples_per_prompt`` examples per call. A failed call raises
    :class:`~sae_paper.analysis.autointerp.backends.BackendFailure`."""
    shown = [Example(tuple(token_strings[i]), marks) for i, marks in zip(examples.fragments, examples.marked)]
    probabilities: list[float] = []
    for start in range(0, len(shown), config.examples_per_prompt):
        probabilities += classifier.classify(task, explanation, shown[start : start + config.examples_per_prompt])
    return auroc(probabilities, examples.positive), balanced_accuracy(probabilities, examples.positive)
