"""Verdicts decided at several seeds: each seed's verdict, the majority, and the spread of the deciding number.

A verdict that one seed gives and the next does not is a statement about the seed, not about
the paper. So the central claims (the budget plan names them) are decided at several seeds:
a seed retrains the SAEs (initialisation and the order they see the activations in) and
redraws what the notebook samples (features, explain/simulate fragments, random
directions), on the same harvested text. Each seed gives its own :class:`Finding` and the
claim's *deciding number* (the number that stands between the verdict and *reproduced*,
the same one its budget trend follows). :func:`combine_seeds` turns them into the headline:

- the verdict most seeds give (a tie goes to the less favourable one: a verdict that holds at
  half of the seeds is not established);
- "3/3 seeds agree", or "seed-dependent (2/3 partly; seed 2: not)";
- the deciding number at every seed and its spread (mean, min to max).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from sae_paper.errors import SaePaperError
from sae_paper.report.claims import VERDICTS, Finding, SeedSummary
from sae_paper.report.markdown import table_cell


class SeedRun(NamedTuple):
    """One seed's answer for a claim: its finding and its deciding number (larger = closer to the paper)."""

    seed: int
    finding: Finding
    deciding: float


def combine_seeds(runs: Sequence[SeedRun], *, what: str) -> tuple[Finding, SeedSummary]:
    """The headline finding (that of the first seed, in ``runs``' order, whose verdict is the majority's) and the
    :class:`SeedSummary` of all seeds. ``runs`` starts with the notebook's own seed, so its numbers are shown
    whenever it agrees with the majority."""
    if not runs:
        raise SaePaperError("a claim decided at several seeds needs at least one seed's finding")
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SaePaperError(f"seeds must be distinct, got {seeds}")
    unknown = sorted({run.finding.verdict for run in runs} - set(VERDICTS))
    if unknown:
        raise SaePaperError(f"unknown verdict(s) {', '.join(unknown)} (known: {', '.join(VERDICTS)})")
    summary = SeedSummary(tuple(seeds), tuple(run.finding.verdict for run in runs),
                          tuple(float(run.deciding) for run in runs), what)
    headline = next(run for run in runs if run.finding.verdict == summary.verdict)
    finding = headline.finding
    if len(runs) > 1:
        finding = finding._replace(ours=f"{finding.ours} (seed {headline.seed}; {what}: {summary.spread})")
    return finding, summary


def seed_table(seeded: Mapping[str, tuple[Finding, SeedSummary]]) -> str:
    """A Markdown table: one row per claim, each seed's verdict and deciding number, the agreement."""
    seeds = next(iter(seeded.values()))[1].seeds
    lines = ["| claim | deciding number | " + " | ".join(f"seed {s}" for s in seeds) + " | headline |",
             "|---|---|" + "---|" * len(seeds) + "---|"]
    for claim, (finding, summary) in seeded.items():
        cells = [f"{v} ({x:+.3f})" for v, x in zip(summary.verdicts, summary.values)]
        lines.append("| " + " | ".join(table_cell(c) for c in [claim, summary.what, *cells,
                                                                 f"**{finding.verdict}**: {summary.agreement}"]) + " |")
    return "\n".join(lines) + "\n"
