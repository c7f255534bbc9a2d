"""The feature browser (sae_paper.book.feature_browser) and the runner's page helpers (sae_paper.book.pages).

Integration tier: the random-weight Pythia (``pythia_random``) on real WebText fragments; a
tiny SAE trained through the one pipeline on 620 activations.
"""

from __future__ import annotations

import json
import os
import re
import textwrap

import nbformat
import pytest
import torch

from sae_paper.analysis.autointerp import FragmentSpec, fragment_activations
from sae_paper.analysis.autointerp.fragments import FeatureChoice
from sae_paper.analysis.autointerp.scoring import FeatureResult, MethodResult
from sae_paper.analysis.feature_stats import unembed_direction
from sae_paper.book.feature_browser import (
    BrowsedSae,
    feature_cards,
    fragment_text,
    gather,
    save_picked,
    save_scored,
    write_browser,
)
from sae_paper.book.pages import WIDE_PAGE, anchor_claim_sections, chapter_list, page_summary, toc_entries
from sae_paper.book.profiles import load_profile, resolve_parameters
from sae_paper.core.config import RunConfig
from sae_paper.core.decompositions import SaeDecomposition
from sae_paper.core.pipeline import Run
from sae_paper.data.models import Site
from sae_paper.data.paths import cache_dir, repo_root
from sae_paper.errors import SaePaperError

MODEL = "pythia-70m-deduped-random"
CONFIG = RunConfig(model=MODEL, layer=1, site="resid_post", n_tokens=620, context_length=32, harvest_batch_size=16,
                   ratio=1.0, alpha=4e-4, batch_size=128, epochs=1, eval_tokens=248)
SPEC = FragmentSpec(MODEL, n_fragments=24, length=16, sources=("webtext",))


def scored(features, site="resid_post.1"):
    results = [FeatureResult("sae", site, f, f"tokens {f} and apostrophes", 0.1 * f, 0.0) for f in features]
    return MethodResult("sae", site, FeatureChoice(tuple(features), 0, 0, 512), results)


# --------------------------------------------------------------------------------------
# Records and how they merge
# --------------------------------------------------------------------------------------


def test_records_merge_by_page_and_picks_of_another_sae_are_noted(tmp_path):
    save_scored("02_autointerp", scorer="explainer and simulator token-list", stand_in=True, fragments=SPEC,
                saes={"main": (CONFIG, scored([3, 5])), "mlp": (None, None)}, folder=tmp_path)
    save_picked("04_case_studies", "main", CONFIG, [(5, "apostrophes"), (7, "periods"), (5, "the tree"), (-1, "none")],
                folder=tmp_path)
    save_picked("05_appendices", "main", CONFIG.replace(n_tokens=1240), [(9, "elsewhere")], folder=tmp_path)
    pages = gather(tmp_path)
    assert set(pages) == {"main"}  # the MLP SAE had no result: no page data
    main = pages["main"]
    assert main.features == [3, 5, 7] and main.fragments == SPEC and main.site == Site("resid_post", 1)
    assert main.picked[5] == "04_case_studies: apostrophes; the tree"
    assert main.scored[3]["explanation"] == "tokens 3 and apostrophes"
    assert len(main.notes) == 1 and "05_appendices picked features of another SAE" in main.notes[0]
    with pytest.raises(SaePaperError, match="unknown page 'resid'"):
        save_picked("04", "resid", CONFIG, [], folder=tmp_path)
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(SaePaperError, match="unreadable feature records .*broken.json"):
        gather(tmp_path)


# --------------------------------------------------------------------------------------
# Cards, checked against the quantities they summarise
# --------------------------------------------------------------------------------------


@pytest.fixture()
def trained(pythia_random):
    """A tiny SAE through the pipeline, and the fragment pool's activations in the cache."""
    run = Run(CONFIG, progress=False)
    run._model = pythia_random
    sae = run.sae()
    fragment_activations(pythia_random, SPEC, [run.site])
    return run, SaeDecomposition(sae)


def test_cards_agree_with_the_codes_contexts_and_unembedding(trained, pythia_random):
    run, decomposition = trained
    text = fragment_text(SPEC, run.site)
    assert text.contexts.shape == (24, 17) and text.rows.shape == (24 * 16, 512)
    assert (text.contexts[:, 0] == 0).all()  # BOS first, as in every other TokenActivations
    codes = decomposition.encode(text.rows).clamp(min=0)
    firing = (codes > 0).sum(dim=0)
    features = [int(f) for f in firing.argsort(descending=True)[:3]] + [int(firing.argmin())]
    page = BrowsedSae("main", CONFIG, run.site, "token-list", True, SPEC, {features[0]: {"explanation": "x", "score": 0.5}},
                      {features[1]: "picked"})
    page.scored.update({f: {"explanation": None, "score": None} for f in features[2:]})
    cards = {c.feature: c for c in feature_cards(page, decomposition, text, pythia_random)}
    assert sorted(cards) == sorted(features)
    logits = unembed_direction(pythia_random, decomposition.feature_directions()[features])
    for column, feature in enumerate(features):
        card, activation = cards[feature], codes[:, feature]
        assert card.firing_rate == pytest.approx(float((activation > 0).float().mean()))
        assert card.max_activation == pytest.approx(float(activation.max()), rel=1e-5)
        assert card.boosted[0][1] == pytest.approx(float(logits[column].max()), rel=1e-4)
        assert card.suppressed[0][1] == pytest.approx(float(logits[column].min()), rel=1e-4)
        assert [v for _, v in card.boosted] == sorted((v for _, v in card.boosted), reverse=True)
        if card.histogram is None:
            assert card.firing_rate == 0 and card.top == [] and card.random == []
            continue
        assert card.histogram.n_firing == int((activation > 0).sum())
        assert card.top[0].activation == pytest.approx(card.max_activation, rel=1e-5)
        assert [e.activation for e in card.top] == sorted((e.activation for e in card.top), reverse=True)
        assert all(e.activation > 0 for e in card.random) and len({e.context for e in card.random}) == len(card.random)
    assert cards[features[0]].why == "scored in 02_autointerp" and cards[features[1]].why == "picked"


def test_write_browser_pages_from_records_and_the_cache(trained, pythia_random, tmp_path):
    run, decomposition = trained
    generated = tmp_path / "generated"
    records = generated / "feature_records"
    save_scored("02_autointerp", scorer="explainer and simulator token-list (stand-in)", stand_in=True, fragments=SPEC,
                saes={"main": (CONFIG, scored([0, 1, 2]))}, folder=records)
    save_picked("04_case_studies", "main", CONFIG, [(4, "the apostrophe feature")], folder=records)
    write_browser(generated, load_model=lambda name: pythia_random, log=lambda line: None)  # 02's settings unknown
    assert "Not scored (a case-study pick" in (generated / "features" / "main.md").read_text()
    smoke = resolve_parameters(load_profile(repo_root() / "profiles" / "smoke.yaml"), ["02_autointerp"], [])
    (generated / "provenance").mkdir()
    (generated / "provenance" / "02_autointerp.json").write_text(json.dumps(
        {"parameters": {**smoke["02_autointerp"], "min_fragments": 1}}))  # as 02's provenance records them
    logged = []
    written = write_browser(generated, load_model=lambda name: pythia_random, log=logged.append)
    assert [p.name for p in written] == ["index.md", "main.md", "mlp.md"]
    page = (generated / "features" / "main.md").read_text()
    assert page.startswith(WIDE_PAGE + "# The main residual SAE: 4 features\n")
    assert page.count("<tr><td data-value=") == 4  # the index: one row per feature
    for feature in (0, 1, 2, 4):
        assert f"(fb-main-{feature})=" in page
    assert "## Feature 1: tokens 1 and apostrophes" in page
    assert "token-list stand-in (not a language model)" in page
    card = page.split("(fb-main-4)=")[1]  # the case-study pick: explained and scored by the runner with 02's scorer
    assert "Scored by the book runner with 02's scorer" in card.split("</p>")[0] and "<q>" in card.split("</p>")[0]
    assert "feature browser: scored 1 case-study pick(s) of the main SAE with 02's scorer" in logged
    contexts = [json.loads(m) for m in re.findall(r'<script type="application/json" class="fb-data">(.*?)</script>', page)]
    assert contexts and all(len(c) == 2 and c[0]["title"] == "top-activating contexts" for c in contexts)
    act, focus, tokens, values = contexts[0][0]["rows"][0]  # activation, firing index, tokens as shown, their values
    assert len(tokens) == len(values) and values[focus] == pytest.approx(act, abs=0.01)
    assert "\n" not in page.split('class="fb-data">')[1].split("</script>")[0]  # one line: one Markdown HTML block
    images = re.findall(r"```\{image\} (img/main-\d+\.png)", page)
    assert images and all((generated / "features" / name).stat().st_size > 1000 for name in images)
    assert "Not available in this build" in (generated / "features" / "mlp.md").read_text()

    # written again: each histogram is the image rendered the first time, copied, not drawn again
    drawn = {name: (generated / "features" / name).read_bytes() for name in images}
    rendered = sorted(cache_dir("book-browser", "img").glob("*.png"))
    assert len(rendered) == len(images)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sae_paper.report.feature_plots.compact_histogram_figure", lambda *a, **k: pytest.fail("drawn again"))
        write_browser(generated, load_model=lambda name: pythia_random, log=lambda line: None)
    assert {name: (generated / "features" / name).read_bytes() for name in images} == drawn

    # the fragment cache gone: the page says so rather than running the model
    for path in SPEC.folder().glob("*.safetensors"):
        path.unlink()
    write_browser(generated, load_model=lambda name: pytest.fail("the model must not be loaded"), log=lambda line: None)
    assert "are not in the cache" in (generated / "features" / "main.md").read_text()


# --------------------------------------------------------------------------------------
# The chapter list and the claim anchors
# --------------------------------------------------------------------------------------


def test_chapter_list_follows_the_toc_with_titles_from_the_pages(tmp_path):
    book, notebooks = tmp_path / "book", tmp_path / "notebooks"
    (book / "generated" / "features").mkdir(parents=True)
    notebooks.mkdir()
    (book / "_toc.yml").write_text(textwrap.dedent("""\
        format: jb-book
        root: intro
        chapters:
          - file: generated/01_a
          - file: generated/features/index
            sections:
              - file: generated/features/main
          - file: generated/missing
        """))
    (notebooks / "01_a.py").write_text('# %% [markdown]\n# # Training\n#\n# *Section 2 and Appendix B of Cunningham et al. '
                                       '(2023), "Sparse ..."*\n\n# %%\nx = 1\n')
    (book / "generated" / "features" / "index.md").write_text("# Feature browser\n\nA card per feature. More text.\n")
    (book / "generated" / "features" / "main.md").write_text("# Main SAE\n\n<div>html</div>\n")
    assert toc_entries(book / "_toc.yml") == [("generated/01_a", 0), ("generated/features/index", 0),
                                              ("generated/features/main", 1), ("generated/missing", 0)]
    assert chapter_list(book, notebooks).splitlines() == [
        "- [Training](generated/01_a.ipynb): Section 2 and Appendix B",
        "- [Feature browser](generated/features/index.md): A card per feature",
        "  - [Main SAE](generated/features/main.md)",
        "- missing: not built yet",
    ]
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - glob: generated/*\n")
    with pytest.raises(SaePaperError, match="list files, not globs"):
        toc_entries(book / "_toc.yml")
    with pytest.raises(SaePaperError, match="has no '# title' line"):
        page_summary(book / "_toc.yml")


def test_every_recorded_claim_anchors_the_section_above_it():
    cells = [nbformat.v4.new_markdown_cell("# Title\n\nintro"),
             nbformat.v4.new_code_cell('board = claims.Scoreboard("nb")'),
             nbformat.v4.new_markdown_cell("## 1. First\n\ntext\n\n### 1.1 detail"),
             nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_code_cell('board.record("fig2-depth", *f)\nboard.record(\n    "fig8-ratio", *g)'),
             nbformat.v4.new_markdown_cell("no heading here"),
             nbformat.v4.new_code_cell("board.record('table1-first-five', 'x', 'not')\nboard.record(claim_id, *h)")]
    anchored = anchor_claim_sections(cells)
    assert anchored == {"fig2-depth": 2, "fig8-ratio": 2, "table1-first-five": 2}
    assert cells[2].source == "## 1. First\n\ntext\n\n(claim-fig2-depth)=\n(claim-fig8-ratio)=\n(claim-table1-first-five)=\n### 1.1 detail"
    assert cells[0].source == "# Title\n\nintro" and len(cells) == 7  # no cell added: error cell numbers hold


def test_every_notebook_records_its_claims_by_literal_id():
    """The scoreboard links each claim to the section that recorded it, found by :data:`RECORD_CALL`: an id passed as
    a name (``board.record(module.CLAIM, ...)``) gets no anchor and a dead link, which only the browser test saw."""
    from sae_paper.book.pages import RECORD_CALL
    from sae_paper.data.paths import repo_root

    for notebook in sorted((repo_root() / "notebooks").glob("*.py")):
        source = notebook.read_text()
        calls = re.findall(r"\bboard\.record\(", source)
        assert calls and len(RECORD_CALL.findall(source)) == len(calls), f"{notebook.name}: a claim id not literal"

def test_many_missing_histograms_are_drawn_by_a_pool_of_processes_into_the_same_images(tmp_path, monkeypatch):
    """Spawned workers draw the same bytes as this process; a job asked for again is copied, not drawn."""
    from sae_paper.analysis.feature_stats import TokenHistogram
    from sae_paper.book import histogram_images

    histograms = [TokenHistogram(torch.linspace(0, 1 + i, 4), (5, 7), ("a", "b", "other"),
                                 torch.tensor([[3, 1, 2], [0, 4, 1], [1, 0, 5 + i]])) for i in range(3)]
    pooled = [(h, f"feature {i}", tmp_path / f"pool-{i}.png") for i, h in enumerate(histograms)]
    monkeypatch.setattr(histogram_images, "POOL_FROM", 2)
    if len(os.sched_getaffinity(0)) > 1:
        monkeypatch.setattr("sae_paper.report.feature_plots.compact_histogram_figure",
                            lambda *a, **k: pytest.fail("drawn in this process, not by the pool"))  # workers: unpatched
    assert histogram_images.draw_histograms(pooled) == 3
    monkeypatch.undo()
    for path in cache_dir("book-browser", "img").glob("*.png"):
        path.unlink()
    here = [(h, title, tmp_path / f"here-{i}.png") for i, (h, title, _) in enumerate(pooled)]
    assert histogram_images.draw_histograms(here[:1]) == 1  # below POOL_FROM: drawn here
    assert histogram_images.draw_histograms(here) == 2  # the first is copied
    assert [p.read_bytes() for _, _, p in here] == [p.read_bytes() for _, _, p in pooled]
    assert len({p.read_bytes() for _, _, p in here}) == 3
