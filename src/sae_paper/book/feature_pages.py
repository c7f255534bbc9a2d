"""The feature browser's pages: an index table and one card per feature, as MyST Markdown with HTML.

:mod:`sae_paper.book.feature_browser` gathers what to show (the notebooks' records, the
cached fragments and SAEs) into cards; this module writes them. A card's text (its
explanation, score, why it is browsed, the tokens its direction boosts and suppresses) is
HTML the book's search indexes. Its contexts, about 200 shaded tokens a card and thousands
on a page, are data: one ``<script type="application/json">`` per card, which
``book/_static/feature-browser.js`` turns into shaded tokens as the card scrolls into view,
so the page loads fast however many features it shows.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence

from sae_paper.analysis.token_activations import token_display
from sae_paper.report.markdown import readable

SLOTS = {"main": "The main residual SAE", "mlp": "The MLP SAE"}
"""Page name → title. Fixed, so that ``book/_toc.yml`` can list the pages."""
N_TOP, N_RANDOM, N_LOGITS = 8, 4, 8
"""Top-activating contexts, random firing contexts and boosted/suppressed tokens per card."""
HISTOGRAM_WIDTH = 360
"""CSS pixels a card's histogram is shown at; it is drawn at twice that (144 dpi), sharp on any screen."""


def contexts_data(examples, tokenizer, *, title: str) -> dict:
    """A card's contexts as data for ``feature-browser.js``: per example its activation, the firing token's index,
    the tokens as a reader sees them (:func:`~sae_paper.analysis.token_activations.token_display`) and each token's
    activation (2 decimals)."""
    return {"title": title, "rows": [
        [round(e.activation, 2), e.focus, [token_display(tokenizer, t) for t in e.token_ids],
         [round(max(0.0, v), 2) for v in e.activations]] for e in examples]}


def _script_json(payload) -> str:
    """JSON safe inside a ``<script>`` element and on one line (a Markdown HTML block ends at a blank line)."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")


def _md_text(text: str, limit: int = 80) -> str:
    """Plain text safe in a Markdown heading: one line, at most ``limit`` characters, punctuation escaped."""
    line = " ".join(str(text).split())
    line = line if len(line) <= limit else line[: limit - 1] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!<>|~$&:\"'])", r"\\\1", line)


def _number(value: float | None, fmt: str, undefined: str | None = None) -> str:
    """``value`` formatted; an undefined correlation (a constant side: the reference's NaN) says why."""
    if value is None:
        return f"undefined ({undefined})" if undefined else "—"
    return format(value, fmt)


def _anchor(slot: str, feature: int) -> str:
    return f"fb-{slot}-{feature}"


def _index_table(slot: str, cards: Sequence) -> str:
    """The index: one row per feature, sortable and filterable by ``feature-browser.js`` (one HTML block)."""
    head = ('<div class="fb-index"><input class="fb-filter" type="search" placeholder="filter by id, explanation or '
            'reason" aria-label="filter the features"><table class="fb-table"><thead><tr>'
            '<th data-sort="num">feature</th><th data-sort="text">explanation</th><th data-sort="num">score</th>'
            '<th data-sort="num">firing rate</th><th data-sort="num">max act.</th><th data-sort="text">browsed because</th>'
            "</tr></thead><tbody>")
    rows = []
    for c in cards:
        score = "" if c.score is None else f"{c.score:.4f}"
        rows.append(f'<tr><td data-value="{c.feature}"><a href="#{_anchor(slot, c.feature)}">{c.feature}</a></td>'
                    f'<td><div class="fb-clamp">{html.escape(readable(c.explanation or "—"))}</div></td>'
                    f"<td data-value=\"{score}\">{_number(c.score, '.2f')}</td>"
                    f'<td data-value="{c.firing_rate:.6f}">{c.firing_rate:.2%}</td>'
                    f'<td data-value="{c.max_activation:.4f}">{c.max_activation:.2f}</td><td>{html.escape(c.why)}</td></tr>')
    return "\n".join([head, *rows, "</tbody></table></div>"])


def _logit_line(pairs: Sequence[tuple[str, float]]) -> str:
    return " ".join(f'<code>{html.escape(t)}</code>&nbsp;<span class="fb-num">{v:+.2f}</span>' for t, v in pairs)


def _card(sae, card, image: str | None, tokenizer) -> str:
    explanation = readable(card.explanation) if card.explanation is not None else None
    title = f"Feature {card.feature}" + (f": {_md_text(explanation)}" if explanation else "")
    by = "the token-list stand-in (not a language model)" if sae.stand_in else f"an LLM ({html.escape(sae.scorer)})"
    record = sae.scored.get(card.feature, {})
    if card.explanation is not None:
        explained = (f'<p class="fb-expl">Explanation by {by}: <q>{html.escape(explanation)}</q>; score '
                     f"<b>{_number(card.score, '.2f', record.get('undefined'))}</b> (top-and-random), random-only "
                     f"{_number(record.get('random_score'), '.2f', record.get('random_undefined'))}."
                     + (" Scored by the book runner with 02's scorer and fragments: a case-study pick, not one of 02's "
                        "randomly drawn features." if record.get("by") == "runner" else "") + "</p>")
    elif card.feature in sae.scored:
        who = "Not scored" if record.get("by") == "runner" else "02 could not explain it"
        explained = f'<p class="fb-expl">{who}: {html.escape(str(record.get("failure")))}</p>'
    else:
        explained = ('<p class="fb-expl">Not scored (a case-study pick, not drawn by 02, and notebook 02\'s scorer '
                     "settings were not recorded in this build): no explanation.</p>")
    meta = (f'<p class="fb-meta">Fires on {card.firing_rate:.2%} of the fragment tokens; largest activation '
            f"{card.max_activation:.2f}. Browsed because: {html.escape(card.why)}.</p>")
    parts = [f"({_anchor(sae.slot, card.feature)})=", f"## {title}", "", f'<div class="fb-card">{explained}{meta}</div>', ""]
    if image:
        parts += ["```{image} " + image, f":alt: token histogram per activation bin of feature {card.feature}",
                  ":class: fb-hist", f":width: {HISTOGRAM_WIDTH}px", "```", ""]
    else:
        parts += ['<p class="fb-meta">It never fires on the fragment pool: no histogram or contexts.</p>', ""]
    if card.top:
        data = [contexts_data(card.top, tokenizer, title="top-activating contexts"),
                contexts_data(card.random, tokenizer, title="random firing contexts")]
        parts += [f'<div class="fb-contexts"><script type="application/json" class="fb-data">{_script_json(data)}'
                  "</script><noscript>The contexts need JavaScript.</noscript></div>", ""]
    parts += [f'<div class="fb-logits"><p><b>Boosts</b> (unembedding) {_logit_line(card.boosted)}</p><p><b>Suppresses</b> '
              f"{_logit_line(card.suppressed)}</p></div>", ""]
    return "\n".join(parts)


def _describe(sae) -> str:
    c = sae.config
    return (f"`{c.model}` {sae.site}: {c.sae} SAE, R = {c.ratio:g}, α = {c.alpha if c.alpha is not None else 'default'}, "
            f"trained on {c.n_tokens:,} activations × {c.epochs} epochs")


def render_page(sae, cards: Sequence, images: Mapping[int, str], tokenizer) -> str:
    """One SAE's page (``sae``: a :class:`~sae_paper.book.feature_browser.BrowsedSae`; ``cards``: its
    :class:`~sae_paper.book.feature_browser.FeatureCard` list): what it is, where the numbers come from, the index, the
    cards."""
    n_picked = sum(1 for c in cards if c.feature in sae.picked)
    lines = [
        f"# {SLOTS[sae.slot]}: {len(cards)} features", "",
        f"{_describe(sae)}. {sum(r.get('by') != 'runner' for r in sae.scored.values())} features scored in notebook 02 "
        f"and {n_picked} picked by the case "
        f"studies; every number below is over 02's pool of {sae.fragments.n_fragments:,} fragments of "
        f"{sae.fragments.length} tokens ({', '.join(sae.fragments.sources)}). Explanations and scores: {sae.scorer}.",
        "",
        "Each card: the explanation and its score; a histogram of the tokens it fires on per activation bin "
        f"(log counts); its top {N_TOP} contexts and {N_RANDOM} random firing contexts, every token shaded by the "
        "feature's activation (the firing token boxed); and the tokens its direction most boosts and suppresses "
        "read through the unembedding (for the MLP SAE, through the MLP's output weights first: the direct path only).",
        "", *[f"*{note}*\n" for note in sae.notes],
        "## Index", "", "Click a column to sort it; type to filter.", "", _index_table(sae.slot, cards), "",
    ]
    lines += [_card(sae, card, images.get(card.feature), tokenizer) for card in cards]
    return "\n".join(lines)


def missing_page(slot: str, why: str) -> str:
    return f"# {SLOTS[slot]}\n\nNot available in this build: {why}.\n"




def index_page(pages: Mapping) -> str:
    lines = ["# Feature browser", "",
             "A card for each feature the book looked at, as feature dashboards (Neuronpedia, sae-dashboard) show "
             "them: what it fires on, in which contexts, and what its direction does to the next-token logits. "
             "Made by `sae-paper book` from the cached results of notebooks 02 and 04, without running the model "
             "again; it works with no network.", ""]
    for slot, title in SLOTS.items():
        sae = pages.get(slot)
        what = f"{_describe(sae)}; {len(sae.features)} features" if sae else "not available in this build"
        lines.append(f"- [{title}]({slot}.md): {what}")
    return "\n".join(lines) + "\n"
