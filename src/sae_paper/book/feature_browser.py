"""The feature browser: a card for each feature of an SAE, made by the book runner from cached results.

The paper is about features a person can read, and feature dashboards (Neuronpedia,
sae-dashboard) are how people in this field look at an SAE. sae-dashboard cannot serve here
(it pins transformer-lens < 3 and loads d3/plotly from CDNs, so its pages are blank offline),
so the book writes its own static pages, one per browsed SAE:

- **the main residual SAE** (notebook 01's, which 02 scores and 04 inspects): every feature
  02 scored, plus the features 04's case studies picked;
- **the MLP SAE** (notebook 01's, scored in 02's Appendix C.3 section).

What the notebooks leave, as ``<book output>/feature_records/<notebook>.json`` (no activations):
:func:`save_scored` (02: each SAE's config, its scored features' explanations and scores, which
explainer and simulator made them, the fragment pool) and :func:`save_picked` (04: the
features its case studies picked, and why).

What the runner computes, :func:`write_browser`, all from disk: 02's fragment activations and
the trained SAEs are read from the cache (no forward pass; a missing cache is reported on the
page, not recomputed); the model is loaded only for its tokenizer and unembedding. For each
feature over the fragment pool: firing rate and largest activation, a token histogram per
activation bin (:func:`~sae_paper.analysis.feature_stats.token_histogram`), top-activating and
random firing contexts with every token shaded (:func:`~sae_paper.analysis.feature_contexts.contexts_html`),
and the tokens its direction most boosts and suppresses through the unembedding
(:func:`~sae_paper.analysis.feature_stats.unembed_direction`; an MLP feature's direction is first
written to the residual stream by the MLP's output weights, the direct path only).

Pages: ``generated/features/index.md``, ``main.md`` and ``mlp.md``, each SAE page an index
table (sorted and filtered in the browser by ``book/_static/feature-browser.js``, no network)
then the cards; histograms under ``generated/features/img/``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sae_paper.analysis.autointerp.fragments import FragmentSpec, fragment_activations
from sae_paper.analysis.autointerp.scoring import MethodResult
from sae_paper.analysis.feature_contexts import ContextExample, contexts_html, top_contexts
from sae_paper.analysis.feature_stats import TokenHistogram, token_histogram, unembed_direction
from sae_paper.analysis.token_activations import TokenActivations, feature_codes, token_label
from sae_paper.book.histogram_images import draw_histograms
from sae_paper.book.pages import WIDE_PAGE
from sae_paper.core.config import RunConfig
from sae_paper.data.models import Site, model_spec
from sae_paper.data.paths import book_output_dir
from sae_paper.errors import SaePaperError

RECORDS = "feature_records"
"""The notebooks' records, under the book output (moved to ``book/generated`` by the runner)."""
FOLDER = "features"
"""The pages, under ``book/generated``."""
SLOTS = {"main": "The main residual SAE", "mlp": "The MLP SAE"}
"""Page name → title. Fixed, so that ``book/_toc.yml`` can list the pages."""
N_TOP, N_RANDOM, N_LOGITS = 8, 4, 8
"""Top-activating contexts, random firing contexts and boosted/suppressed tokens per card."""


# --------------------------------------------------------------------------------------
# What the notebooks save
# --------------------------------------------------------------------------------------


def _write(notebook: str, payload: dict, folder: str | Path | None) -> Path:
    folder = Path(folder) if folder is not None else book_output_dir(RECORDS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{notebook}.json"
    path.write_text(json.dumps({"notebook": notebook, **payload}, indent=1, ensure_ascii=False) + "\n")
    return path


def save_scored(notebook: str, *, scorer: str, stand_in: bool, fragments: FragmentSpec,
                saes: Mapping[str, tuple[RunConfig | None, MethodResult | None]], folder: str | Path | None = None) -> Path:
    """Notebook 02: for each browsed SAE (``saes``: page name → (config, its scored features)), the
    explanations and scores, who made them (``scorer``; ``stand_in``: not a language model) and the fragment pool."""
    entries = {}
    for slot, (config, result) in saes.items():
        if slot not in SLOTS:
            raise SaePaperError(f"feature browser: unknown page {slot!r} (one of {', '.join(SLOTS)})")
        if config is None or result is None:
            continue
        entries[slot] = {"config": config.to_dict(), "site": result.site, "features": [
            {"feature": r.feature, "explanation": r.explanation, "score": r.score, "random_score": r.random_score,
             "failure": r.failure} for r in result.features]}
    return _write(notebook, {"scorer": scorer, "stand_in": stand_in, "fragments": asdict(fragments), "saes": entries},
                  folder)


def save_picked(notebook: str, slot: str, config: RunConfig, picked: Sequence[tuple[int, str]],
                folder: str | Path | None = None) -> Path:
    """Notebook 04: features its case studies picked on the SAE of page ``slot``, each with why (a feature
    picked twice keeps both reasons); negative ids (nothing found) are left out."""
    if slot not in SLOTS:
        raise SaePaperError(f"feature browser: unknown page {slot!r} (one of {', '.join(SLOTS)})")
    reasons: dict[int, list[str]] = {}
    for feature, why in picked:
        if int(feature) >= 0:
            reasons.setdefault(int(feature), []).append(why)
    return _write(notebook, {"saes": {slot: {"config": config.to_dict(), "picked": {
        str(f): "; ".join(why) for f, why in reasons.items()}}}}, folder)


# --------------------------------------------------------------------------------------
# Gathering what to browse
# --------------------------------------------------------------------------------------


@dataclass
class BrowsedSae:
    """One page's SAE and what the notebooks said about its features."""

    slot: str
    config: RunConfig
    site: Site
    scorer: str = ""
    stand_in: bool = True
    fragments: FragmentSpec | None = None
    scored: dict[int, dict] = field(default_factory=dict)
    """Feature → its 02 record (explanation, score, random_score, failure)."""
    picked: dict[int, str] = field(default_factory=dict)
    """Feature → why a case study picked it."""
    notes: list[str] = field(default_factory=list)
    """What the page must say it could not show."""

    @property
    def features(self) -> list[int]:
        return sorted(set(self.scored) | set(self.picked))


def gather(records_dir: Path) -> dict[str, BrowsedSae]:
    """Merge the notebooks' feature records by page; a case-study pick on another SAE than 02's is noted, not shown."""
    from sae_paper.core.pipeline import Run

    pages: dict[str, BrowsedSae] = {}
    picks = []
    for path in sorted(records_dir.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
            for slot, entry in payload["saes"].items():
                config = RunConfig(**entry["config"])
                if "features" in entry:
                    spec = payload["fragments"]
                    pages[slot] = BrowsedSae(slot, config, Site(config.site, config.layer), payload["scorer"],
                                             payload["stand_in"], FragmentSpec(**{**spec, "sources": tuple(spec["sources"])}),
                                             {int(r["feature"]): r for r in entry["features"]})
                else:
                    picks.append((payload["notebook"], slot, config, {int(f): why for f, why in entry["picked"].items()}))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SaePaperError(f"unreadable feature records {path}: {error!r}; rerun that notebook") from None
    for notebook, slot, config, picked in picks:
        page = pages.get(slot)
        if page is None:
            continue  # nothing scored this SAE: no fragment pool to show it on
        if Run(config, progress=False).sae_dir != Run(page.config, progress=False).sae_dir:
            page.notes.append(f"{notebook} picked features of another SAE ({config.site}.{config.layer}, "
                              f"{config.n_tokens:,} activations); they are not shown here.")
            continue
        for feature, why in picked.items():
            page.picked[feature] = f"{notebook}: {why}"
    return pages


# --------------------------------------------------------------------------------------
# Cards
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureCard:
    """Everything one feature's card shows."""

    feature: int
    explanation: str | None
    score: float | None
    why: str
    firing_rate: float
    """Share of the fragment tokens where it fires."""
    max_activation: float
    histogram: TokenHistogram | None
    """None when it never fires on the fragments."""
    top: list[ContextExample]
    random: list[ContextExample]
    boosted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]


def fragment_text(spec: FragmentSpec, site: Site) -> TokenActivations:
    """02's fragment pool at ``site`` from the cache, as contexts (BOS first) and one activation row per token."""
    def not_cached():
        raise SaePaperError(f"the fragment activations at {site} ({spec.n_fragments} fragments) are not in the cache "
                            f"({spec.folder()}); rerun notebook 02_autointerp")

    fragments, acts = fragment_activations(None, spec, [site], get_model=not_cached)
    bos = torch.full((fragments.n_fragments, 1), model_spec(spec.model).bos_token_id, dtype=torch.long)
    rows = acts[site].reshape(-1, acts[site].shape[-1])
    return TokenActivations(torch.cat([bos, fragments.tokens], dim=1), rows, (("fragments", fragments.n_fragments),))


def residual_directions(model, site: Site, directions: torch.Tensor) -> torch.Tensor:
    """Feature directions as vectors in the residual stream: an MLP site's go through that MLP's output weights."""
    if site.kind == "mlp_post":
        return directions.float() @ model.W_out[site.layer].detach().float()
    return directions.float()


def feature_cards(sae: BrowsedSae, decomposition, text: TokenActivations, model, *, seed: int = 0) -> list[FeatureCard]:
    """The cards of every browsed feature of one SAE, over ``text`` (02's fragment pool)."""
    features = sae.features
    codes = feature_codes(decomposition, text.rows, features)
    logits = unembed_direction(model, residual_directions(model, sae.site, decomposition.feature_directions()[features]))
    generator = torch.Generator().manual_seed(seed)
    tokenizer = model.tokenizer

    def label(token_id: int) -> str:
        return token_label(tokenizer, token_id)

    cards = []
    for column, feature in enumerate(features):
        activation = codes[:, column]
        firing = (activation > 0).nonzero().flatten()
        scored = sae.scored.get(feature, {})
        boosted, suppressed = logits[column].topk(N_LOGITS), (-logits[column]).topk(N_LOGITS)
        cards.append(FeatureCard(
            feature=feature,
            explanation=scored.get("explanation"),
            score=scored.get("score"),
            why="; ".join(filter(None, ["scored in 02_autointerp" if scored else "", sae.picked.get(feature, "")])),
            firing_rate=len(firing) / len(activation),
            max_activation=float(activation.max()),
            histogram=token_histogram(activation, text.tokens, n_bins=10, n_named=5, label=label) if len(firing) else None,
            top=top_contexts(text, activation, k=N_TOP),
            random=top_contexts(text, activation, k=N_RANDOM, order=firing[torch.randperm(len(firing), generator=generator)]),
            boosted=[(label(t), float(v)) for v, t in zip(boosted.values, boosted.indices.tolist())],
            suppressed=[(label(t), -float(v)) for v, t in zip(suppressed.values, suppressed.indices.tolist())],
        ))
    return cards


# --------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------


def _md_text(text: str, limit: int = 80) -> str:
    """Plain text safe in a Markdown heading: one line, at most ``limit`` characters, punctuation escaped."""
    line = " ".join(str(text).split())
    line = line if len(line) <= limit else line[: limit - 1] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!<>|~$&:\"'])", r"\\\1", line)


def _number(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _anchor(slot: str, feature: int) -> str:
    return f"fb-{slot}-{feature}"


def _index_table(slot: str, cards: Sequence[FeatureCard]) -> str:
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
                    f'<td><div class="fb-clamp">{html.escape(c.explanation or "—")}</div></td>'
                    f"<td data-value=\"{score}\">{_number(c.score, '.2f')}</td>"
                    f'<td data-value="{c.firing_rate:.6f}">{c.firing_rate:.2%}</td>'
                    f'<td data-value="{c.max_activation:.4f}">{c.max_activation:.2f}</td><td>{html.escape(c.why)}</td></tr>')
    return "\n".join([head, *rows, "</tbody></table></div>"])


def _logit_line(pairs: Sequence[tuple[str, float]]) -> str:
    return " ".join(f'<code>{html.escape(t)}</code>&nbsp;<span class="fb-num">{v:+.2f}</span>' for t, v in pairs)


def _card(sae: BrowsedSae, card: FeatureCard, image: str | None, tokenizer) -> str:
    title = f"Feature {card.feature}" + (f": {_md_text(card.explanation)}" if card.explanation else "")
    by = "the token-list stand-in (not a language model)" if sae.stand_in else f"an LLM ({html.escape(sae.scorer)})"
    if card.explanation is not None:
        explained = (f'<p class="fb-expl">Explanation by {by}: <q>{html.escape(card.explanation)}</q>; score '
                     f"<b>{_number(card.score, '.2f')}</b> (top-and-random), random-only "
                     f"{_number(sae.scored[card.feature].get('random_score'), '.2f')}.</p>")
    elif card.feature in sae.scored:
        explained = f'<p class="fb-expl">02 could not explain it: {html.escape(str(sae.scored[card.feature].get("failure")))}</p>'
    else:
        explained = '<p class="fb-expl">Not scored in 02_autointerp (a case-study pick): no explanation.</p>'
    meta = (f'<p class="fb-meta">Fires on {card.firing_rate:.2%} of the fragment tokens; largest activation '
            f"{card.max_activation:.2f}. Browsed because: {html.escape(card.why)}.</p>")
    parts = [f"({_anchor(sae.slot, card.feature)})=", f"## {title}", "", f'<div class="fb-card">{explained}{meta}</div>', ""]
    if image:
        parts += ["```{image} " + image, f":alt: token histogram per activation bin of feature {card.feature}",
                  ":class: fb-hist", "```", ""]
    else:
        parts += ['<p class="fb-meta">It never fires on the fragment pool: no histogram or contexts.</p>', ""]
    if card.top:
        parts += ['<div class="fb-contexts">' + contexts_html(card.top, tokenizer, title="top-activating contexts")
                  .replace("\n", "") + contexts_html(card.random, tokenizer, title="random firing contexts")
                  .replace("\n", "") + "</div>", ""]
    parts += [f'<div class="fb-logits"><p><b>Boosts</b> (unembedding) {_logit_line(card.boosted)}</p><p><b>Suppresses</b> '
              f"{_logit_line(card.suppressed)}</p></div>", ""]
    return "\n".join(parts)


def _describe(sae: BrowsedSae) -> str:
    c = sae.config
    return (f"`{c.model}` {sae.site}: {c.sae} SAE, R = {c.ratio:g}, α = {c.alpha if c.alpha is not None else 'default'}, "
            f"trained on {c.n_tokens:,} activations × {c.epochs} epochs")


def render_page(sae: BrowsedSae, cards: Sequence[FeatureCard], images: Mapping[int, str], tokenizer) -> str:
    """One SAE's page: what it is, where the numbers come from, the index, the cards."""
    n_picked = sum(1 for c in cards if c.feature in sae.picked)
    lines = [
        f"# {SLOTS[sae.slot]}: {len(cards)} features", "",
        f"{_describe(sae)}. {len(sae.scored)} features scored in notebook 02 and {n_picked} picked by the case "
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


def _missing_page(slot: str, why: str) -> str:
    return f"# {SLOTS[slot]}\n\nNot available in this build: {why}.\n"


def browser_inputs(generated: Path) -> tuple[list[Path], list[Path]]:
    """What :func:`write_browser` reads: the notebooks' feature records, and the cached files behind
    each page (the SAE's ``summary.json``, rewritten whenever it is trained, and the fragment pool)."""
    from sae_paper.core.pipeline import Run
    from sae_paper.core.train import SUMMARY_FILE

    records = sorted((generated / RECORDS).glob("*.json")) if (generated / RECORDS).is_dir() else []
    inputs = []
    for sae in (gather(generated / RECORDS) if records else {}).values():
        folder = sae.fragments.folder()
        inputs += [Run(sae.config, progress=False).sae_dir / SUMMARY_FILE, folder / "fragments.json",
                   folder / f"{sae.site}.safetensors"]
    return records, inputs


def write_browser(generated: Path, *, load_model: Callable[[str], object] | None = None,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Write ``generated/features/`` (index and one page per SAE) from the notebooks' records and the cache."""
    from sae_paper.core.decompositions import SaeDecomposition
    from sae_paper.core.pipeline import Run
    if load_model is None:
        from sae_paper.data.models import load_model
    out = generated / FOLDER
    shutil.rmtree(out, ignore_errors=True)
    (out / "img").mkdir(parents=True)
    pages = gather(generated / RECORDS) if (generated / RECORDS).is_dir() else {}
    models: dict[str, object] = {}
    written = []
    for slot in SLOTS:
        sae = pages.get(slot)
        path = out / f"{slot}.md"
        if sae is None:
            path.write_text(_missing_page(slot, "notebook 02_autointerp has not recorded it (run that notebook)"))
            written.append(path)
            continue
        run = Run(sae.config, progress=False)
        try:
            if not run.sae_is_cached():
                raise SaePaperError(f"the SAE is not in the cache ({run.sae_dir}); rerun notebook 02_autointerp")
            text = fragment_text(sae.fragments, sae.site)
        except SaePaperError as error:
            path.write_text(_missing_page(slot, str(error)))
            written.append(path)
            continue
        if sae.config.model not in models:
            models[sae.config.model] = load_model(sae.config.model)
        model = models[sae.config.model]
        cards = feature_cards(sae, SaeDecomposition(run.sae()), text, model, seed=sae.config.seed)
        drawn = [card for card in cards if card.histogram is not None]
        images = {card.feature: f"img/{slot}-{card.feature}.png" for card in drawn}
        draw_histograms([(card.histogram, f"feature {card.feature}: {card.histogram.n_firing:,} firing tokens",
                          out / images[card.feature]) for card in drawn])
        path.write_text(WIDE_PAGE + render_page(sae, cards, images, model.tokenizer))
        written.append(path)
        log(f"feature browser: {slot} page, {len(cards)} features")
    index = out / "index.md"
    index.write_text(_index_page(pages))
    written.insert(0, index)
    return written


def _index_page(pages: Mapping[str, BrowsedSae]) -> str:
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
