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

The deciding numbers are those the verdicts threshold, from
:func:`sae_paper.chapters.autointerp_verdicts.decisions` (one computation for the verdict and
its number): each claim's smallest gap between the SAE's lower 95 % bound and a baseline's
upper one (:data:`~sae_paper.chapters.autointerp_verdicts.WHAT` says which), with the 95 %
half-width of the difference of means behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sae_paper.analysis.autointerp.fragments import Fragments, FragmentSpec, fragment_activations
from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters.autointerp import BASELINES
from sae_paper.chapters.autointerp_verdicts import CENTRAL, WHAT
from sae_paper.data.models import Site
from sae_paper.report.budget import BudgetPoint, BudgetTrend, budget_trends
from sae_paper.report.finding import Decision

CLAIMS = CENTRAL
TOLERANCE = 0.02
"""A change of the deciding number smaller than this (in score units) is *flat* whatever the CIs."""


def decides(method: str) -> bool:
    """Whether a method's scores enter the central claims (the SAE, Figure 2's baselines, Figure 8's ratios)."""
    return method == "sae" or method in BASELINES or method.startswith("sae-R")


def prefix(fragments: Fragments, activations: Mapping[Site, Any], n: int) -> tuple[Fragments, dict[Site, Any]]:
    """The first ``n`` fragments and their activations: exactly the pool a profile with ``n_fragments = n`` builds."""
    return (Fragments(fragments.tokens[:n], fragments.token_strings[:n]),
            {site: acts[:n] for site, acts in activations.items()})


def larger_cached_pools(spec: FragmentSpec, sites: Sequence[Site], budgets: Sequence[int]) -> list[int]:
    """The budgets above ``spec.n_fragments`` whose fragment activations are all on disk (written by a larger profile)."""
    found = []
    for n in budgets:
        if n > spec.n_fragments:
            folder = replace(spec, n_fragments=n).folder()
            if (folder / "fragments.json").is_file() and all((folder / f"{site}.safetensors").is_file() for site in sites):
                found.append(n)
    return found


def budgets(study, spec: FragmentSpec) -> list[int]:
    """The pool sizes the sweep measures: the study's ``fragment_budgets`` up to its own pool, the larger ones already
    cached (:func:`larger_cached_pools`), and its own ``n_fragments``."""
    return sorted({n for n in study.fragment_budgets if n <= study.n_fragments}
                  | set(larger_cached_pools(spec, study.sites(), study.fragment_budgets)) | {study.n_fragments})


def pools(spec: FragmentSpec, fragments: Fragments, activations: Mapping[Site, Any], sites: Sequence[Site],
          get_model: Callable[[], Any]) -> Callable[[int], tuple[Fragments, Mapping[Site, Any]]]:
    """``pool(n)``: the first ``n`` fragments of the main pool (``spec``'s, with its ``activations``), or for ``n``
    above it the cached larger pool, read once."""
    larger: dict[int, tuple[Fragments, Mapping[Site, Any]]] = {}

    def pool(n: int) -> tuple[Fragments, Mapping[Site, Any]]:
        if n <= spec.n_fragments:
            return prefix(fragments, activations, n)
        if n not in larger:
            larger[n] = fragment_activations(None, replace(spec, n_fragments=n), sites, get_model=get_model)
        return larger[n]
    return pool


def fragment_sweep(budgets: Sequence[int], pool: Callable[[int], tuple[Fragments, Mapping[Site, Any]]],
                   decompositions: Mapping[tuple[Site, str], Any], score: Callable[..., Any],
                   decide: Callable[[Sequence[MethodSummary]], Mapping[str, Decision]], *,
                   known: Mapping[int, Sequence[MethodSummary]] = {}) -> dict[str, list[BudgetPoint]]:
    """Each claim's deciding number at every budget.

    ``pool(n)`` gives the fragments and activations of an ``n``-fragment pool; ``decompositions``
    maps (site, method) to what is scored there (those that :func:`decides` are scored);
    ``score(decomposition, activations, fragments, method=, site=)`` scores one (the notebook's
    explainer, simulator and settings); ``decide(summaries)`` gives each claim's
    :class:`~sae_paper.report.finding.Decision` (the verdicts' own computation); ``known``:
    summaries already computed for a budget (the main run's), reused as they are.
    """
    scored = {key: d for key, d in decompositions.items() if decides(key[1])}
    points: dict[str, list[BudgetPoint]] = {claim: [] for claim in CLAIMS}
    for n in sorted(set(budgets)):
        summaries = [s for s in known.get(n, ()) if decides(s.method)]
        if not summaries:
            fragments, activations = pool(n)
            summaries = [score(decomposition, activations[site], fragments, method=method, site=str(site)).summary()
                         for (site, method), decomposition in scored.items()]
        decisions = decide(summaries)
        for claim in CLAIMS:
            points[claim].append(BudgetPoint(n, decisions[claim].deciding, decisions[claim].ci))
    return points


def trends(points: Mapping[str, Sequence[BudgetPoint]]) -> dict[str, BudgetTrend | None]:
    """Each claim's trend (None when fewer than 3 budgets could be measured)."""
    return budget_trends(points, what=WHAT, unit="fragments", tolerance=TOLERANCE)
