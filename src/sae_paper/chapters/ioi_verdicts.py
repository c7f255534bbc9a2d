"""Notebook 03's verdicts: Figure 3's and Figure 17's claims, each a function of patching curves with its rule.

Section 4 and Appendix F of the paper. Each sparse SAE is compared with each baseline (PCA
and the α = 0 dictionary) at KL levels both curves reach; the share of comparisons it wins
decides the verdict (:func:`comparison`), by the :class:`~sae_paper.report.rules.Rule` defined beside each
verdict function. The notebook's budget sensitivity (:func:`sae_paper.chapters.ioi.token_sweep`) recomputes the
same shares at other training budgets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sae_paper.analysis.patching_curves import PatchingCurve, cost_to_reach, kl_levels
from sae_paper.errors import SaePaperError
from sae_paper.report.finding import Decision, Finding
from sae_paper.report.rules import Rule


def dictionary_name(alpha: float) -> str:
    """The label a dictionary carries in tables and figures."""
    return "α=0 dictionary" if alpha == 0 else f"SAE α={alpha:g}"


# --------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------


def _alpha_of(curve: PatchingCurve) -> float | None:
    if curve.name == dictionary_name(0.0):
        return 0.0
    if curve.name.startswith("SAE α="):
        return float(curve.name.removeprefix("SAE α="))
    return None


def _split(curves: Sequence[PatchingCurve]) -> tuple[list[PatchingCurve], list[PatchingCurve]]:
    """(sparse SAEs, baselines: PCA and the α = 0 dictionary)."""
    sparse = [c for c in curves if (_alpha_of(c) or 0) > 0]
    baselines = [c for c in curves if _alpha_of(c) in (None, 0.0)]
    return sparse, baselines


def _fmt(value: float | None, what: str) -> str:
    if value is None:
        return "never"
    return f"{value:.0f}" if what == "features" else f"{value:.3g}"


SHARES = {"reproduced_share": 0.9, "partly_share": 0.5}
"""The shares of won comparisons Figure 3's two verdicts (and Figure 17's, per layer) ask for."""
N_LEVELS = 8
"""KL levels per pair of curves."""


def comparison(curves: Sequence[PatchingCurve], what: str) -> tuple[int, int, list[str]]:
    """(wins, comparisons, summary parts): each sparse SAE against each baseline at the KL levels both reach.

    The levels of a pair are log-spaced between 1.5× the higher of the two floors and half
    the base KL (:func:`sae_paper.analysis.patching_curves.kl_levels`). A curve that never
    reaches a level counts as needing infinitely many features (or an infinite edit). Where
    the higher floor leaves no such level, the pair is compared at the levels of the curve
    with the lower floor alone, which the other loses wherever it cannot reach them: a
    dictionary that cannot reach the KL the other reaches does not reach "a given KL" with
    fewer features, whichever side it is on. Only a pair where neither curve has a level is
    skipped (said in the summary).
    """
    sparse, baselines = _split(curves)
    if not sparse or not baselines:
        raise SaePaperError("the Figure 3 verdicts need at least one sparse SAE and one baseline (PCA or α = 0)")
    inf = math.inf
    wins = total = 0
    parts = []
    for s in sparse:
        for b in baselines:
            levels, alone = kl_levels([s, b], N_LEVELS), ""
            if not levels:
                lower = min((s, b), key=lambda c: c.kl_all)
                higher = b if lower is s else s
                levels = kl_levels([lower], N_LEVELS)
                if not levels:
                    parts.append(f"{s.name} vs {b.name}: neither reaches half the base KL (floors {s.kl_all:.2g}, "
                                 f"{b.kl_all:.2g})")
                    continue
                alone = f", at the levels only {lower.name} reaches (floor of {higher.name}: {higher.kl_all:.2g})"
            costs = cost_to_reach([s, b], levels)
            pair_wins = sum((inf if mine is None else mine) < (inf if theirs is None else theirs)
                            for mine, theirs in zip(costs[s.name][what], costs[b.name][what]))
            wins, total = wins + pair_wins, total + len(levels)
            middle = len(levels) // 2
            parts.append(f"{s.name} vs {b.name}: {pair_wins}/{len(levels)} (at KL {levels[middle]:.2g}: "
                         f"{_fmt(costs[s.name][what][middle], what)} vs {_fmt(costs[b.name][what][middle], what)}{alone})")
    return wins, total, parts


def _verdict(share: float) -> str:
    return ("reproduced" if share >= SHARES["reproduced_share"] else "partly" if share >= SHARES["partly_share"]
            else "not")


_FIGURE3_PAPER = ("sparse dictionaries reach a given KL with fewer patches and smaller edits than PCA and the α = 0 "
                  "dictionary")
_FIGURE3_RULE = ("each sparse SAE against each baseline (PCA, the α = 0 dictionary) at {n_levels:g} KL levels from just "
                 "above the higher floor to half the base KL (where one curve alone has such levels, at its levels, "
                 "the other losing wherever it cannot reach them): the sparse SAE needs {cost} at ≥ "
                 "{reproduced_share:.0%} of the (level, SAE, baseline) comparisons → reproduced, at ≥ "
                 "{partly_share:.0%} → partly, otherwise not; not comparable only if no pair has a level either curve "
                 "reaches")
_FIGURE3_WHY = ("'a given KL' is any KL the curves reach, so the comparison runs over a range of levels rather than "
                "at one; a dictionary that cannot reach a level the other reaches would need infinitely many features "
                "(an infinite edit) there, so it loses those levels, the sparse SAE and the baselines alike, rather "
                "than escaping as not comparable; 90% lets one level in ten go the other way where two curves cross; "
                "below half the ordering is no longer the rule")
FEWER_FEATURES_RULE = Rule(
    "fig3-fewer-features", paper=_FIGURE3_PAPER,
    rule=_FIGURE3_RULE.replace("{cost}", "strictly fewer patched features"),
    thresholds={**SHARES, "n_levels": N_LEVELS}, why=_FIGURE3_WHY,
    deciding=("patched features needed to reach each KL level, sparse SAE against PCA and the α = 0 dictionary",))
SMALLER_EDITS_RULE = Rule(
    "fig3-smaller-edits", paper=_FIGURE3_PAPER,
    rule=_FIGURE3_RULE.replace("{cost}", "a strictly smaller mean edit (L2 norm of the vector added to the residual "
                                         "stream, over patched prompt positions)"),
    thresholds={**SHARES, "n_levels": N_LEVELS}, why=_FIGURE3_WHY,
    deciding=("the mean edit needed to reach each KL level, sparse SAE against PCA and the α = 0 dictionary",))


def fewer_features_finding(curves: Sequence[PatchingCurve], *, setting: str) -> Decision:
    """Figure 3 (left): sparse dictionaries reach a given KL with fewer patched features than PCA and α = 0
    (:data:`FEWER_FEATURES_RULE`, by :func:`comparison`); deciding number: the share of comparisons won (0 when no
    pair has a common level), which the rule's shares threshold."""
    wins, total, parts = comparison(curves, "features")
    share = wins / total if total else 0.0
    ours = (f"{setting}: the sparse SAE needs fewer patched features than the baseline at {wins}/{total} KL levels; "
            + "; ".join(parts))
    note = FEWER_FEATURES_RULE.note("each curve read off its lower envelope, interpolated between measured points",
                                    "features = those whose code changes",
                                    "order from ACDC's threshold sweep over attribution shares (see notebook)")
    return Decision(Finding(ours, _verdict(share) if total else "not comparable", note), share)


def smaller_edits_finding(curves: Sequence[PatchingCurve], *, setting: str) -> Decision:
    """Figure 3 (right): the same comparison with the mean edit magnitude instead of the number of features
    (:data:`SMALLER_EDITS_RULE`); deciding number: the share of comparisons won."""
    wins, total, parts = comparison(curves, "edit")
    share = wins / total if total else 0.0
    ours = (f"{setting}: the sparse SAE reaches the KL level with a smaller mean edit than the baseline at {wins}/{total} "
            "levels; " + "; ".join(parts) + " (edit: mean L2 norm of the added vector)")
    note = SMALLER_EDITS_RULE.note("the same KL levels as fig3-fewer-features")
    return Decision(Finding(ours, _verdict(share) if total else "not comparable", note), share)


ALPHA_FLOOR_RULE = Rule(
    "fig3-alpha-floor",
    paper="larger α has a higher minimum KL (worse reconstruction)",
    rule="over the dictionaries sorted by α (α = 0 included), the all-patched KL (the floor) rises at every step → "
         "reproduced, at ≥ {partly_share:.0%} of the steps → partly, otherwise not",
    thresholds={"partly_share": 0.5},
    why="a dictionary's minimum KL is its all-patched KL, where the base's reconstruction error stays in place, so the "
        "claim is about that floor; FVU on held-out activations shows the reconstruction error behind it; a rise at "
        "fewer than half the steps is no longer a rise with α",
    deciding=("the floor of KL against α",))


def alpha_floor_finding(curves: Sequence[PatchingCurve], fvu: Mapping[float, float], *, setting: str) -> Finding:
    """Figure 3: larger α has a higher minimum KL (worse reconstruction) (:data:`ALPHA_FLOOR_RULE`)."""
    dictionaries = sorted((c for c in curves if _alpha_of(c) is not None), key=_alpha_of)
    if len(dictionaries) < 2:
        raise SaePaperError("the alpha-floor verdict needs at least two dictionaries")
    floors = [c.kl_all for c in dictionaries]
    steps = list(zip(floors, floors[1:]))
    share = sum(b > a for a, b in steps) / len(steps)
    ours = f"{setting}: minimum KL " + ", ".join(
        f"{c.name} {c.kl_all:.3g}" + (f" (FVU {fvu[_alpha_of(c)]:.3f})" if _alpha_of(c) in fvu else "") for c in dictionaries)
    partly = ALPHA_FLOOR_RULE.thresholds["partly_share"]
    verdict = "reproduced" if share == 1.0 else "partly" if share >= partly else "not"
    return Finding(ours, verdict, ALPHA_FLOOR_RULE.note())


LAYERS_RULE = Rule(
    "fig17-layers",
    paper="the same for layers 3, 7, 11, 15, 19, 23 of Pythia-410M",
    rule="at each layer, fig3-fewer-features' and fig3-smaller-edits' comparisons: both reproduced at every layer, with "
         "≥ {min_layers:g} layers → reproduced; at least one of them reproduced or partly at a majority of layers → "
         "partly; not comparable if no layer has a pair with a level either curve reaches; otherwise not",
    thresholds={"min_layers": 3},
    why="'across layers' needs several layers to hold at, so fewer than three can be at most partly; each layer is "
        "judged exactly as Figure 3 is, so a layer where the sparse SAE's floor is too high counts against it",
    deciding=("Figure 3's two comparisons at each layer",))


def layers_finding(by_layer: Mapping[int, Sequence[PatchingCurve]], *, setting: str) -> Finding:
    """Figure 17: the Figure 3 pattern (fewer features and smaller edits) holds across layers (:data:`LAYERS_RULE`)."""
    parts, layer_verdicts = [], []
    for layer, curves in sorted(by_layer.items()):
        verdicts = []
        summary = []
        for what in ("features", "edit"):
            wins, total, _ = comparison(curves, what)
            verdicts.append(_verdict(wins / total) if total else "not comparable")
            summary.append(f"{what} {wins}/{total}")
        layer_verdicts.append(verdicts)
        parts.append(f"layer {layer}: " + ", ".join(summary))
    holds = [any(v in ("reproduced", "partly") for v in verdicts) for verdicts in layer_verdicts]
    if all(v == "not comparable" for verdicts in layer_verdicts for v in verdicts):
        verdict = "not comparable"
    elif (len(layer_verdicts) >= LAYERS_RULE.thresholds["min_layers"]
          and all(v == "reproduced" for verdicts in layer_verdicts for v in verdicts)):
        verdict = "reproduced"
    elif sum(holds) > len(holds) / 2:
        verdict = "partly"
    else:
        verdict = "not"
    ours = (f"{setting}: KL levels at which the sparse SAE needs fewer features / a smaller edit than the baselines: "
            + "; ".join(parts))
    return Finding(ours, verdict, LAYERS_RULE.note(f"{len(by_layer)} layers here, the paper's 6"))


RULES = (FEWER_FEATURES_RULE, SMALLER_EDITS_RULE, ALPHA_FLOOR_RULE, LAYERS_RULE)
"""Notebook 03's rules, one per claim it decides."""


FIG3 = {"fig3-fewer-features": ("features", fewer_features_finding),
        "fig3-smaller-edits": ("edit", smaller_edits_finding)}
"""Figure 3's two comparison claims: what each compares, and its verdict function."""
FIG3_WHAT = {claim: f"share of comparisons the sparse SAEs win on {what}" for claim, (what, _) in FIG3.items()}
"""What each Figure 3 claim's deciding number is, in words."""


def fig3_decisions(curves: Sequence[PatchingCurve], *, setting: str) -> dict[str, Decision]:
    """Figure 3's two comparison claims decided on one set of curves (one seed's, or one budget's)."""
    return {claim: finding(curves, setting=setting) for claim, (_, finding) in FIG3.items()}
