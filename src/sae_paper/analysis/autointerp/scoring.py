"""Explain → simulate → score, per feature and per method, with 95 % confidence intervals over features.

Section 3 of the paper (after Bills et al. 2023): for one feature,

1. the explainer sees 5 top fragments with the feature's activation on every token (0..10)
   and writes an explanation;
2. the simulator predicts, from the explanation alone, the activation on every token of 5
   other top fragments and 5 random fragments (with non-zero variance);
3. the **top-and-random score** is the correlation between simulated and true activations
   pooled over all tokens of those 10 fragments; the **random-only score** (Appendix C.2,
   Figure 9) the same over the 5 random fragments only.

True activations are the feature's real values (correlation does not depend on their scale).
When the simulator's predictions are constant over the scored tokens (e.g. an explanation
that predicts nothing on the random fragments) the correlation is undefined: we score it 0
(no information) and count it as ``constant``. A failed call is different: the feature gets no
score, and the failure is counted and reported (:class:`MethodSummary`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sae_paper.analysis.autointerp.backends import ActivationRecord, BackendFailure, Cached
from sae_paper.analysis.autointerp.fragments import (
    FeatureChoice,
    Fragments,
    Moments,
    choose_features,
    feature_codes,
    moments,
    rescale,
    select_fragments,
    varying_fragment_counts,
)
from sae_paper.core.decompositions import Decomposition


@dataclass(frozen=True)
class ScoringConfig:
    """How fragments are chosen and how many (the paper's values are the defaults)."""

    n_top: int = 20
    """Top fragments (by maximum activation) the explain/simulate sets are drawn from."""
    n_explain: int = 5
    """Top fragments shown to the explainer."""
    n_simulate_top: int = 5
    """Other top fragments the simulator predicts."""
    n_random: int = 5
    """Random fragments (non-zero variance) the simulator predicts."""
    min_fragments: int = 20
    """Features with fewer fragments of non-zero variance are skipped (and counted)."""
    seed: int = 0


@dataclass(frozen=True)
class FeatureResult:
    """One feature's explanation and scores (``score`` None when a call failed)."""

    method: str
    site: str
    feature: int
    explanation: str | None
    score: float | None
    """Top-and-random correlation."""
    random_score: float | None
    """Random-only correlation."""
    failure: str | None = None
    constant: bool = False
    """The simulator's predictions were constant on the scored tokens (score 0, counted)."""
    moments: Moments | None = None


def correlation(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor) -> float | None:
    """Pearson correlation, None when either side is constant."""
    a, b = torch.as_tensor(x, dtype=torch.float64).flatten(), torch.as_tensor(y, dtype=torch.float64).flatten()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    if denominator == 0 or not math.isfinite(denominator):
        return None
    return float((a @ b) / denominator)


def _record(fragments: Fragments, index: int, values: Tensor | None = None) -> ActivationRecord:
    tokens = fragments.token_strings[index]
    return ActivationRecord(tokens, tuple(int(v) for v in values) if values is not None else ())


def score_feature(codes: Tensor, fragments: Fragments, explainer: Cached, simulator: Cached, *, method: str, site: str,
                  feature: int, config: ScoringConfig = ScoringConfig()) -> FeatureResult:
    """Explain, simulate and score one feature from its codes ``[n_fragments, pos]`` on the fragments."""
    selection = select_fragments(codes, n_top=config.n_top, n_explain=config.n_explain,
                                 n_simulate_top=config.n_simulate_top, n_random=config.n_random,
                                 seed=config.seed * 100_003 + feature)
    scaled = rescale(codes, float(codes.max()))
    stats = moments(codes)
    base = dict(method=method, site=site, feature=feature, moments=stats)
    try:
        explanation = explainer.explain([_record(fragments, i, scaled[i]) for i in selection.explain])
    except BackendFailure as failure:
        return FeatureResult(explanation=None, score=None, random_score=None, failure=f"explain: {failure}", **base)
    try:
        simulated = {i: simulator.simulate(explanation, fragments.token_strings[i])
                     for i in (*selection.top, *selection.random)}
    except BackendFailure as failure:
        return FeatureResult(explanation=explanation, score=None, random_score=None, failure=f"simulate: {failure}", **base)

    def pooled(indices: Sequence[int]) -> tuple[float, bool]:
        true = torch.cat([codes[i] for i in indices])
        predicted = [p for i in indices for p in simulated[i]]
        r = correlation(predicted, true)
        return (0.0, True) if r is None else (r, False)

    score, constant = pooled([*selection.top, *selection.random])
    random_score, _ = pooled(selection.random)
    return FeatureResult(explanation=explanation, score=score, random_score=random_score, constant=constant, **base)


@dataclass
class MethodResult:
    """Every scored feature of one method at one site, and which features were skipped."""

    method: str
    site: str
    choice: FeatureChoice
    features: list[FeatureResult] = field(default_factory=list)

    def summary(self) -> "MethodSummary":
        return summarize(self.method, self.site, self.features, skipped=self.choice.skipped)


def score_decomposition(decomposition: Decomposition, activations: Tensor, fragments: Fragments, explainer: Cached,
                        simulator: Cached, *, method: str, site: str, n_features: int,
                        features: Sequence[int] | None = None, config: ScoringConfig = ScoringConfig()) -> MethodResult:
    """Score ``n_features`` features drawn at random (seeded) among those not skipped, or the given ``features``
    (those below ``min_fragments`` are still skipped). ``activations``: the site's ``[n_fragments, pos, d]``."""
    counts = varying_fragment_counts(decomposition, activations)
    if features is None:
        choice = choose_features(counts, n_features, min_fragments=config.min_fragments, seed=config.seed)
    else:
        kept = tuple(f for f in features if counts[f] >= config.min_fragments)
        choice = FeatureChoice(kept, len(features) - len(kept), int((counts < config.min_fragments).sum()), len(counts))
    result = MethodResult(method, site, choice)
    if not choice.features:
        return result
    codes = feature_codes(decomposition, activations, choice.features)
    for column, feature in enumerate(choice.features):
        result.features.append(score_feature(codes[..., column], fragments, explainer, simulator, method=method,
                                             site=site, feature=feature, config=config))
    return result


# --------------------------------------------------------------------------------------
# Summaries with confidence intervals
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSummary:
    """Mean scores of one method at one site with 95 % confidence intervals over features."""

    method: str
    site: str
    n_scored: int
    n_failed: int
    n_skipped: int
    n_constant: int
    mean: float
    ci: float
    """Half-width of the 95 % CI of the mean top-and-random score (Student t over features)."""
    random_mean: float
    random_ci: float

    def row(self) -> str:
        return (f"| {self.site} | {self.method} | {self.mean:.3f} ± {self.ci:.3f} | {self.random_mean:.3f} ± {self.random_ci:.3f} "
                f"| {self.n_scored} | {self.n_skipped} | {self.n_failed} | {self.n_constant} |")


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its ``level`` confidence interval (t distribution; nan for n < 2)."""
    from scipy.stats import t

    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def summarize(method: str, site: str, results: Sequence[FeatureResult], *, skipped: int = 0) -> MethodSummary:
    scored = [r for r in results if r.score is not None]
    mean, ci = mean_ci([r.score for r in scored])
    random_mean, random_ci = mean_ci([r.random_score for r in scored])
    return MethodSummary(method, site, len(scored), len(results) - len(scored), skipped,
                         sum(r.constant for r in scored), mean, ci, random_mean, random_ci)


def summary_table(summaries: Sequence[MethodSummary]) -> str:
    """Markdown table of summaries (what the notebook shows next to each figure)."""
    head = ("| site | method | top-and-random (95 % CI) | random-only (95 % CI) | scored | skipped | failed | constant |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    return head + "\n".join(s.row() for s in summaries) + "\n"
