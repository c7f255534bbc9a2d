"""Notebook 02's claim verdicts (Figures 2, 8, 9, 18, Tables 1 and 2, Appendix C.3): each function turns
score summaries into the scoreboard's (ours, verdict, note) by the :class:`~sae_paper.report.rules.Rule` defined
above it, whose thresholds it reads.

The four central claims (Figures 2 early layers and depth, 8 and 9) are decided at several seeds and followed over
fragment budgets, so their functions return a :class:`~sae_paper.report.finding.Decision`: the finding and the number
its rule thresholds, computed once. Their rules ask whether the SAE is *clearly* above a baseline, its lower 95 %
bound above the baseline's upper one (:func:`_gap`), so the deciding number is the smallest such gap the rule looks
at: positive exactly when the verdict is *reproduced*.
:func:`decisions` gives all four from one seed's (or one pool's) summaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters.autointerp import BASELINES, LABELS, AutointerpStudy, mark_weakened
from sae_paper.data.models import Site
from sae_paper.report.finding import Decision, Finding
from sae_paper.report.rules import Rule

STAND_IN = ("token-list stand-in for GPT-4/GPT-3.5 (explanations are token lists, simulation is a lookup)")


def _backend_note(backend: str, scoring: str = "simulation") -> str:
    """Who scored and how: under detection or fuzzing every number of the verdict is an AUROC (0.5 = chance)."""
    who = STAND_IN if backend == "token-list" else f"{backend} explainer/simulator"
    return who if scoring == "simulation" else f"{who}; scored by {scoring}: AUROC, 0.5 = chance (the paper's correlation: 0)"


def _scoring(summaries: Iterable[MethodSummary]) -> str:
    """The scoring the summaries were scored by (each carries it)."""
    return next((s.scoring for s in summaries), "simulation")


def _marks(backend: str) -> tuple[str, ...]:
    """Every verdict of notebook 02 is decided by its scorer: marked ``stand-in`` when that is the token-list one."""
    return ("stand-in",) if backend == "token-list" else ()


def _fmt(s: MethodSummary, random_only: bool = False) -> str:
    mean, ci = (s.random_mean, s.random_ci) if random_only else (s.mean, s.ci)
    return f"{LABELS.get(s.method, s.method)} {mean:.2f}±{ci:.2f}"


def _by(summaries: Iterable[MethodSummary]) -> dict[tuple[str, str], MethodSummary]:
    return {(s.site, s.method): s for s in summaries}


def _gap(a: MethodSummary, b: MethodSummary, *, random_only: bool = False) -> float:
    """``a``'s lower 95 % bound minus ``b``'s upper one: positive exactly when ``a`` is clearly above ``b`` (the CIs do
    not overlap, a difference the feature sample can tell); NaN when either CI is unknown (then it is not clear)."""
    if random_only:
        return (a.random_mean - a.random_ci) - (b.random_mean + b.random_ci)
    return (a.mean - a.ci) - (b.mean + b.ci)


def _half_width(a: MethodSummary, b: MethodSummary, *, random_only: bool = False) -> float:
    """The 95 % half-width of ``a``'s mean minus ``b``'s, √(ci_a² + ci_b²) (an unknown CI counts as 0)."""
    cis = (a.random_ci, b.random_ci) if random_only else (a.ci, b.ci)
    return math.hypot(*(0.0 if math.isnan(c) else c for c in cis))


def _smallest(values: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The (value, half-width) with the smallest value; NaN if any value is NaN (the rule's test then fails), +inf
    for none (nothing to be below)."""
    if any(math.isnan(v) for v, _ in values):
        return math.nan, 0.0
    return min(values, key=lambda pair: pair[0], default=(math.inf, 0.0))


def _smallest_gap(sae: MethodSummary, others: Sequence[MethodSummary], *,
                  random_only: bool = False) -> tuple[float, float]:
    """(The smallest :func:`_gap` of ``sae`` over ``others``, its half-width): positive exactly when ``sae`` is clearly
    above every one of them."""
    return _smallest([(_gap(sae, b, random_only=random_only), _half_width(sae, b, random_only=random_only))
                      for b in others])


def _failures(summaries: Sequence[MethodSummary], *, random_only: bool = False) -> str:
    """The failed calls, and the undefined correlations of one score left out of the means (the reference's NaN)."""
    failed = sum(s.n_failed for s in summaries)
    sites = {s.site for s in summaries}  # over several layers each count says whose it is
    undefined = [f"{s.site + ' ' if len(sites) > 1 else ''}{LABELS.get(s.method, s.method)} {words}" for s in summaries
                 if (words := s.undefined_words(random_only))]
    return "; ".join([f"{failed} failed call(s) excluded" if failed else "no failed calls"] + (
        [f"{'random-only' if random_only else 'top-and-random'} correlations excluded from the means: "
         + ", ".join(undefined)] if undefined else []))


MEASUREMENT_FAILED = "measurement-failed"
"""The mark of a verdict that no rule decided: a method the rule compares has no score (every feature failed a call or
was skipped). Its verdict is *not comparable*: no number was measured to be judged."""


def unmeasured(rule: Rule, needed: Iterable[MethodSummary], *, backend: str) -> Finding | None:
    """The finding of ``rule``'s claim when a summary in ``needed`` scored no feature (None when each scored one): the
    rule cannot compare a missing score, so the verdict is *not comparable*, marked :data:`MEASUREMENT_FAILED`, and it
    says how often the calls failed and the first failure. A method that scored some of its features is
    judged on those, its failed count in the note (:func:`_failures`)."""
    needed = list(needed)
    empty = [s for s in needed if s.n_scored == 0]
    if not empty:
        return None
    missing = ("no method it compares scored a feature" if len(empty) == len(needed) else
               "no score for " + ", ".join(f"{LABELS.get(s.method, s.method)} at {s.site}" for s in empty))
    return measurement_failed(rule, needed, missing, backend=backend)


def measurement_failed(rule: Rule, summaries: Sequence[MethodSummary], missing: str, *, backend: str,
                       random_only: bool = False) -> Finding:
    """*not comparable*, marked :data:`MEASUREMENT_FAILED`: how many of ``summaries``' features were scored, how many
    failed a call (quoting the first failure) or were undefined (why, in the note) and what the rule lacks."""
    failure = next((s.first_failure for s in summaries if s.first_failure), "")
    scored, failed, skipped, undefined = (sum(getattr(s, n) for s in summaries)
                                          for n in ("n_scored", "n_failed", "n_skipped", "n_undefined"))
    ours = (f"measurement failed: {scored} of {scored + undefined + failed} features scored, {failed} failed a call"
            + (f", {undefined} undefined" if undefined else "") + (f", {skipped} skipped" if skipped else "")
            + (f": {failure}" if failure and failed else "") + f"; {missing}")
    note = rule.note(f"no verdict: {missing}", _backend_note(backend, _scoring(summaries)),
                     *([_failures(summaries, random_only=random_only)] if undefined or random_only else []))
    return Finding(ours, "not comparable", note, (*_marks(backend), MEASUREMENT_FAILED))


EARLY_LAYERS_RULE = Rule(
    "fig2-early-layers",
    paper="SAE features are far more interpretable than every baseline in early layers",
    rule="at the earliest layer scored, the SAE's mean top-and-random score above every baseline's (neurons, random "
         "directions, PCA, ICA) with non-overlapping 95% CIs → reproduced; above every baseline's mean with some CI "
         "overlapping → partly; otherwise not",
    why="'far more' is a difference the sample of scored features can tell, so the 95% intervals must not overlap; a "
        "mean ahead inside the noise is partly; our earliest layer is the profile's first, not necessarily layer 0",
    deciding=("the SAE against every baseline at the earliest layer",))


def early_layers_finding(summaries: Sequence[MethodSummary], layers: Sequence[int], *, backend: str) -> Decision:
    """Figure 2, early layers (:data:`EARLY_LAYERS_RULE`); deciding number: the smallest gap between the SAE's lower
    95 % bound and a baseline's upper one at the first layer."""
    by = _by(summaries)
    site = str(Site("resid_post", layers[0]))
    sae = by[(site, "sae")]
    bases = [by[(site, m)] for m in BASELINES if (site, m) in by]
    failed = unmeasured(EARLY_LAYERS_RULE, [sae, *bases], backend=backend)
    if failed:
        return Decision(failed, math.nan)
    above = all(sae.mean > b.mean for b in bases)
    gap, ci = _smallest_gap(sae, bases)
    verdict = "reproduced" if above and gap > 0 else "partly" if above else "not"
    ours = f"{site}: " + ", ".join(_fmt(s) for s in [sae, *bases])
    note = EARLY_LAYERS_RULE.note(f"{sae.n_scored + sae.n_undefined} features per method", _backend_note(backend, sae.scoring),
                                  _failures([sae, *bases]))
    return Decision(Finding(ours, verdict, note, _marks(backend)), gap, ci)


DEPTH_RULE = Rule(
    "fig2-depth",
    paper="the margin shrinks with depth, comparable to ICA at layer 4, minimal gain at the last layer",
    rule="margin = the SAE's mean score − the best baseline's, per layer: clear at the first layer (non-overlapping 95% "
         "CIs) and below {shrink_to:.0%} of it at the last → reproduced; positive at the first layer and smaller at the "
         "last → partly; otherwise not",
    thresholds={"shrink_to": 0.5},
    why="'minimal gain at the last layer' is read as less than half the first layer's margin; the margin is over the "
        "best baseline rather than ICA by name, so the rule does not depend on which baseline is strongest in our "
        "model (ICA is shown); a margin that was never clear cannot be shown to shrink, so that is at most partly",
    deciding=("the SAE's margin over the best baseline at the first layer", "that margin at the deepest layer scored"))


def depth_finding(summaries: Sequence[MethodSummary], layers: Sequence[int], *, backend: str, n_layers: int) -> Decision:
    """Figure 2, depth (:data:`DEPTH_RULE`); deciding number: the smaller of the first layer's gap between the SAE's
    lower 95 % bound and the best baseline's upper one and how far the last layer's margin is below
    ``shrink_to`` × the first's (both positive: reproduced)."""
    by = _by(summaries)
    sites = [str(Site("resid_post", layer)) for layer in layers]
    failed = unmeasured(DEPTH_RULE, [by[(site, m)] for site in sites for m in ("sae", *BASELINES) if (site, m) in by],
                        backend=backend)
    if failed:
        return Decision(failed, math.nan)
    pairs, lines = [], []  # (SAE, best baseline) per layer
    for layer in layers:
        site = str(Site("resid_post", layer))
        best = max((by[(site, m)] for m in BASELINES if (site, m) in by), key=lambda b: b.mean)
        pairs.append((by[(site, "sae")], best))
        ica = by.get((site, "ica"))
        lines.append(f"L{layer}: SAE {by[(site, 'sae')].mean:.2f} vs best baseline {LABELS[best.method]} {best.mean:.2f}"
                     + (f", ICA {ica.mean:.2f}" if ica else ""))
    margins = [sae.mean - best.mean for sae, best in pairs]
    first_gap = _gap(*pairs[0])
    first_clear = first_gap > 0
    shrinks = margins[0] > 0 and margins[-1] < margins[0]
    below = margins[0] * DEPTH_RULE.thresholds["shrink_to"] - margins[-1]
    small = below > 0
    verdict = "reproduced" if first_clear and shrinks and small else "partly" if shrinks else "not"
    ours = ("; ".join(lines) + f"; margin {margins[0]:+.2f} → {margins[-1]:+.2f}"
            + ("" if first_clear else " (first layer: SAE not above the best baseline beyond the 95% CIs)"))
    note = DEPTH_RULE.note(f"our deepest layer is {layers[-1]} of {n_layers} (the paper went to the last layer)",
                           _backend_note(backend, _scoring(summaries)))
    deciding = _smallest([(first_gap, _half_width(*pairs[0])), (below, math.hypot(_half_width(*pairs[0]),
                                                                                  _half_width(*pairs[-1])))])
    return Decision(Finding(ours, verdict, note, _marks(backend)), *deciding)


RANDOM_ONLY_RULE = Rule(
    "fig9-random-only",
    paper="random-only scores per layer: lower, SAE still ahead, especially early",
    rule="at the earliest layer, the SAE's random-only score above every baseline's with non-overlapping 95% CIs, and "
         "the SAE's random-only score below its top-and-random one at every layer → reproduced; the SAE's random-only "
         "mean above every baseline's → partly; otherwise not",
    why="random-only scoring is a control, and every method scores lower on random fragments than on top-and-random "
        "ones, baselines included: 'lower' shows nothing about SAEs, so it is required for reproduced (the paper says "
        "it) but never lifts a verdict; what is about SAEs is 'still ahead' of the baselines, judged at the earliest "
        "layer as 'especially early' says, with the CIs as in fig2-early-layers",
    deciding=("the SAE against every baseline on random-only scores at the earliest layer",))


def random_only_finding(summaries: Sequence[MethodSummary], layers: Sequence[int], *, backend: str) -> Decision:
    """Figure 9 (:data:`RANDOM_ONLY_RULE`): decided by the SAE against the baselines on random-only scores; 'lower than
    top-and-random' holds for every method, so it can only keep a verdict from *reproduced*. Deciding number: the
    smallest random-only gap between the SAE's lower 95 % bound and a baseline's upper one at the first layer, or the
    smallest (top-and-random − random-only) of the SAE over the layers where that is smaller. Detection and fuzzing
    score activating and non-activating fragments together, with no random-only score: *not comparable*."""
    by = _by(summaries)
    scoring = _scoring(summaries)
    if scoring != "simulation":
        ours = f"no random-only score under {scoring} scoring"
        note = RANDOM_ONLY_RULE.note(f"{scoring} scores activating against non-activating fragments together (AUROC): "
                                     "there is no score on random fragments alone to compare",
                                     _backend_note(backend, scoring))
        return Decision(Finding(ours, "not comparable", note, _marks(backend)), math.nan)
    saes = {layer: by[(str(Site("resid_post", layer)), "sae")] for layer in layers}
    site = str(Site("resid_post", layers[0]))
    needed = [*saes.values(), *(by[(site, m)] for m in BASELINES if (site, m) in by)]
    failed = unmeasured(RANDOM_ONLY_RULE, needed, backend=backend)
    if failed:
        return Decision(failed, math.nan)
    if none := [f"{LABELS.get(s.method, s.method)} at {s.site}" for s in needed if s.n_random_scored == 0]:
        # every random-only correlation undefined: no number to judge, as when every call failed
        return Decision(measurement_failed(RANDOM_ONLY_RULE, needed, "no defined random-only score for " + ", ".join(none),
                                           backend=backend, random_only=True), math.nan)
    lower_by = [(s.mean - s.random_mean, 0.0) for s in saes.values()]
    lower = all(s.random_mean < s.mean for s in saes.values())
    sae = saes[layers[0]]
    bases = [by[(site, m)] for m in BASELINES if (site, m) in by]
    ahead = all(sae.random_mean > b.random_mean for b in bases)
    gap = _smallest_gap(sae, bases, random_only=True)
    verdict = "reproduced" if lower and gap[0] > 0 else "partly" if ahead else "not"
    ours = (f"random-only at {site}: " + ", ".join(_fmt(s, True) for s in [sae, *bases]) + "; SAE random-only vs "
            "top-and-random per layer: " + ", ".join(f"L{layer} {s.random_mean:.2f} vs {s.mean:.2f}" for layer, s in saes.items()))
    note = RANDOM_ONLY_RULE.note(_failures([sae, *bases], random_only=True), _backend_note(backend))
    return Decision(Finding(ours, verdict, note, _marks(backend)), *_smallest([gap, *lower_by]))


RATIO_RULE = Rule(
    "fig8-ratio",
    paper="mean score vs dictionary ratio R ∈ {0.5,1,2,4,8} (also R < 1 beats baselines)",
    rule="at the main layer, every ratio's SAE above the best baseline with non-overlapping 95% CIs → reproduced; "
         "every ratio's mean above the best baseline's, or every R ≥ {full_ratio:g} clearly above → partly; otherwise not",
    thresholds={"full_ratio": 1},
    why="'beats' is read as Figure 2's CIs show it, against the strongest baseline at that layer; the paper's point is "
        "that even R < 1 beats them, so ratios of at least 1 alone make it partly; our SAEs saw far fewer activations "
        "than the paper's 20M",
    deciding=("every ratio's SAE against the best baseline at the main layer",))


def ratio_finding(by_ratio: Mapping[float, MethodSummary], baseline_summaries: Sequence[MethodSummary], *,
                  backend: str) -> Decision:
    """Figure 8 (:data:`RATIO_RULE`); deciding number: the smallest gap of any ratio's SAE (its lower 95 % bound) over
    the best baseline's upper bound."""
    failed = unmeasured(RATIO_RULE, [*by_ratio.values(), *baseline_summaries], backend=backend)
    if failed:
        return Decision(failed, math.nan)
    best = max(baseline_summaries, key=lambda b: b.mean)
    full = RATIO_RULE.thresholds["full_ratio"]
    above = {r: s.mean > best.mean for r, s in by_ratio.items()}
    gaps = {r: (_gap(s, best), _half_width(s, best)) for r, s in by_ratio.items()}
    clear = {r: gap > 0 for r, (gap, _) in gaps.items()}
    verdict = ("reproduced" if all(clear.values())
               else "partly" if all(above.values()) or all(v for r, v in clear.items() if r >= full) else "not")
    ours = (", ".join(f"R={r:g}: {s.mean:.2f}±{s.ci:.2f}" for r, s in sorted(by_ratio.items()))
            + f"; best baseline {LABELS[best.method]} {best.mean:.2f}")
    note = RATIO_RULE.note(f"{by_ratio and next(iter(by_ratio.values())).site}",
                           "our SAEs saw ~5e4 activations (the paper's 20M)",
                           _backend_note(backend, _scoring(baseline_summaries)))
    return Decision(Finding(ours, verdict, note, _marks(backend)), *_smallest(list(gaps.values())))


TOPK_RULE = Rule(
    "fig18-topk",
    paper="Figure 2 with top-K PCA and ICA added: top-K explains only a small part of the gap",
    rule="for X in PCA and ICA at each layer, the share of the gap SAE − X that top-K X closes (where the gap exceeds "
         "{min_gap:g}), averaged: the SAE above every top-K and the mean share < {small_part:.0%} → reproduced; the SAE "
         "above every top-K with more of the gap closed → partly; otherwise not",
    thresholds={"small_part": 0.5, "min_gap": 0.02},
    why="'only a small part' is read as less than half of the gap; a gap under 0.02 in score makes the share a ratio "
        "of two noises, so it is left out of the mean; K = the mean L0 of our R = 1 SAE on the fragments, as the "
        "paper's K is its dictionary's",
    deciding=("the SAE above top-K PCA and ICA", "the share of the gap top-K closes"))


def topk_finding(summaries: Sequence[MethodSummary], layers: Sequence[int], ks: Mapping[int, int], *,
                 backend: str) -> Finding:
    """Figure 18 (:data:`TOPK_RULE`)."""
    rule = TOPK_RULE.thresholds
    by = _by(summaries)
    sites = [str(Site("resid_post", layer)) for layer in layers]
    failed = unmeasured(TOPK_RULE, [by[(site, m)] for site in sites for m in ("sae", "pca", "ica", "topk-pca", "topk-ica")
                                    if (site, m) in by], backend=backend)
    if failed:
        return failed
    shares, above, parts = [], True, []
    for layer in layers:
        site = str(Site("resid_post", layer))
        sae = by[(site, "sae")]
        for base in ("pca", "ica"):
            if (site, f"topk-{base}") not in by or (site, base) not in by:
                continue
            plain, topk = by[(site, base)].mean, by[(site, f"topk-{base}")].mean
            above &= sae.mean > topk
            if sae.mean - plain > rule["min_gap"]:
                shares.append((topk - plain) / (sae.mean - plain))
            parts.append(f"L{layer} {base.upper()} {plain:.2f}→top-{ks.get(layer)} {topk:.2f}")
    mean_share = sum(shares) / len(shares) if shares else float("nan")
    verdict = ("reproduced" if above and mean_share < rule["small_part"] else "partly" if above else "not")
    ours = "; ".join(parts) + f"; SAE above every top-K: {above}; mean share of the gap closed {mean_share:.2f}"
    note = TOPK_RULE.note("K = mean L0 of our R=1 SAE on the fragments", _backend_note(backend, _scoring(summaries)))
    return Finding(ours, verdict, note, _marks(backend))


PAPER_TABLE1 = (("surnames", 0.33), ("actions by subject/object", -0.11), ("'W'/words starting with w", 0.55),
                ("the number '5'", 0.57), ("legal terms", 0.19))
MOMENTS_RULE = Rule(
    "table2-moments",
    paper="correlation of top-and-random score with feature moments: mean −0.09, variance 0.02, skew 0.20, "
          "kurtosis 0.15",
    rule="each of the four correlations within ±{tolerance:g} of the paper's (mean {paper_mean:+g}, variance "
         "{paper_variance:+g}, skew {paper_skew:+g}, kurtosis {paper_kurtosis:+g}): all four → reproduced, at least "
         "{partly_count:g} → partly, otherwise not",
    thresholds={"paper_mean": -0.09, "paper_variance": 0.02, "paper_skew": 0.20, "paper_kurtosis": 0.15,
                "tolerance": 0.2, "partly_count": 2},
    why="±0.2 is about the 95% interval of a correlation over ~100 features (1.96/√100), so a closer match cannot be "
        "told from noise; the paper's correlations are all weak, and weak correlations in ours reproduce what it "
        "reports (a feature's moments say little about how interpretable it is); the paper's text also gives 0.19 and "
        "0.24 for skew and kurtosis, both inside the band around the table's values",
    deciding=("the correlation of score with each of mean, variance, skew and kurtosis",))
PAPER_TABLE2 = {k: MOMENTS_RULE.thresholds[f"paper_{k}"] for k in ("mean", "variance", "skew", "kurtosis")}
TABLE1_RULE = Rule(
    "table1-first-five",
    paper="explanations and scores of the first five features (order in the dictionary) of the layer-1 residual "
          "dictionary",
    rule="not comparable: our first five features are reported beside the paper's, with their mean score",
    why="a feature's index in a dictionary is arbitrary (it depends on the initialisation), so feature 0 of our "
        "dictionary has nothing to do with the paper's feature 0, and another model's dictionary has none of its "
        "features; no number we can measure is the paper's",
    deciding=("the explanations and scores of five particular features",),
    not_comparable=True)


def table1_finding(rows: Sequence[tuple[int, str | None, float | None]], site: str, *, backend: str,
                   scoring: str = "simulation") -> Finding:
    """Table 1: not comparable by construction (:data:`TABLE1_RULE`); we report our first features."""
    ours = f"{site}: " + "; ".join(f"#{f} {'skipped' if s is None and e is None else (e or 'failed')[:60]} "
                                   f"{'' if s is None else f'{s:.2f}'}".strip() for f, e, s in rows)
    scored = [s for _, _, s in rows if s is not None]
    mean = (f"mean of our scored first features {sum(scored) / len(scored):.2f} vs the paper's 0.31" if scored
            else "none of our first features scored")
    note = TABLE1_RULE.note("not comparable by construction: feature indices are arbitrary, and this is another "
                            "model's dictionary", mean, _backend_note(backend, scoring))
    return Finding(ours, "not comparable", note, _marks(backend))


def moments_correlations(results) -> dict[str, float]:
    """Correlation across features between the top-and-random score and each moment of the feature's activation."""
    from sae_paper.analysis.autointerp.scoring import correlation

    scored = [r for r in results if r.score is not None and r.moments is not None
              and all(math.isfinite(getattr(r.moments, k)) for k in PAPER_TABLE2)]
    scores = [r.score for r in scored]
    return {k: (correlation(scores, [getattr(r.moments, k) for r in scored]) or float("nan")) for k in PAPER_TABLE2}


def moments_finding(correlations: Mapping[str, float], n: int, *, backend: str,
                    summaries: Sequence[MethodSummary] = ()) -> Finding:
    """Table 2 (:data:`MOMENTS_RULE`); ``summaries``: those of the SAE features correlated, which say how many failed
    when no correlation could be measured."""
    rule = MOMENTS_RULE.thresholds
    if summaries and not any(math.isfinite(v) for v in correlations.values()):
        return measurement_failed(MOMENTS_RULE, summaries, "no correlation: fewer than 2 SAE features scored",
                                  backend=backend)
    close = [k for k, v in correlations.items() if abs(v - PAPER_TABLE2[k]) <= rule["tolerance"]]
    verdict = ("reproduced" if len(close) == len(PAPER_TABLE2) else "partly" if len(close) >= rule["partly_count"]
               else "not")
    ours = ", ".join(f"{k} {v:+.2f} (paper {PAPER_TABLE2[k]:+.2f})" for k, v in correlations.items()) + f" over {n} SAE features"
    note = MOMENTS_RULE.note("kurtosis is excess kurtosis", "SAE features of every layer and ratio scored here",
                             _backend_note(backend, _scoring(summaries)))
    return Finding(ours, verdict, note, _marks(backend))


MLP_INTERP_RULE = Rule(
    "c3-mlp-interp",
    paper="MLP results (C.3): more interpretable than neurons",
    rule="the MLP SAE's mean score above the MLP neurons' at the same layer with non-overlapping 95% CIs → reproduced; "
         "above with the CIs overlapping → partly; otherwise not",
    why="as fig2-early-layers: 'more interpretable' is a difference the sample of scored features can tell; neurons "
        "are the MLP's own basis, the one baseline the paper compares with here",
    deciding=("the MLP SAE against the MLP neurons",))


def mlp_finding(sae: MethodSummary, neurons: MethodSummary, *, backend: str) -> Finding:
    """Appendix C.3 (:data:`MLP_INTERP_RULE`)."""
    failed = unmeasured(MLP_INTERP_RULE, [sae, neurons], backend=backend)
    if failed:
        return failed
    above = sae.mean > neurons.mean
    separated = _gap(sae, neurons) > 0
    verdict = "reproduced" if above and separated else "partly" if above else "not"
    ours = f"{sae.site}: SAE {sae.mean:.2f}±{sae.ci:.2f} vs neurons {neurons.mean:.2f}±{neurons.ci:.2f} " \
           f"({sae.n_scored} vs {neurons.n_scored} features; {sae.n_skipped} SAE features skipped while drawing)"
    return Finding(ours, verdict, MLP_INTERP_RULE.note(_backend_note(backend, sae.scoring)), _marks(backend))


RULES = (EARLY_LAYERS_RULE, DEPTH_RULE, RANDOM_ONLY_RULE, RATIO_RULE, TOPK_RULE, TABLE1_RULE, MOMENTS_RULE,
         MLP_INTERP_RULE)
"""Notebook 02's rules, one per claim it decides."""


CENTRAL = ("fig2-early-layers", "fig2-depth", "fig9-random-only", "fig8-ratio")
"""The claims decided at several seeds and followed over fragment budgets, in the order the notebook records them."""
WHAT = {"fig2-early-layers": "smallest gap, SAE's lower 95% bound − a baseline's upper, first layer",
        "fig2-depth": "smaller of the first layer's clear gap over the best baseline and (½ first margin − last margin)",
        "fig9-random-only": "smallest random-only gap, SAE's lower 95% bound − a baseline's upper, first layer",
        "fig8-ratio": "smallest gap of any R's lower 95% bound over the best baseline's upper"}
"""What each central claim's deciding number is, in words (the scoreboard's *deciding number*)."""


def decisions(summaries: Sequence[MethodSummary], study: AutointerpStudy, *, backend: str, n_layers: int,
              weakened: str = "") -> dict[str, Decision]:
    """The four central claims' decisions from one seed's (or one fragment pool's) summaries, each by its rule;
    ``weakened``: the ICA fits that stopped short of convergence (:func:`~sae_paper.chapters.autointerp.fit_report`),
    which marks every claim, since ICA is among the baselines each compares with."""
    main_site = str(Site("resid_post", study.main_layer))
    by = _by(summaries)
    by_ratio = {r: by[(main_site, study.ratio_method(r))] for r in study.fig8_ratios
                if (main_site, study.ratio_method(r)) in by}
    main_baselines = [s for s in summaries if s.site == main_site and s.method in BASELINES]
    found = {"fig2-early-layers": early_layers_finding(summaries, study.layers, backend=backend),
             "fig2-depth": depth_finding(summaries, study.layers, backend=backend, n_layers=n_layers),
             "fig9-random-only": random_only_finding(summaries, study.layers, backend=backend),
             "fig8-ratio": ratio_finding(by_ratio, main_baselines, backend=backend)}
    return {claim: d._replace(finding=mark_weakened(d.finding, weakened)) for claim, d in found.items()}
