"""What a verdict function answers: the :class:`Finding` it records and, for a claim with a deciding number,
the :class:`Decision` that carries the number beside it.

A claim's *deciding number* is the one its rule thresholds (larger = closer to the paper):
the verdict is read off it, so the number the scoreboard shows beside a verdict (over seeds,
over budgets) can never contradict that verdict. Kept apart from :mod:`.claims` so that
:mod:`.seeds` and :mod:`.claims` both import it without importing each other.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Verdict = Literal["reproduced", "partly", "not", "not comparable"]
VERDICTS: tuple[str, ...] = Verdict.__args__


class Finding(NamedTuple):
    """A verdict function's answer, what :meth:`Scoreboard.record` takes after the claim id: ``board.record(id, *finding)``."""

    ours: str
    verdict: str
    note: str
    marks: tuple[str, ...] = ()


class Decision(NamedTuple):
    """A verdict and the number that decides it, computed once by the claim's rule.

    ``deciding`` is signed so that larger is closer to the paper (positive exactly where the
    rule's test for its best verdict passes, where the rule has one such test); ``ci`` is its
    95 % half-width where it has one (0 otherwise), which a budget trend needs.
    """

    finding: Finding
    deciding: float
    ci: float = 0.0
