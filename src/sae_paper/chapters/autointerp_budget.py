"""How the verdicts of Figures 2, 8 and 9 move with the fragment budget.

The fragments decide these claims: with few of them most SAE features fire in only a
handful, the simulator sees near-constant activations, and every method's score sinks
toward the same floor (240 fragments: SAE 0.32 ± 0.09 against random directions
0.31 ± 0.06; 2,400: SAE 0.54 ± 0.10 against 0.36 ± 0.06). So notebook 02 recomputes each
claim's *deciding number* (below) on pools of several sizes and the scoreboard says whether
it moves toward the paper as the pool grows (:func:`sae_paper.report.budget.budget_trend`).

Fragments are the first documents of the text in a fixed order, so the pool of ``n``
fragments is the start of any larger pool: the sweep reads the smaller pools off the main
one (no forward pass), and a pool larger than the profile's is used when its activations
are already cached (the ``long`` profile writes them), never computed here.

Deciding numbers (larger = closer to the paper), each with a 95 % half-width from the CIs
of the means it combines (``√(ci_a² + ci_b²)``):

- ``fig2-early-layers``: the SAE's mean score minus the best baseline's at the first layer;
- ``fig2-depth``: that margin at the first layer minus the margin at the last (the paper:
  it shrinks with depth);
- ``fig9-random-only``: the first layer's margin over the best baseline in random-only scores;
- ``fig8-ratio``: the smallest margin of any ratio's SAE over the best baseline at the main layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sae_paper.analysis.autointerp.fragments import Fragments, FragmentSpec
from sae_paper.analysis.autointerp.scoring import MethodSummary, score_decomposition
from sae_paper.data.models import Site
from sae_paper.report.budget import BudgetPoint, BudgetTrend, budget_trends

CLAIMS = ("fig2-early-layers", "fig2-depth", "fig9-random-only", "fig8-ratio")
BASELINES = ("neurons", "random", "pca", "ica")
TOLERANCE = 0.02
"""A change of the deciding number smaller than this (in score units, a correlation) is *flat* whatever the CIs."""
WHAT = {"fig2-early-layers": "SAE − best baseline at the first layer",
        "fig2-depth": "first-layer margin − last-layer margin",
        "fig9-random-only": "SAE − best baseline, random-only, first layer",
        "fig8-ratio": "smallest margin of any R over the best baseline"}


def _margin(sae: MethodSummary, baselines: Sequence[MethodSummary], random_only: bool = False) -> tuple[float, float]:
    """(SAE mean − the best baseline's mean, √(ci² + ci²)) in top-and-random or random-only scores."""
    def mean(s: MethodSummary) -> float:
        return s.random_mean if random_only else s.mean

    def ci(s: MethodSummary) -> float:
        value = s.random_ci if random_only else s.ci
        return 0.0 if math.isnan(value) else value

    best = max(baselines, key=mean)
    return mean(sae) - mean(best), math.hypot(ci(sae), ci(best))


def deciding_numbers(summaries: Sequence[MethodSummary], layers: Sequence[int], main_layer: int,
                     ratio_methods: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Each claim's (deciding number, its 95 % half-width) from one pool's summaries (see the module docstring)."""
    by = {(s.site, s.method): s for s in summaries}

    def at(layer: int) -> tuple[MethodSummary, list[MethodSummary]]:
        site = f"resid_post.{layer}"
        return by[(site, "sae")], [by[(site, m)] for m in BASELINES if (site, m) in by]

    first, last = _margin(*at(layers[0])), _margin(*at(layers[-1]))
    out = {"fig2-early-layers": first,
           "fig2-depth": (first[0] - last[0], math.hypot(first[1], last[1])),
           "fig9-random-only": _margin(*at(layers[0]), random_only=True)}
    main_sae, main_baselines = at(main_layer)
    ratios = [by[(f"resid_post.{main_layer}", m)] for m in ratio_methods if (f"resid_post.{main_layer}", m) in by]
    out["fig8-ratio"] = min((_margin(s, main_baselines) for s in [main_sae, *ratios]), key=lambda m: m[0])
    return out


def prefix(fragments: Fragments, activations: Mapping[Site, Any], n: int) -> tuple[Fragments, dict[Site, Any]]:
    """The first ``n`` fragments and their activations: exactly the pool a profile with ``n_fragments = n`` builds."""
    return (Fragments(fragments.tokens[:n], fragments.token_strings[:n]),
            {site: acts[:n] for site, acts in activations.items()})


def larger_cached_pools(spec: FragmentSpec, sites: Sequence[Site], budgets: Sequence[int]) -> list[int]:
    """The budgets above ``spec.n_fragments`` whose fragment activations are all on disk (written by a larger profile)."""
    from dataclasses import replace

    found = []
    for n in budgets:
        if n > spec.n_fragments:
            folder = replace(spec, n_fragments=n).folder()
            if (folder / "fragments.json").is_file() and all((folder / f"{site}.safetensors").is_file() for site in sites):
                found.append(n)
    return found


def fragment_sweep(budgets: Sequence[int], pool: Callable[[int], tuple[Fragments, Mapping[Site, Any]]],
                   decompositions: Mapping[tuple[Site, str], Any], score: Callable[..., Any], *, layers: Sequence[int],
                   main_layer: int, known: Mapping[int, Sequence[MethodSummary]] = {}) -> dict[str, list[BudgetPoint]]:
    """Each claim's deciding number at every budget.

    ``pool(n)`` gives the fragments and activations of an ``n``-fragment pool; ``decompositions``
    maps (site, method) to what is scored there; ``score(decomposition, activations, fragments,
    method=, site=)`` scores one (the notebook's explainer, simulator and settings); ``known``:
    summaries already computed for a budget (the main run's), reused as they are.
    """
    ratio_methods = [m for (_, m) in decompositions if m.startswith("sae-R")]
    points: dict[str, list[BudgetPoint]] = {claim: [] for claim in CLAIMS}
    for n in sorted(set(budgets)):
        summaries = list(known.get(n, ()))
        if not summaries:
            fragments, activations = pool(n)
            summaries = [score(decomposition, activations[site], fragments, method=method, site=str(site)).summary()
                         for (site, method), decomposition in decompositions.items()]
        for claim, (value, ci) in deciding_numbers(summaries, layers, main_layer, ratio_methods).items():
            points[claim].append(BudgetPoint(n, value, ci))
    return points


def trends(points: Mapping[str, Sequence[BudgetPoint]]) -> dict[str, BudgetTrend | None]:
    """Each claim's trend (None when fewer than 3 budgets could be measured)."""
    return budget_trends(points, what=WHAT, unit="fragments", tolerance=TOLERANCE)


def scorer(explainer, simulator, config, n_features: int) -> Callable[..., Any]:
    """``score(decomposition, activations, fragments, method=, site=)`` with the notebook's settings."""
    def score(decomposition, activations, fragments, *, method: str, site: str):
        return score_decomposition(decomposition, activations, fragments, explainer, simulator, method=method, site=site,
                                   n_features=n_features, config=config)
    return score
