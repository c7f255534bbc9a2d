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

What the runner computes, :func:`write_browser`, all from disk (the case-study picks 02 did not
draw are explained and scored with 02's scorer and fragments, :func:`score_picked`): 02's fragment activations and
the trained SAEs are read from the cache (no forward pass; a missing cache is reported on the
page, not recomputed); the model is loaded only for its tokenizer and unembedding. For each
feature over the fragment pool: firing rate and largest activation, a token histogram per
activation bin (:func:`~sae_paper.analysis.feature_stats.token_histogram`), top-activating and
random firing contexts with every token shaded (:mod:`sae_paper.book.feature_pages` writes them as data the page
renders as it scrolls),
and the tokens its direction most boosts and suppresses through the unembedding
(:func:`~sae_paper.analysis.feature_stats.unembed_direction`; an MLP feature's direction is first
written to the residual stream by the MLP's output weights, the direct path only).

Pages: ``generated/features/index.md``, ``main.md`` and ``mlp.md``, each SAE page an index
table (sorted and filtered in the browser by ``book/_static/feature-browser.js``, no network)
then the cards; histograms under ``generated/features/img/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sae_paper.analysis.autointerp.fragments import FragmentSpec, fragment_activations
from sae_paper.analysis.autointerp.scoring import MethodResult
from sae_paper.analysis.feature_contexts import ContextExample, top_contexts
from sae_paper.analysis.feature_stats import TokenHistogram, token_histogram, unembed_direction
from sae_paper.analysis.token_activations import TokenActivations, feature_codes, token_label
from sae_paper.book.feature_pages import N_LOGITS, N_RANDOM, N_TOP, SLOTS, index_page, missing_page, render_page
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
                saes: Mapping[str, tuple[RunConfig | None, MethodResult | None]], folder: str | Path | None = None) -> None:
    """Notebook 02: for each browsed SAE (``saes``: page name → (config, its scored features)), the
    explanations and scores, who made them (``scorer``; ``stand_in``: not a language model) and the fragment pool.
    Returns nothing: the record is the runner's, and a notebook cell ending in this call shows no path."""
    entries = {}
    for slot, (config, result) in saes.items():
        if slot not in SLOTS:
            raise SaePaperError(f"feature browser: unknown page {slot!r} (one of {', '.join(SLOTS)})")
        if config is None or result is None:
            continue
        entries[slot] = {"config": config.to_dict(), "site": result.site, "features": [
            {"feature": r.feature, "explanation": r.explanation, "score": r.score, "random_score": r.random_score,
             "failure": r.failure, "undefined": r.undefined, "random_undefined": r.random_undefined}
            for r in result.features]}
    _write(notebook, {"scorer": scorer, "stand_in": stand_in, "fragments": asdict(fragments), "saes": entries}, folder)


def save_picked(notebook: str, slot: str, config: RunConfig, picked: Sequence[tuple[int, str]],
                folder: str | Path | None = None) -> None:
    """Notebook 04: features its case studies picked on the SAE of page ``slot``, each with why (a feature
    picked twice keeps both reasons); negative ids (nothing found) are left out. Returns nothing (as
    :func:`save_scored`)."""
    if slot not in SLOTS:
        raise SaePaperError(f"feature browser: unknown page {slot!r} (one of {', '.join(SLOTS)})")
    reasons: dict[int, list[str]] = {}
    for feature, why in picked:
        if int(feature) >= 0:
            reasons.setdefault(int(feature), []).append(why)
    _write(notebook, {"saes": {slot: {"config": config.to_dict(), "picked": {
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


def _fragment_pool(spec: FragmentSpec, site: Site):
    """02's fragments and their activations at ``site``, from the cache only (a missing entry: one-line error)."""
    def not_cached():
        raise SaePaperError(f"the fragment activations at {site} ({spec.n_fragments} fragments) are not in the cache "
                            f"({spec.folder()}); rerun notebook 02_autointerp")

    fragments, acts = fragment_activations(None, spec, [site], get_model=not_cached)
    return fragments, acts


def fragment_text(spec: FragmentSpec, site: Site, pool=None) -> TokenActivations:
    """02's fragment pool at ``site`` from the cache (or ``pool``, :func:`_fragment_pool`'s answer, already read), as
    contexts (BOS first) and one activation row per token."""
    fragments, acts = pool or _fragment_pool(spec, site)
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


def score_picked(sae: BrowsedSae, decomposition, parameters: Mapping | None, pool=None) -> int:
    """Explain and score, with notebook 02's scorer, fragments and settings, the case-study picks 02 did not draw.

    02 scores a random sample of features; the features 04 picked (the apostrophe feature of
    Figure 4, the single-token features) are rarely among them, and a card without an
    explanation says little. ``parameters``: 02's, from its provenance (None: nothing to score
    with). The scores join ``sae.scored``, marked ``by: runner``; every model call goes through
    the autointerp call cache, so a rebuild scores nothing again. ``pool``: the fragments, if already read
    (:func:`_fragment_pool`). Returns how many were scored.
    """
    from sae_paper.analysis.autointerp.scoring import score_decomposition
    from sae_paper.chapters.autointerp import AutointerpStudy, make_backends

    missing = [f for f in sorted(sae.picked) if f not in sae.scored]
    if not missing or parameters is None:
        return 0
    study = AutointerpStudy.from_params(parameters)
    explainer, simulator = make_backends(study)
    fragments, acts = pool or _fragment_pool(sae.fragments, sae.site)
    result = score_decomposition(decomposition, acts[sae.site], fragments, explainer, simulator, method="sae",
                                 site=str(sae.site), n_features=len(missing), features=missing, config=study.scoring_config())
    for r in result.features:
        sae.scored[r.feature] = {"feature": r.feature, "explanation": r.explanation, "score": r.score,
                                 "random_score": r.random_score, "failure": r.failure, "undefined": r.undefined,
                                 "random_undefined": r.random_undefined, "by": "runner"}
    for feature in missing:
        sae.scored.setdefault(feature, {"feature": feature, "explanation": None, "score": None, "by": "runner",
                                        "failure": f"its activation varies on fewer than {study.min_fragments} "
                                                   "fragments, which 02 skips too"})
    return len(result.features)


SCORER_PROVENANCE = "provenance/02_autointerp.json"
"""Under ``book/generated``: notebook 02's provenance, whose parameters say how the case-study picks are scored."""


def _scorer_parameters(generated: Path) -> dict | None:
    """Notebook 02's parameters as its provenance recorded them, or None when 02 has not run."""
    path = generated / SCORER_PROVENANCE
    return json.loads(path.read_text()).get("parameters") if path.is_file() else None


def browser_inputs(generated: Path) -> tuple[list[Path], list[Path]]:
    """What :func:`write_browser` reads: the notebooks' feature records and 02's provenance (its scorer's
    parameters), and the cached files behind each page (the SAE's ``summary.json``, rewritten whenever it
    is trained, and the fragment pool)."""
    from sae_paper.core.pipeline import Run
    from sae_paper.core.train import SUMMARY_FILE

    records = sorted((generated / RECORDS).glob("*.json")) if (generated / RECORDS).is_dir() else []
    scorer = generated / SCORER_PROVENANCE  # 02's parameters score the case-study picks
    records += [scorer] if scorer.is_file() else []
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
            path.write_text(missing_page(slot, "notebook 02_autointerp has not recorded it (run that notebook)"))
            written.append(path)
            continue
        run = Run(sae.config, progress=False)
        try:
            if not run.sae_is_cached():
                raise SaePaperError(f"the SAE is not in the cache ({run.sae_dir}); rerun notebook 02_autointerp")
            pool = _fragment_pool(sae.fragments, sae.site)  # read once: the cards and the picks' scoring share it
            text = fragment_text(sae.fragments, sae.site, pool)
        except SaePaperError as error:
            path.write_text(missing_page(slot, str(error)))
            written.append(path)
            continue
        if sae.config.model not in models:
            models[sae.config.model] = load_model(sae.config.model)
        model = models[sae.config.model]
        decomposition = SaeDecomposition(run.sae())
        scored = score_picked(sae, decomposition, _scorer_parameters(generated), pool)
        if scored:
            log(f"feature browser: scored {scored} case-study pick(s) of the {slot} SAE with 02's scorer")
        cards = feature_cards(sae, decomposition, text, model, seed=sae.config.seed)
        drawn = [card for card in cards if card.histogram is not None]
        images = {card.feature: f"img/{slot}-{card.feature}.png" for card in drawn}
        draw_histograms([(card.histogram, f"feature {card.feature}: {card.histogram.n_firing:,} firing tokens",
                          out / images[card.feature]) for card in drawn])
        path.write_text(WIDE_PAGE + render_page(sae, cards, images, model.tokenizer))
        written.append(path)
        log(f"feature browser: {slot} page, {len(cards)} features")
    index = out / "index.md"
    index.write_text(index_page(pages))
    written.insert(0, index)
    return written
