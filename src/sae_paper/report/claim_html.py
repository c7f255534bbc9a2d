"""A claim's verdict as HTML: the badge a notebook shows where it computes a verdict, and the pieces the
scoreboard page shares with it (the verdict pill, inline Markdown rendered safely).

The badge is what a reader finds when a scoreboard link lands on a notebook's section: the
claim id, the verdict, the marks that say what else decided it, and one line each of ours
and the paper's, so the section states its result without scrolling back to a table.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from sae_paper.report.markdown import readable

MARK_LABELS = {"stand-in": "stand-in scorer", "rounding-noise": "within rounding noise",
               "weakened-baseline": "weakened baseline", "measurement-failed": "measurement failed"}
"""How each mark of :data:`sae_paper.report.claims.MARKS` is labelled on a page (its explanation is the tooltip)."""


def inline(text: str) -> str:
    """A record's text (inline Markdown: `code`, *emphasis*; any HTML in it escaped) as HTML, on one line."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).renderInline(" ".join(readable(text).split()))


def verdict_pill(verdict: str) -> str:
    return f'<span class="sb-badge sb-v-{verdict.replace(" ", "-")}">{html.escape(verdict)}</span>'


def seed_tag(record) -> str:
    """The seed agreement under a verdict (``3/3 seeds agree``, or seed-dependent in amber), the deciding number's
    spread as its tooltip; empty for a claim decided at one seed."""
    if not record.seed_agreement:
        return ""
    split = "" if record.seed_agreement.endswith("agree") else " sb-s-split"
    tip = f"{record.deciding}: {record.deciding_spread}" if record.deciding else record.deciding_spread
    return f'<span class="sb-seeds{split}" title="{html.escape(tip)}">{html.escape(record.seed_agreement)}</span>'


def seeds_detail(record) -> str:
    """One paragraph: each seed's verdict and deciding number, and their spread (empty for one seed)."""
    if not record.seeds:
        return ""
    per_seed = ", ".join(f"seed {s}: {html.escape(v)} ({x:+.3g})"
                         for s, v, x in zip(record.seeds, record.seed_verdicts, record.seed_values))
    return (f"<p><b>Over seeds:</b> {html.escape(record.seed_agreement)}; {per_seed}. "
            f"{html.escape(record.deciding[:1].upper() + record.deciding[1:])}: {html.escape(record.deciding_spread)}.</p>")


def mark_tags(marks, explanations) -> str:
    """One small tag per mark, its explanation as the tooltip."""
    return "".join(f'<span class="sb-mark sb-m-{mark}" title="{html.escape(explanations.get(mark, mark))}">'
                   f"{html.escape(MARK_LABELS.get(mark, mark))}</span>" for mark in marks)


class ClaimBadge:
    """A recorded verdict as a notebook cell shows it (``text/html``, with a Markdown and a plain-text fallback).

    ``record``: a :class:`~sae_paper.report.claims.ClaimRecord`; ``claim``: its
    :class:`~sae_paper.report.claims.Claim`; ``explanations``: mark → what it says (the tooltips).
    """

    def __init__(self, record, claim, explanations: Mapping[str, str]):
        self.record, self.claim, self.explanations = record, claim, explanations

    def _repr_html_(self) -> str:
        r = self.record
        return (f'<div class="claim-badge" data-claim="{html.escape(r.claim_id)}" data-verdict="{html.escape(r.verdict)}">'
                f'<div class="cb-head"><code class="cb-id">{html.escape(r.claim_id)}</code>{verdict_pill(r.verdict)}'
                f"{mark_tags(r.marks, self.explanations)}{seed_tag(r)}</div>"
                f'<div class="cb-line"><span class="sb-who">ours</span> {inline(r.ours)}</div>'
                f'<div class="cb-line"><span class="sb-who">paper</span> {inline(self.claim.paper)}</div>'
                f'<details class="cb-rule"><summary>rule and notes</summary>{inline(r.note) or "—"}{seeds_detail(r)}'
                "</details></div>")

    def _repr_markdown_(self) -> str:
        marks = f" ({', '.join(self.record.marks)})" if self.record.marks else ""
        seeds = f", {self.record.seed_agreement}" if self.record.seed_agreement else ""
        return f"**{self.record.claim_id}**: *{self.record.verdict}*{marks}{seeds}. Ours: {self.record.ours}. Paper: {self.claim.paper}"

    def __repr__(self) -> str:
        return f"{self.record.claim_id}: {self.record.verdict}{' (' + ', '.join(self.record.marks) + ')' if self.record.marks else ''}"
