"""How Section 5's verdicts move with the main SAE's training budget (notebook 04).

What decides Figure 4 (left) and the single-token features of Section 5 is how far the main
SAE was trained: with 192 steps its features stayed near their random initial directions and
no feature fired only on apostrophes, periods, " the" or newlines. Notebook 04 retrains the
main SAE (same α, R, epochs, seed) on the first ``n`` of its training activations for each
``n`` of ``sae_budgets`` up to its own, reads larger ones when a larger profile (``long``)
left them in the cache, and on the same inspected text recomputes each claim's deciding
number (:func:`sae_paper.chapters.case_verdicts.decisions`, the verdicts' own computation), larger meaning
closer to the paper:

- ``fig4-apostrophe-hist``: for the feature the prompt search chooses, the smallest margin of the
  verdict's three shares (apostrophes among all its firings, among its top bin, punctuation among
  the rest of its lower half) over what *reproduced* asks of each
  (:func:`~sae_paper.chapters.case_verdicts.reproduced_margin`): the number that stands between
  the verdict and *reproduced*, whichever share it is (the top bin alone can be full while
  apostrophes are a small part of all firings);
- ``sec5-single-token-features``: the mean, over the four token classes, of the share of its
  activation the best feature for that class puts on it (the rule: ≥ 0.8 for a class).

Each point is one SAE, so it has no confidence interval; a change below :data:`TOLERANCE`
is *flat*.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sae_paper.chapters.case_verdicts import CENTRAL, WHAT
from sae_paper.report.budget import BudgetPoint, BudgetTrend, budget_trends
from sae_paper.report.finding import Decision

CLAIMS = CENTRAL
TOLERANCE = 0.05


def sae_sweep(study, budgets: Sequence[int], run_for: Callable[[int], Any],
              decide_for: Callable[[Any], Mapping[str, Decision]]) -> dict[str, list[BudgetPoint]]:
    """The deciding numbers at each budget. ``run_for(n)`` gives the :class:`~sae_paper.core.pipeline.Run` of the main SAE
    on ``n`` activations; budgets above ``study.n_tokens`` count only when that SAE is already trained (cached);
    ``decide_for(sae)`` gives each claim's :class:`~sae_paper.report.finding.Decision`
    (:func:`~sae_paper.chapters.case_verdicts.decisions` on the SAE's inspection, the verdicts' own computation)."""
    from sae_paper.core.train import SUMMARY_FILE

    points: dict[str, list[BudgetPoint]] = {claim: [] for claim in CLAIMS}
    for n in sorted(set(budgets)):
        run = run_for(n)
        if n > study.n_tokens and not (run.sae_dir / SUMMARY_FILE).is_file():
            continue
        decisions = decide_for(run.sae())
        for claim in CLAIMS:
            points[claim].append(BudgetPoint(n, decisions[claim].deciding))
    return points


def trends(points: Mapping[str, Sequence[BudgetPoint]]) -> dict[str, BudgetTrend | None]:
    """Each claim's trend (None when fewer than 3 budgets could be measured)."""
    return budget_trends(points, what=WHAT, unit="training activations of the main SAE", tolerance=TOLERANCE)
