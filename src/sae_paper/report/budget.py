"""Budget trends: whether a claim's deciding number moves toward the paper as the budget of its deciding input
grows (fragments scored, training activations, prompts).

A chapter measures the number at several budgets (a :class:`BudgetPoint` each) and
:func:`budget_trend` says *converging toward the paper*, *moving away* or *flat*; the
scoreboard shows it beside the verdict (``Scoreboard.add_trend``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sae_paper.errors import SaePaperError

TRENDS = ("converging toward the paper", "moving away", "flat")


@dataclass(frozen=True)
class BudgetPoint:
    """The number that decides a claim's verdict, measured at one budget of its deciding input.

    ``value`` is signed so that larger means closer to the paper's claim (e.g. the SAE's
    margin over the best baseline); ``ci`` is its 95 % half-width (0 where none exists).
    """

    budget: float
    value: float
    ci: float = 0.0


class BudgetTrend(NamedTuple):
    """:func:`budget_trend`'s answer: one of :data:`TRENDS`, the points in words, and the first and last point short."""

    trend: str
    note: str
    span: str = ""


def budget_trend(points: Sequence[BudgetPoint], *, what: str, unit: str, tolerance: float) -> BudgetTrend:
    """Whether a claim's deciding number moves toward the paper as its deciding input grows.

    From the smallest budget to the largest: *converging toward the paper* if the value
    rises by more than ``max(tolerance, √(ci_small² + ci_large²))`` (a change the CIs and
    the stated tolerance can tell), *moving away* if it falls by more, *flat* otherwise.
    Needs at least 3 budgets (the issue's ¼×, 1×, 4× or more).
    """
    ordered = sorted(points, key=lambda p: p.budget)
    if len(ordered) < 3:
        raise SaePaperError(f"a budget trend needs at least 3 budgets, got {len(ordered)}")
    first, last = ordered[0], ordered[-1]
    margin = max(tolerance, math.hypot(first.ci, last.ci))
    change = last.value - first.value
    trend = TRENDS[0] if change > margin else TRENDS[1] if change < -margin else TRENDS[2]
    values = ", ".join(f"{p.budget:,.0f}: {p.value:+.3g}" + (f"±{p.ci:.2g}" if p.ci else "") for p in ordered)
    note = (f"{what} at {len(ordered)} budgets of {unit} ({values}); change {change:+.3g} against a margin of "
            f"{margin:.2g} (the larger of {tolerance:g} and the CIs)")
    span = f"{first.value:+.3g} at {first.budget:,.0f} → {last.value:+.3g} at {last.budget:,.0f} {unit}"
    return BudgetTrend(trend, note, span)


def budget_trends(points: Mapping[str, Sequence[BudgetPoint]], *, what: Mapping[str, str] | str, unit: str,
                  tolerance: float) -> dict[str, BudgetTrend | None]:
    """:func:`budget_trend` for each claim of a sweep (``what``: per claim, or one text for all); None where
    fewer than 3 budgets could be measured (a NaN value: that budget's measurement failed, so it is left out)."""
    measured = {claim: [q for q in p if not math.isnan(q.value)] for claim, p in points.items()}
    return {claim: budget_trend(p, what=what if isinstance(what, str) else what[claim], unit=unit, tolerance=tolerance)
            if len(p) >= 3 else None for claim, p in measured.items()}
