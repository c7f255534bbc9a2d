"""Verdicts decided at several seeds: each seed's verdict, the majority, and the spread of the deciding number.

A verdict that one seed gives and the next does not is a statement about the seed, not about
the paper. So the central claims (the budget plan names them) are decided at several seeds:
a seed retrains the SAEs (initialisation and the order they see the activations in) and
redraws what the notebook samples (features, explain/simulate fragments, random
directions), on the same harvested text. Each seed gives its own :class:`~.finding.Decision`:
the claim's finding and its *deciding number* (the number its rule thresholds, the same one
its budget trend follows). :func:`decide_at_seeds` is the one way a chapter does this:
it calls the chapter's verdict function on each seed's inputs, and :func:`combine_seeds`
turns the seeds into the headline:

- the verdict most seeds give (a tie goes to the less favourable one: a verdict that holds at
  half of the seeds is not established);
- "3/3 seeds agree", or "seed-dependent (2/3 partly; seed 2: not)";
- the deciding number at every seed and its spread (mean, min to max).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sae_paper.errors import SaePaperError
from sae_paper.report.finding import VERDICTS, Decision, Finding
from sae_paper.report.markdown import table_cell


@dataclass(frozen=True)
class SeedSummary:
    """How a claim's verdict and deciding number vary over seeds (what the scoreboard shows beside the verdict)."""

    seeds: tuple[int, ...]
    verdicts: tuple[str, ...]
    """Each seed's verdict, in the order of ``seeds``."""
    values: tuple[float, ...]
    """Each seed's deciding number, in the order of ``seeds``."""
    what: str
    """What the deciding number is, in words."""

    @property
    def verdict(self) -> str:
        """The verdict most seeds give; a tie goes to the less favourable verdict."""
        counts = Counter(self.verdicts)
        top = max(counts.values())
        return max((v for v in counts if counts[v] == top), key=VERDICTS.index)

    @property
    def agrees(self) -> bool:
        return len(set(self.verdicts)) == 1

    @property
    def agreement(self) -> str:
        """``3/3 seeds agree`` or ``seed-dependent (2/3 partly; seed 2: not)``."""
        n = len(self.seeds)
        if self.agrees:
            return f"{n}/{n} seeds agree"
        headline = self.verdict
        others = "; ".join(f"seed {s}: {v}" for s, v in zip(self.seeds, self.verdicts) if v != headline)
        return f"seed-dependent ({self.verdicts.count(headline)}/{n} {headline}; {others})"

    @property
    def spread(self) -> str:
        """The deciding number's mean and range over seeds, e.g. ``+0.21 (+0.18 to +0.25 over 3 seeds)``."""
        measured = [v for v in self.values if not math.isnan(v)]  # NaN: that seed's measurement failed
        if not measured:
            return f"not measured at any of {len(self.values)} seeds"
        over = f"{len(measured)} seeds" if len(measured) == len(self.values) else \
            f"the {len(measured)} of {len(self.values)} seeds measured"
        return f"{statistics.fmean(measured):+.3g} ({min(measured):+.3g} to {max(measured):+.3g} over {over})"


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


def decide_at_seeds(verdict_fn: Callable[[Any], Mapping[str, Decision]], inputs_by_seed: Mapping[int, Any], *,
                    what: Mapping[str, str]) -> dict[str, tuple[Finding, SeedSummary]]:
    """Each claim decided at every seed: ``verdict_fn(inputs)`` gives one seed's :class:`Decision` per claim (its
    finding and deciding number, computed once by the claim's rule), and :func:`combine_seeds` turns a claim's
    seeds into its majority finding and :class:`SeedSummary`. ``inputs_by_seed`` starts with the notebook's own seed
    (its numbers are the headline's whenever it agrees with the majority); ``what`` says, per claim, what its
    deciding number is. The one way a chapter decides a claim at several seeds."""
    runs: dict[str, list[SeedRun]] = {claim: [] for claim in what}
    for seed, inputs in inputs_by_seed.items():
        decisions = verdict_fn(inputs)
        for claim in what:
            runs[claim].append(SeedRun(seed, decisions[claim].finding, decisions[claim].deciding))
    return {claim: combine_seeds(claim_runs, what=what[claim]) for claim, claim_runs in runs.items()}


def seed_table(seeded: Mapping[str, tuple[Finding, SeedSummary]]) -> str:
    """A Markdown table: one row per claim, each seed's verdict and deciding number, the agreement."""
    seeds = next(iter(seeded.values()))[1].seeds
    lines = ["| claim | deciding number | " + " | ".join(f"seed {s}" for s in seeds) + " | headline |",
             "|---|---|" + "---|" * len(seeds) + "---|"]
    for claim, (finding, summary) in seeded.items():
        cells = [v if math.isnan(x) else f"{v} ({x:+.3f})" for v, x in zip(summary.verdicts, summary.values)]
        lines.append("| " + " | ".join(table_cell(c) for c in [claim, summary.what, *cells,
                                                                 f"**{finding.verdict}**: {summary.agreement}"]) + " |")
    return "\n".join(lines) + "\n"
