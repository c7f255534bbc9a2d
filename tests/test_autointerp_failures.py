"""Notebook 02 when the explainer or simulator fails: nothing crashes, every verdict says the measurement failed.

The author of issue 29 pointed notebook 02 (smoke profile) at a server where every call failed: the table showed
``nan ± nan``, every verdict was "not (+nan)", then Figure 8 raised on its log axis. Here the same path runs at
three sizes: the scorer against a real refusing port (nothing listens on 127.0.0.1:9), the verdicts and figures on
the summaries such a run gives, and (slow) the whole notebook through the book runner.
"""

from __future__ import annotations

import io
import json
import math
import re

import pytest
from matplotlib.figure import Figure

from sae_paper.analysis.autointerp import Cached, MethodSummary, load_fragments, make_backend, score_decomposition
from sae_paper.chapters import autointerp_verdicts as V
from sae_paper.chapters.autointerp import AutointerpStudy
from sae_paper.chapters.autointerp_plots import scores_by_layer, scores_by_ratio
from sae_paper.core.decompositions import neuron_basis
from sae_paper.errors import SaePaperError
from sae_paper.report import plots
from sae_paper.report.budget import BudgetPoint
from sae_paper.report.claims import Scoreboard
from sae_paper.report.scoreboard import render_scoreboard
from sae_paper.report.seeds import decide_at_seeds

REFUSED = "http://127.0.0.1:9/v1"
"""Port 9 (discard): nothing listens there, so every connection is refused at once."""
FAILURE = "explain: cannot reach http://127.0.0.1:9/v1"
STUDY = AutointerpStudy(model="pythia-70m-deduped-random", layers=(1, 2, 4), main_layer=2, table1_layer=1,
                        fig8_ratios=(1.0, 2.0), mlp_layer=0)


def failed(site: str, method: str, n_failed: int = 6, n_scored: int = 0, mean: float = math.nan) -> MethodSummary:
    ci = math.nan if n_scored < 2 else 0.05
    return MethodSummary(method, site, n_scored, n_failed, 0, 0, mean, ci, mean - 0.1, ci,
                         first_failure=FAILURE if n_failed else None)


def all_failed(methods=("sae", "neurons", "random", "pca", "ica")) -> list[MethodSummary]:
    rows = [failed(f"resid_post.{layer}", m) for layer in STUDY.layers for m in methods]
    return rows + [failed("resid_post.2", "sae-R1")]


def text_of(fig: Figure) -> list[str]:
    fig.savefig(io.BytesIO(), format="png")  # drawing is where a log axis with no positive value raises
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# --------------------------------------------------------------------------------------
# The scorer against a refusing port: every feature fails, counted, none scored
# --------------------------------------------------------------------------------------


def test_a_refusing_server_fails_every_feature_and_the_first_failure_is_quoted(pythia_random):
    fragments = load_fragments(pythia_random.tokenizer, n_fragments=40, length=16, sources=("webtext",))
    acts = (fragments.tokens[..., None] % 3 == 0).float()  # one feature, firing on every third token id
    backend = Cached(make_backend("openai-compatible", model="m", base_url=REFUSED), None)
    result = score_decomposition(neuron_basis(1), acts, fragments, backend, backend, method="sae", site="resid_post.1",
                                 n_features=1, features=[0])
    summary = result.summary()
    assert (summary.n_scored, summary.n_failed) == (0, 1) and math.isnan(summary.mean)
    assert summary.first_failure.startswith("explain: ") and "Connection refused" in summary.first_failure
    finding = V.mlp_finding(summary, failed("resid_post.1", "neurons"), backend="openai-compatible:m")
    assert finding.verdict == "not comparable" and V.MEASUREMENT_FAILED in finding.marks
    assert finding.ours.startswith(f"measurement failed: 0 of 7 features scored, 7 failed a call: {summary.first_failure}")


# --------------------------------------------------------------------------------------
# Verdicts: measurement failed, how often, with the first failure; partial failure still judged
# --------------------------------------------------------------------------------------


def test_every_feature_failing_makes_every_verdict_a_failed_measurement_at_every_seed(tmp_path):
    decide = lambda summaries: V.decisions(summaries, STUDY, backend="openai-compatible:m", n_layers=6)  # noqa: E731
    seeded = decide_at_seeds(decide, {0: all_failed(), 1: all_failed()}, what=V.WHAT)
    for claim, (finding, seeds) in seeded.items():
        assert finding.verdict == "not comparable" and seeds.verdicts == ("not comparable",) * 2, claim
        assert V.MEASUREMENT_FAILED in finding.marks and "nan" not in finding.ours, finding.ours
        assert f"failed a call: {FAILURE}; no method it compares scored a feature (seed 0; " in finding.ours
        assert finding.ours.endswith(": not measured at any of 2 seeds)") and seeds.spread.startswith("not measured")
    early = seeded["fig2-early-layers"][0].ours
    assert early.startswith("measurement failed: 0 of 30 features scored, 30 failed a call: ")

    board = Scoreboard("02_autointerp", folder=tmp_path, show=lambda badge: None)
    for claim, (finding, seeds) in seeded.items():
        board.record(claim, *finding, seeds=seeds)
    page = render_scoreboard(tmp_path)
    assert page.count('sb-m-measurement-failed" title="the measurement failed') == 4
    assert "*Measurement failed* on 4: the measurement failed" in page


def test_other_verdicts_say_the_measurement_failed_too():
    rows = all_failed(("sae", "neurons", "random", "pca", "ica", "topk-pca", "topk-ica"))
    topk = V.topk_finding(rows, STUDY.layers, {1: 3, 2: 3, 4: 3}, backend="b")
    nan = dict.fromkeys(V.PAPER_TABLE2, math.nan)
    moments = V.moments_finding(nan, 18, backend="b", summaries=[r for r in rows if r.method == "sae"])
    assert moments.ours.startswith("measurement failed: 0 of 18 features scored, 18 failed a call: explain: ")
    assert "fewer than 2 SAE features scored" in moments.ours
    table1 = V.table1_finding([(0, None, None), (1, None, None)], "resid_post.1", backend="b")
    for finding in (topk, moments):
        assert finding.verdict == "not comparable" and finding.marks == (V.MEASUREMENT_FAILED,), finding
    assert "none of our first features scored" in table1.note and "nan" not in table1.note


def test_partial_failure_is_judged_on_the_features_that_scored_and_counts_the_rest():
    rows = [failed("resid_post.1", "sae", n_failed=2, n_scored=4, mean=0.6),
            *(failed("resid_post.1", m, n_failed=1, n_scored=5, mean=0.2) for m in ("neurons", "pca"))]
    decision = V.early_layers_finding(rows, [1], backend="b")
    assert decision.finding.verdict == "reproduced" and decision.deciding > 0
    assert "4 failed call(s) excluded" in decision.finding.note and V.MEASUREMENT_FAILED not in decision.finding.marks
    one_empty = [*rows[:2], failed("resid_post.1", "pca")]  # one baseline with no score: the rule cannot compare it
    finding = V.early_layers_finding(one_empty, [1], backend="b").finding
    assert finding.verdict == "not comparable"
    assert finding.ours.startswith("measurement failed: 9 of 18 features scored, 9 failed a call: ")
    assert finding.ours.endswith("; no score for PCA at resid_post.1")


# --------------------------------------------------------------------------------------
# Figures: "no scores" in the axes instead of raising
# --------------------------------------------------------------------------------------


def test_figures_with_no_score_say_so_instead_of_raising():
    rows = all_failed()
    layer = scores_by_layer(rows, STUDY.layers, ["sae", "neurons"], title="Figure 2")
    assert text_of(layer) == ["no scores"]
    ratio = scores_by_ratio({1.0: rows[-1], 2.0: rows[5]}, rows[6:10], title="Figure 8")
    assert text_of(ratio) == ["no scores"]
    budget = plots.budget_sensitivity({"fig8-ratio": [BudgetPoint(40, math.nan), BudgetPoint(60, math.nan)]},
                                      unit="fragments", title="t", ylabel={}, default=60)
    assert text_of(budget) == ["no scores"]
    scored = [failed("resid_post.1", "sae", n_scored=4, mean=0.5), failed("resid_post.1", "neurons", n_scored=4, mean=0.2)]
    assert text_of(scores_by_ratio({2.0: scored[0]}, scored[1:], title="Figure 8")) == []  # scores: drawn, no text


# --------------------------------------------------------------------------------------
# Parameters no verdict can use are refused before anything runs
# --------------------------------------------------------------------------------------


def test_parameters_no_verdict_can_use_are_refused_in_one_line():
    with pytest.raises(SaePaperError, match="no verdict without a baseline") as refused:
        AutointerpStudy(methods=["sae"])
    assert "\n" not in str(refused.value)
    with pytest.raises(SaePaperError, match="no verdict without a baseline"):
        AutointerpStudy(methods=["sae", "topk-pca"])
    with pytest.raises(SaePaperError, match="Figure 8 needs at least one ratio"):
        AutointerpStudy(fig8_ratios=[])
    assert AutointerpStudy(methods=["sae", "pca"]).methods == ("sae", "pca")
    with pytest.raises(SaePaperError, match="the openai-compatible simulator needs simulator_model"):
        AutointerpStudy(explainer="openai-compatible", explainer_model="m", simulator="openai-compatible")
    assert AutointerpStudy(explainer="openai-compatible", explainer_model="m").explainer_model == "m"


# --------------------------------------------------------------------------------------
# The whole notebook, every call failing (slow: trains the smoke SAEs in a scratch cache)
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_notebook_02_with_every_call_failing_finishes_and_the_scoreboard_says_why(tmp_path):
    from test_book import ROOT, book_copy

    from sae_paper.book.runner import BookLayout, run_book

    book = book_copy(tmp_path)
    overrides = ["explainer=openai-compatible", "simulator=openai-compatible", f"base_url={REFUSED}",
                 "explainer_model=m", "simulator_model=m"]
    result = run_book("smoke", overrides, ["02_autointerp"], layout=BookLayout(ROOT / "notebooks", book, ROOT / "profiles"),
                      build=False, log=lambda line: None)
    assert result.notebooks == ["02_autointerp"]
    records = {r["claim_id"]: r for r in json.loads((book / "generated" / "claims" / "02_autointerp.json").read_text())["records"]}
    for claim in ("fig2-early-layers", "fig2-depth", "fig9-random-only", "fig8-ratio", "fig18-topk", "table2-moments",
                  "c3-mlp-interp"):
        assert records[claim]["verdict"] == "not comparable" and "measurement-failed" in records[claim]["marks"], claim
        assert records[claim]["ours"].startswith("measurement failed: 0 of "), records[claim]["ours"]
        assert re.search(r"failed a call(, \d+ skipped)?: explain: .*Connection refused", records[claim]["ours"])
    assert "measurement failed" in (book / "generated" / "scoreboard.md").read_text()


# --------------------------------------------------------------------------------------
# The scoring parameter: detection and fuzzing score an AUROC (0.5 = chance), with no random-only score
# --------------------------------------------------------------------------------------


def scored_by(scoring: str, site: str, method: str, mean: float) -> MethodSummary:
    return MethodSummary(method, site, 20, 0, 0, 0, mean, 0.03, math.nan, math.nan, scoring=scoring)


def test_the_scoring_parameter_reaches_the_scorer_and_an_unknown_one_is_refused():
    from sae_paper.analysis.autointerp.classify import SCORINGS
    from sae_paper.chapters.autointerp import SCORING_WORDS

    assert AutointerpStudy().scoring_config().scoring == "simulation"
    assert AutointerpStudy(scoring="fuzzing").reseeded(1).scoring_config().scoring == "fuzzing"
    assert set(SCORING_WORDS) == set(SCORINGS)
    with pytest.raises(SaePaperError, match="parameter scoring='guessing': must be one of simulation, detection"):
        AutointerpStudy(scoring="guessing")


@pytest.mark.parametrize("scoring", ["detection", "fuzzing"])
def test_under_detection_or_fuzzing_figure_9_is_not_comparable_and_the_rest_judge_the_auroc(scoring):
    rows = [scored_by(scoring, f"resid_post.{layer}", m, mean) for layer in STUDY.layers
            for m, mean in (("sae", 0.8), ("neurons", 0.6), ("random", 0.55), ("pca", 0.6), ("ica", 0.62))]
    rows += [scored_by(scoring, "resid_post.2", "sae-R1", 0.75)]
    found = V.decisions(rows, STUDY, backend="token-list", n_layers=6)
    random_only = found["fig9-random-only"].finding
    assert random_only.verdict == "not comparable" and math.isnan(found["fig9-random-only"].deciding)
    assert random_only.ours == f"no random-only score under {scoring} scoring"
    assert V.MEASUREMENT_FAILED not in random_only.marks  # not comparable by the scoring, not by a failure
    early = found["fig2-early-layers"].finding
    assert early.verdict == "reproduced" and f"scored by {scoring}: AUROC, 0.5 = chance" in early.note
    assert found["fig8-ratio"].finding.verdict == "reproduced"

    figure = scores_by_layer(rows, STUDY.layers, ["sae", "neurons"], title="Figure 9", random_only=True, scoring=scoring)
    assert text_of(figure) == [f"no random-only score under {scoring} scoring"]
    figure = scores_by_layer(rows, STUDY.layers, ["sae", "neurons"], title="Figure 2", scoring=scoring)
    assert text_of(figure) == [] and "mean AUROC, chance 0.5" in figure.axes[0].get_ylabel()
    chance = [line.get_ydata() for line in figure.axes[0].get_lines() if len(set(line.get_ydata())) == 1
              and len(line.get_ydata()) == 2]
    assert [list(y) for y in chance] == [[0.5, 0.5]]  # the chance line is AUROC's 0.5, not the correlation's 0
