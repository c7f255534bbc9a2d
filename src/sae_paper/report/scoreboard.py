"""The book's claims scoreboard page, and the same records as data for scripts.

One row per claim of ``claims.yaml``, in its order: the claim id (linking to the notebook
section that computed it), the paper's statement and ours, the verdict with the marks that
say what else decided it (the token-list stand-in scorer; a recorded float-rounding check
that flipped it), and how the deciding number moved with budget, with that number at the
smallest and the largest budget. Each row unfolds into the rule and notes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from sae_paper.errors import SaePaperError
from sae_paper.report.budget import TRENDS
from sae_paper.report.claim_html import MARK_LABELS, inline, mark_tags, seed_tag, seeds_detail, verdict_pill
from sae_paper.report.claims import (
    MARKS,
    NOT_YET_RUN,
    Claim,
    ClaimRecord,
    claim_anchor,
    control_claims,
    load_claims,
    paper_claims,
    read_records,
    verdict_counts,
)

TREND_BADGES = {TRENDS[0]: ("↗ converging", "converging"), TRENDS[1]: ("↘ moving away", "away"), TRENDS[2]: ("→ flat", "flat")}
"""Trend → (badge text, CSS suffix); the full words are the badge's tooltip."""


def load_rounding_check(path: str | Path) -> dict[str, str]:
    """Claim id → what a recorded float-rounding check saw flip for it (``flips`` of a YAML file such as
    ``book/checks/rounding.yaml``); empty when the file does not exist."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        payload = yaml.safe_load(path.read_text()) or {}
        return {str(claim): " ".join(str(text).split()) for claim, text in (payload.get("flips") or {}).items()}
    except (yaml.YAMLError, AttributeError) as error:
        raise SaePaperError(f"unreadable rounding check {path}: {error}") from None


def scoreboard_rows(records: Iterable[ClaimRecord], claims: Mapping[str, Claim],
                    rounding: Mapping[str, str] | None = None) -> list[dict]:
    """One dict per claim, in claims.yaml order: the claim's fields and our record's (empty when not yet run),
    its marks (the record's, plus ``rounding-noise`` where ``rounding`` names the claim) and ``rounding_note``.

    This is the scoreboard as data: ``scoreboard.json`` beside the page, for scripts.
    """
    rounding = rounding or {}
    unknown = sorted(set(rounding) - set(claims))
    if unknown:
        raise SaePaperError(f"the rounding check names unknown claim id(s) {', '.join(unknown)}")
    by_id = {}
    for entry in records:
        if entry.claim_id not in claims:
            raise SaePaperError(f"a record from notebook {entry.notebook or '?'} has unknown claim id {entry.claim_id!r}")
        by_id[entry.claim_id] = entry
    rows = []
    for claim in claims.values():
        entry = by_id.get(claim.id) or ClaimRecord(claim.id, "", NOT_YET_RUN, "")  # type: ignore[arg-type]
        ours = asdict(entry)
        ours.pop("claim_id")
        marks = list(entry.marks) + (["rounding-noise"] if claim.id in rounding and by_id.get(claim.id) else [])
        rows.append({"id": claim.id, "where": claim.where, "paper": claim.paper, "kind": claim.kind,
                     "source": claim.source, **ours,
                     "marks": marks, "rounding_note": rounding.get(claim.id, "")})
    return rows


def _claim_html(row: Mapping) -> str:
    """One claim: a summary line (id, paper and ours, verdict and marks, trend) and, folded, the rule and notes."""
    claim_id, notebook = row["id"], row["notebook"]
    record = SimpleNamespace(**row)  # the record's fields, as the badge's helpers read them
    href = f"{html.escape(notebook)}.html#{claim_anchor(claim_id)}"
    label = f"<code>{html.escape(claim_id)}</code>"
    link = (f'<a class="sb-id" href="{href}" title="the section of {html.escape(notebook)} that computed it">{label}</a>'
            if notebook else f'<span class="sb-id">{label}</span>')
    if row["trend"]:
        text, css = TREND_BADGES[row["trend"]]
        span = f'<span class="sb-span">{html.escape(row["trend_span"])}</span>' if row["trend_span"] else ""
        trend = (f'<span class="sb-trend sb-t-{css}" title="with more budget: {html.escape(row["trend"])}">'
                 f"{text}{span}</span>")
    else:
        trend = '<span class="sb-trend" title="with more budget: not measured">—</span>'
    who = "paper" if row.get("source", "paper") == "paper" else "source"
    summary = (f"<summary>{link}<span class=\"sb-text\"><span class=\"sb-line\"><span class=\"sb-who\">{who}</span> "
               f"{inline(row['paper'])}</span><span class=\"sb-line\"><span class=\"sb-who\">ours</span> "
               f"{inline(row['ours'] or '—')}</span></span><span class=\"sb-verdict\">{verdict_pill(row['verdict'])}"
               f"{mark_tags(row['marks'], MARKS)}{seed_tag(record)}</span>{trend}</summary>")
    details = [f"<p><b>Where in the paper:</b> {inline(row['where'])}. <b>The {who}:</b> {inline(row['paper'])}</p>"]
    if notebook:
        trend_text = f"<i>{html.escape(row['trend'])}</i>: {inline(row['trend_note'])}" if row["trend"] else "not measured"
        details += [f"<p><b>Ours:</b> {inline(row['ours'])}</p>",
                    f"<p><b>Rule and notes:</b> {inline(row['note']) or '—'}</p>",
                    f"<p><b>With more budget:</b> {trend_text}</p>"]
        details += [seeds_detail(record)] if record.seeds else []
        details += [f"<p><b>{MARK_LABELS[m].capitalize()}:</b> {inline(row['rounding_note'] if m == 'rounding-noise' else MARKS[m])}</p>"
                    for m in row["marks"]]
        details.append(f'<p>Recorded by <a href="{href}">{html.escape(notebook)}</a>.</p>')
    else:
        details.append("<p>No notebook of this book has tested it yet.</p>")
    return (f'<details class="sb-claim" id="sb-{html.escape(claim_id)}">{summary}<div class="sb-more">'
            + "".join(details) + "</div></details>")


def render_scoreboard(folder: str | Path, claims: Mapping[str, Claim] | None = None, *, json_name: str = "",
                      rounding: Mapping[str, str] | None = None) -> str:
    """The book's scoreboard page (MyST Markdown with HTML): counts per verdict as coloured badges, then one
    row per claim that unfolds into its rule and notes (styled by ``book/_static/sae-paper.css``).

    Each claim id links to the section of the notebook that recorded it (the runner marks it with
    :func:`claim_anchor`). ``json_name``: a file beside the page holding :func:`scoreboard_rows`, linked for
    scripts. ``rounding``: :func:`load_rounding_check`'s answer, marking the claims it flipped.
    """
    claims = load_claims() if claims is None else claims
    records = read_records(folder)
    paper, controls = paper_claims(claims), control_claims(claims)
    counts = verdict_counts(records, paper)
    rows = scoreboard_rows(records, claims, rounding)
    summary, badges = _counted(counts)
    marked = {mark: sum(mark in row["marks"] for row in rows) for mark in MARKS}
    lines = [
        "# Claims scoreboard",
        "",
        f"The paper's {len(paper)} checkable claims (from `claims.yaml` in the shared folder) and what the notebooks "
        "of this book found for each. Each notebook computes its verdicts from its own numbers, by a rule written "
        "beside it: *reproduced*, *partly*, *not*, *not comparable* (our setting cannot test it), or *not yet run*. "
        "*With more budget* says how the number that decides a verdict moves when its deciding input (fragments, "
        "training activations) grows, with that number at the smallest and the largest budget: converging toward "
        "the paper, moving away, or flat (the budget plan in the appendix says which input decides each claim). "
        "Click a claim for its rule and notes; its id leads to the section that computed it.",
        "",
        f'<div class="sb-counts" aria-label="{summary}">{badges}</div>',
        "",
        f"**{summary}.**" + (f" The same data for scripts: {{download}}`{json_name} <{json_name}>`." if json_name else ""),
        "",
        f"Marks: *{MARK_LABELS['stand-in']}* on {marked['stand-in']} verdict(s), {MARKS['stand-in']}; "
        f"*{MARK_LABELS['rounding-noise']}* on {marked['rounding-noise']}, where a recorded check of builds "
        "that differed only in float rounding (`sae-paper check-rounding`) saw the verdict, a seed's verdict or the trend change; "
        f"*{MARK_LABELS['weakened-baseline']}* on {marked['weakened-baseline']}, {MARKS['weakened-baseline']}."
        + (f" *{MARK_LABELS['measurement-failed'].capitalize()}* on {marked['measurement-failed']}: "
           f"{MARKS['measurement-failed']}." if marked["measurement-failed"] else ""),
        "",
        "The central claims (the budget plan names them) are decided at several seeds: each seed retrains the SAEs and "
        "redraws every sample on the same text. The verdict shown is the seeds' majority (a tie goes to the less "
        "favourable one); under it, whether the seeds agree, and in its tooltip the spread of the deciding number.",
        "",
        _board("claim", "the paper, and ours", [row for row in rows if row["id"] in paper]),
        "",
    ]
    if controls:
        control_summary, control_badges = _counted(verdict_counts(records, controls))
        lines += [
            "## Controls beyond the paper",
            "",
            f"{len(controls)} controls that reviewers now ask of an SAE study and the paper did not run, each from the "
            "work that asks for it (*where* names it). They are decided like the claims, by a rule on the rules page, "
            "and counted here apart: the counts above are the paper's claims alone.",
            "",
            f'<div class="sb-counts" aria-label="{control_summary}">{control_badges}</div>',
            "",
            _board("control", "the source, and ours", [row for row in rows if row["id"] in controls]),
            "",
        ]
    return "\n".join(lines)


def _counted(counts: Mapping[str, int]) -> tuple[str, str]:
    """Verdict counts as a sentence and as coloured badges (the zero counts left out)."""
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n)
    badges = "".join(f'<span class="sb-badge sb-v-{v.replace(" ", "-")}">{n} {v}</span>' for v, n in counts.items() if n)
    return summary, badges


def _board(what: str, texts: str, rows: Iterable[Mapping]) -> str:
    """The table of claims (or controls): a head row, then one unfolding row each (:func:`_claim_html`)."""
    return "\n".join([f'<div class="sb-board"><div class="sb-head"><span>{what}</span><span>{texts}</span>'
                      "<span>verdict</span><span>with more budget</span></div>", *(_claim_html(row) for row in rows),
                      "</div>"])
