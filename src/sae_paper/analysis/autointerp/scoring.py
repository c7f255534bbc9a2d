"""Explain → simulate → score, per feature and per method, with 95 % confidence intervals over features.

Section 3 of the paper (after Bills et al. 2023), by the conventions of the reference's code,
OpenAI's ``neuron_explainer`` (:mod:`sae_paper.core.reference`): for one feature,

1. the explainer sees 5 top fragments (ranks 0, 4, 8, 12, 16) with the feature's activation on
   every token on the 0..10 floor scale of their own maximum, and writes an explanation;
2. the simulator predicts, from the explanation alone, the activation on every token of 5
   other top fragments (ranks 2, 6, 10, 14, 18) and 5 random fragments (with non-zero
   variance; :func:`~sae_paper.analysis.autointerp.fragments.select_fragments`);
3. the **top-and-random score** is the correlation between simulated and true activations
   pooled over all tokens of those 10 fragments; the **random-only score** (Appendix C.2,
   Figure 9) the same over the 5 random fragments only.

True activations are the feature's real values (correlation does not depend on their scale).
A correlation with a constant side (e.g. an explanation that predicts nothing on the random
fragments), or one float64 cannot hold, is **undefined**, as in the reference (NaN there): it is
left out of that score's mean, not scored 0, and counted per method and per score with the reason
(:attr:`FeatureResult.undefined`, :attr:`MethodSummary.undefined`). A failed call is different: the
feature gets no score, and the failure is counted and reported (:class:`MethodSummary`). A seed
redraws only what the reference draws at random: the random sample of fragments (and, upstream,
the features scored and the SAEs' training); the split of the top fragments is fixed.

With ``ScoringConfig.scoring`` = ``detection`` or ``fuzzing`` the same explanation (same top
fragments, same explainer) is scored instead by classification (:mod:`.classify`): the score is the
AUROC, 0.5 being chance, beside the balanced accuracy; there is no random-only score.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from sae_paper.analysis.autointerp.backends import ActivationRecord, BackendFailure, Cached, TokenListBackend
from sae_paper.analysis.autointerp.classify import (
    SCORINGS,
    ClassifyConfig,
    NotEnoughFragments,
    classify_feature,
    select_examples,
)
from sae_paper.analysis.autointerp.fingerprints import fingerprint, fragments_digest, tensor_digest
from sae_paper.analysis.autointerp.fragments import (
    FeatureChoice,
    Fragments,
    Moments,
    choose_features,
    feature_codes,
    feature_order,
    moments,
    rescale,
    select_fragments,
    varying_fragment_counts,
)
from sae_paper.analysis.autointerp.token_list import TokenListScorer
from sae_paper.core.decompositions import Decomposition
from sae_paper.core.reference import Correlation, correlation_or_undefined, explainer_max
from sae_paper.data import cache
from sae_paper.errors import SaePaperError


@dataclass(frozen=True)
class ScoringConfig:
    """How fragments are chosen and how many (the paper's values are the defaults)."""

    n_top: int = 20
    """Top fragments (by maximum activation), split by the reference's interleaved ranks into 4 of ``n_top // 4``."""
    n_explain: int = 5
    """Top fragments shown to the explainer: the first of the ranks 0, 4, 8, … (at most ``n_top // 4``)."""
    n_simulate_top: int = 5
    """Top fragments the simulator predicts: the first of the ranks 2, 6, 10, … (at most ``n_top // 4``)."""
    n_random: int = 5
    """Random fragments (non-zero variance) the simulator predicts: the first of the random sample's 1, 4, 7, …"""
    min_fragments: int = 20
    """Features with fewer fragments of non-zero variance are skipped (and counted)."""
    seed: int = 0
    """Draws the random sample of fragments (the top fragments' split is fixed)."""
    scoring: str = "simulation"
    """``simulation`` (the paper's correlation), ``detection`` or ``fuzzing`` (:mod:`.classify`; the explanation is the
    same, from the same top fragments)."""
    classify: ClassifyConfig = ClassifyConfig()
    """How many examples detection and fuzzing show (unused by simulation)."""

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise SaePaperError(f"unknown scoring {self.scoring!r}; known: {', '.join(SCORINGS)}")

    def key(self) -> dict:
        """What decides the scores (a stored score's key): the classification settings only when they are used."""
        settings = asdict(self)
        if self.scoring == "simulation":
            del settings["scoring"], settings["classify"]
        return settings


@dataclass(frozen=True)
class FeatureResult:
    """One feature's explanation and scores (``score`` None when a call failed)."""

    method: str
    site: str
    feature: int
    explanation: str | None
    score: float | None
    """Top-and-random correlation (None when a call failed, the feature was skipped, or it is undefined)."""
    random_score: float | None
    """Random-only correlation (None likewise)."""
    failure: str | None = None
    undefined: str | None = None
    """Why the top-and-random correlation is undefined (:data:`~sae_paper.core.reference.Undefined`: a constant
    simulation or truth, both, or not representable in float64); None when it is defined."""
    random_undefined: str | None = None
    """The same for the random-only correlation."""
    moments: Moments | None = None
    balanced_accuracy: float | None = None
    """Detection and fuzzing: the balanced accuracy (``score`` is their AUROC; None for simulation)."""
    skipped: str | None = None
    """Why the feature cannot be scored by the task (detection: too few non-activating fragments; counted as
    skipped, not as a failure)."""


def correlation(x: Sequence[float] | Tensor, y: Sequence[float] | Tensor) -> float | None:
    """Pearson correlation, None when it is undefined (:func:`~sae_paper.core.reference.correlation_or_undefined`) or
    there are no values."""
    if len(x) == 0 and len(y) == 0:
        return None
    return correlation_or_undefined(x, y).value


def _record(fragments: Fragments, index: int, values: Tensor | None = None) -> ActivationRecord:
    tokens = fragments.token_strings[index]
    return ActivationRecord(tokens, tuple(int(v) for v in values) if values is not None else ())


def score_feature(codes: Tensor, fragments: Fragments, explainer: Cached, simulator: Cached, *, method: str, site: str,
                  feature: int, config: ScoringConfig = ScoringConfig(),
                  token_list: TokenListScorer | None = None) -> FeatureResult:
    """Explain, simulate and score one feature from its codes ``[n_fragments, pos]`` on the fragments.

    ``token_list``: the token-list stand-in over the fragments at once, used instead of
    ``explainer`` and ``simulator`` when both are that stand-in (same explanations and predictions)."""
    selection = select_fragments(codes, n_top=config.n_top, n_explain=config.n_explain,
                                 n_simulate_top=config.n_simulate_top, n_random=config.n_random,
                                 seed=config.seed * 100_003 + feature)
    explained = codes[list(selection.explain)]
    # the reference's scale: max over the explainer's own records (with the top fragment among them, the feature's)
    scaled = rescale(codes, explainer_max(explained) if len(explained) else 0.0)
    stats = moments(codes)
    base = dict(method=method, site=site, feature=feature, moments=stats)
    if token_list is not None and config.scoring == "simulation":
        explanation = token_list.explain(selection.explain, scaled[list(selection.explain)])
        scored = [*selection.top, *selection.random]
        simulated = dict(zip(scored, token_list.simulate(explanation, scored)))
        return _scored(codes, simulated, selection.top, selection.random, explanation, base)
    examples = None
    if config.scoring != "simulation":
        try:
            examples = select_examples(config.scoring, scaled, selection.explain, config.classify,
                                       seed=config.seed * 100_003 + feature)
        except NotEnoughFragments as reason:
            return FeatureResult(explanation=None, score=None, random_score=None, skipped=f"{config.scoring}: {reason}",
                                 **base)
    try:
        explanation = explainer.explain([_record(fragments, i, scaled[i]) for i in selection.explain])
    except BackendFailure as failure:
        return FeatureResult(explanation=None, score=None, random_score=None, failure=f"explain: {failure}", **base)
    if examples is not None:
        try:
            area, balanced = classify_feature(config.scoring, explanation, examples, fragments.token_strings, simulator,
                                              config.classify)
        except BackendFailure as failure:
            return FeatureResult(explanation=explanation, score=None, random_score=None,
                                 failure=f"{config.scoring}: {failure}", **base)
        return FeatureResult(explanation=explanation, score=area, random_score=None, balanced_accuracy=balanced, **base)
    try:
        simulated = {i: simulator.simulate(explanation, fragments.token_strings[i])
                     for i in (*selection.top, *selection.random)}
    except BackendFailure as failure:
        return FeatureResult(explanation=explanation, score=None, random_score=None, failure=f"simulate: {failure}", **base)
    return _scored(codes, simulated, selection.top, selection.random, explanation, base)


def simulation_scores(codes: Tensor, simulated: Mapping[int, Sequence[float] | Tensor], top: Sequence[int],
                      random: Sequence[int]) -> tuple[Correlation, Correlation]:
    """(Top-and-random, random-only) correlations of the simulated activations (fragment → predictions) with the
    true ``codes``, pooled over the fragments' tokens; each undefined with its reason where the reference's is NaN."""
    def pooled(indices: Sequence[int]) -> Correlation:
        true = torch.cat([codes[i].double() for i in indices])
        predicted = torch.cat([torch.as_tensor(simulated[i], dtype=torch.float64) for i in indices])
        return correlation_or_undefined(predicted, true)

    return pooled([*top, *random]), pooled(random)


def _scored(codes: Tensor, simulated: Mapping[int, Sequence[float] | Tensor], top: Sequence[int], random: Sequence[int],
            explanation: str, base: dict) -> FeatureResult:
    both, random_only = simulation_scores(codes, simulated, top, random)
    return FeatureResult(explanation=explanation, score=both.value, random_score=random_only.value,
                         undefined=both.undefined, random_undefined=random_only.undefined, **base)


@dataclass
class MethodResult:
    """Every scored feature of one method at one site, and which features were skipped."""

    method: str
    site: str
    choice: FeatureChoice
    features: list[FeatureResult] = field(default_factory=list)
    scoring: str = "simulation"

    def summary(self) -> "MethodSummary":
        return summarize(self.method, self.site, self.features, skipped=self.choice.skipped, scoring=self.scoring)


def score_decomposition(decomposition: Decomposition, activations: Tensor, fragments: Fragments, explainer: Cached,
                        simulator: Cached, *, method: str, site: str, n_features: int,
                        features: Sequence[int] | None = None, config: ScoringConfig = ScoringConfig(),
                        vectorised: bool = True) -> MethodResult:
    """Score ``n_features`` features drawn at random (seeded) among those not skipped, or the given ``features``
    (those below ``min_fragments`` are still skipped). ``activations``: the site's ``[n_fragments, pos, d]``.

    Scores done are not redone: when explainer and simulator share a call cache, the result is stored
    there (a ``scores`` entry, :mod:`sae_paper.data.cache`) under a hash of everything it is computed from:
    the decomposition's weights, the activations, the fragments, both backends' settings, the scoring
    settings, the features asked for (:mod:`~sae_paper.analysis.autointerp.fingerprints`). A result
    with a failed call is not stored, so that a rerun tries the call again.
    """
    store = explainer.cache if explainer.cache is not None and explainer.cache is simulator.cache else None
    if store is None:
        return _score_decomposition(decomposition, activations, fragments, explainer, simulator, method=method, site=site,
                                    n_features=n_features, features=features, config=config, vectorised=vectorised)
    key = fingerprint({"version": cache.version("scores"), "decomposition": fingerprint(decomposition),
                       "activations": tensor_digest(activations), "fragments": fragments_digest(fragments),
                       "explainer": explainer.backend.settings(), "simulator": simulator.backend.settings(),
                       "method": method, "site": site, "n_features": n_features, "features": features,
                       "config": config.key()})
    where = f"{store.path}#scores-{key[:16]}"
    stored = store.stored_scores(key)
    if stored is not None and cache.reusable("scores", where, stored["computed"]):
        return _result_from_json(stored["result"])
    result = _score_decomposition(decomposition, activations, fragments, explainer, simulator, method=method, site=site,
                                  n_features=n_features, features=features, config=config, vectorised=vectorised)
    if all(f.failure is None for f in result.features):
        store.store_scores(key, {"result": asdict(result), "computed": cache.stamp("scores", where)})
    return result


def _result_from_json(payload: dict) -> MethodResult:
    choice = FeatureChoice(**{**payload["choice"], "features": tuple(payload["choice"]["features"])})
    features = [FeatureResult(**{**f, "moments": Moments(**f["moments"]) if f["moments"] else None})
                for f in payload["features"]]
    return MethodResult(payload["method"], payload["site"], choice, features, payload.get("scoring", "simulation"))


def _score_decomposition(decomposition: Decomposition, activations: Tensor, fragments: Fragments, explainer: Cached,
                         simulator: Cached, *, method: str, site: str, n_features: int, features: Sequence[int] | None,
                         config: ScoringConfig, vectorised: bool) -> MethodResult:
    """:func:`score_decomposition` without its store.

    The fragments are encoded once: the pass that counts each feature's varying fragments keeps the
    codes of the first features of the draw (half as many again as asked, for the skipped ones); a
    feature drawn beyond them is encoded in a second pass. With the token-list stand-in as both
    explainer and simulator (and ``vectorised``), the lookups run over the fragments at once
    (:class:`~sae_paper.analysis.autointerp.token_list.TokenListScorer`) instead of one call per fragment."""
    candidates = (list(features) if features is not None
                  else feature_order(decomposition.n_features, config.seed)[: n_features + n_features // 2 + 8])
    counts, candidate_codes = varying_fragment_counts(decomposition, activations, candidates)
    if features is None:
        choice = choose_features(counts, n_features, min_fragments=config.min_fragments, seed=config.seed)
    else:
        kept = tuple(f for f in features if counts[f] >= config.min_fragments)
        choice = FeatureChoice(kept, len(features) - len(kept), int((counts < config.min_fragments).sum()), len(counts))
    result = MethodResult(method, site, choice, scoring=config.scoring)
    if not choice.features:
        return result
    column = {feature: i for i, feature in enumerate(candidates)}
    beyond = [f for f in choice.features if f not in column]
    extra = feature_codes(decomposition, activations, beyond) if beyond else None
    column.update({feature: len(candidates) + i for i, feature in enumerate(beyond)})
    codes = candidate_codes if extra is None else torch.cat([candidate_codes, extra], dim=-1)
    token_list = (TokenListScorer(explainer.backend, fragments) if vectorised
                  and isinstance(explainer.backend, TokenListBackend) and isinstance(simulator.backend, TokenListBackend)
                  else None)
    for feature in choice.features:
        result.features.append(score_feature(codes[..., column[feature]], fragments, explainer, simulator, method=method,
                                             site=site, feature=feature, config=config, token_list=token_list))
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
    """Features with a defined top-and-random score (the mean's n)."""
    n_failed: int
    n_skipped: int
    n_undefined: int
    """Features simulated whose top-and-random correlation is undefined: left out of ``mean``, as the reference's NaN."""
    mean: float
    ci: float
    """Half-width of the 95 % CI of the mean top-and-random score (Student t over features)."""
    random_mean: float
    random_ci: float
    scoring: str = "simulation"
    """Simulation: ``mean`` is the top-and-random correlation. Detection, fuzzing: ``mean`` is the AUROC, there is no
    random-only score, and ``balanced_mean`` is the balanced accuracy."""
    balanced_mean: float = float("nan")
    balanced_ci: float = float("nan")
    first_failure: str | None = None
    """The first failed call's message (None when nothing failed), to say why next to a failed measurement."""
    undefined: tuple[tuple[str, int], ...] = ()
    """Why the ``n_undefined`` top-and-random correlations are undefined: (reason, count), most frequent first."""
    random_undefined: tuple[tuple[str, int], ...] = ()
    """The same for the random-only correlations, left out of ``random_mean``."""
    n_random: int | None = None
    """Features with a defined random-only score (None: as ``n_scored``, for a summary built by hand)."""

    @property
    def n_random_scored(self) -> int:
        return self.n_scored if self.n_random is None else self.n_random

    @property
    def n_random_undefined(self) -> int:
        return sum(n for _, n in self.random_undefined)

    def undefined_words(self, random_only: bool = False) -> str:
        """The undefined correlations of one score in words, e.g. ``12 undefined (constant simulation 12)``; empty
        when there are none."""
        reasons = self.random_undefined if random_only else self.undefined
        total = sum(n for _, n in reasons)
        return f"{total} undefined ({', '.join(f'{why} {n}' for why, n in reasons)})" if total else ""

    def row(self) -> str:
        second = (self.random_mean, self.random_ci) if self.scoring == "simulation" else (self.balanced_mean, self.balanced_ci)
        undefined = f"{self.n_undefined} / {self.n_random_undefined}" if self.scoring == "simulation" else "–"
        return (f"| {self.site} | {self.method} | {self.mean:.3f} ± {self.ci:.3f} | {second[0]:.3f} ± {second[1]:.3f} "
                f"| {self.n_scored} | {self.n_skipped} | {self.n_failed} | {undefined} |")


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


def _reasons(whys: Sequence[str | None]) -> tuple[tuple[str, int], ...]:
    return tuple(Counter(why for why in whys if why is not None).most_common())


def summarize(method: str, site: str, results: Sequence[FeatureResult], *, skipped: int = 0,
              scoring: str = "simulation") -> MethodSummary:
    """``skipped``: features skipped before scoring; those the task could not score (:attr:`FeatureResult.skipped`)
    are added to them. An undefined correlation is counted with its reason and left out of its mean."""
    scored = [r for r in results if r.score is not None]
    failed = [r for r in results if r.failure is not None]
    randoms = [r.random_score for r in results if r.random_score is not None]
    mean, ci = mean_ci([r.score for r in scored])
    random_mean, random_ci = mean_ci(randoms)
    balanced_mean, balanced_ci = mean_ci([r.balanced_accuracy for r in scored if r.balanced_accuracy is not None])
    undefined = _reasons([r.undefined for r in results])
    return MethodSummary(method, site, len(scored), len(failed), skipped + sum(r.skipped is not None for r in results),
                         sum(n for _, n in undefined), mean, ci, random_mean, random_ci, scoring, balanced_mean,
                         balanced_ci, failed[0].failure if failed else None, undefined,
                         _reasons([r.random_undefined for r in results]), len(randoms))


def summary_table(summaries: Sequence[MethodSummary]) -> str:
    """Markdown table of summaries (what the notebook shows next to each figure), and which correlations were
    undefined and why."""
    simulation = all(s.scoring == "simulation" for s in summaries)
    scores = "top-and-random (95 % CI) | random-only (95 % CI)" if simulation else "AUROC (95 % CI) | balanced accuracy (95 % CI)"
    head = (f"| site | method | {scores} | scored | skipped | failed | undefined (top-and-random / random-only) |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n")
    notes = [f"{s.site} {s.method}, {what}: {words}" for s in summaries
             for what, words in (("top-and-random", s.undefined_words()), ("random-only", s.undefined_words(True)))
             if words]
    why = ("\nUndefined correlations (a constant side, or a variance float64 cannot hold) are left out of the means, "
           "as the reference scorer leaves them NaN: " + "; ".join(notes) + ".\n") if notes else ""
    return head + "\n".join(s.row() for s in summaries) + "\n" + why
