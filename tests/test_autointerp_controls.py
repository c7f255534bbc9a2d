"""Notebook 02's random-model controls (issue 30, Heap et al. 2025): the ``controls`` parameter's refusals, the
controls' harvest through the runner's one list, the verdict on constructed summaries, and the controls' SAEs built,
α-matched and scored end to end on small random Pythias (integration) and in the smoke notebook (slow)."""

from __future__ import annotations

import json

import pytest

from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters import autointerp_control_verdicts as V
from sae_paper.chapters import autointerp_controls as C
from sae_paper.chapters.autointerp import AutointerpStudy
from sae_paper.errors import SaePaperError

L3, L9 = "resid_post.3", "resid_post.9"
RANDOM, REINIT = "smollm2-135m-random", "smollm2-135m-reinit-blocks"


@pytest.mark.parametrize("controls, error", [
    (["gpt2"], "'gpt2' is not a random-weight control model"),
    (["smollm2-135m"], "'smollm2-135m' is not a random-weight control model"),
    ([RANDOM, RANDOM], "a control is named twice"),
    ("smollm2-135m-random", "controls='smollm2-135m-random': must be a list"),
])
def test_bad_controls_are_refused_in_one_line(controls, error):
    with pytest.raises(SaePaperError, match=error) as raised:
        AutointerpStudy(controls=controls)
    assert "\n" not in str(raised.value)


def test_a_control_must_have_the_layers_scored_and_must_not_be_the_study_model():
    with pytest.raises(SaePaperError, match="pythia-70m-deduped-random has layers 0..5"):
        AutointerpStudy(controls=["pythia-70m-deduped-random"])  # SmolLM2's layers 3, 9, 14
    with pytest.raises(SaePaperError, match="'pythia-70m-deduped-random' is not a random-weight control model"):
        AutointerpStudy(model="pythia-70m-deduped-random", layers=(1, 2), main_layer=2, table1_layer=1,
                        controls=["pythia-70m-deduped-random"])
    assert AutointerpStudy(controls=[]).control_configs() == []


def test_control_configs_differ_from_the_trained_sae_only_in_the_model_and_reach_the_runners_harvest():
    from sae_paper.book.harvest import book_harvest_requests

    study = AutointerpStudy()
    configs = study.control_configs()
    assert [(c.model, c.layer) for c in configs] == [(m, layer) for m in (RANDOM, REINIT) for layer in study.layers]
    for config in configs:
        assert config.replace(model=study.model) == study.sae_config(config.layer)
    harvested = {(spec.model, spec.split, str(site)) for spec, site in book_harvest_requests({"02_autointerp":
                                                                                            study.parameters()})}
    assert {(m, split, f"resid_post.{layer}") for m in (RANDOM, REINIT) for layer in study.layers
            for split in ("train", "eval")} <= harvested


def test_the_runners_harvest_makes_every_fragment_pass_the_notebook_scores_once():
    """The runner's harvest runs notebook 02's fragment pool through its model and every control (same documents),
    so the notebook finds them cached and loads no model; a second harvest makes no pass."""
    from dataclasses import replace

    from sae_paper.analysis.autointerp.fragments import fragment_activations, missing_sites
    from sae_paper.book.harvest import book_fragment_requests, harvest_for_book

    default = AutointerpStudy()
    requests = book_fragment_requests({"02_autointerp": default.parameters()})
    resid = [C.Site("resid_post", layer) for layer in default.layers]
    assert [(spec.model, sites) for spec, sites in requests] == [(default.model, default.sites()), (RANDOM, resid),
                                                                 (REINIT, resid)]
    assert all(replace(spec, model=default.model) == default.fragment_spec() for spec, _ in requests)

    study = tiny_study()
    requests = book_fragment_requests({"02_autointerp": study.parameters()})
    assert all(missing_sites(spec, sites) == sites for spec, sites in requests)
    lines = [line for line in harvest_for_book({"02_autointerp": study.parameters()}) if line.startswith("fragments")]
    assert len(lines) == 2 and lines[0].startswith(f"fragments of {study.model}: 40 × 64 tokens, resid_post.1, resid_post.2")
    assert all(missing_sites(spec, sites) == [] for spec, sites in requests)
    assert not [line for line in harvest_for_book({"02_autointerp": study.parameters()}) if line.startswith("fragments")]

    def no_model():
        raise AssertionError("the notebook loaded a model although the harvest had made its fragment pass")

    fragments, acts = fragment_activations(None, study.fragment_spec(), study.sites(), get_model=no_model)
    assert fragments.n_fragments == 40 and acts[C.Site("resid_post", 2)].shape == (40, 64, 512)


def summary(site, method, mean, ci=0.05, n_scored=50) -> MethodSummary:
    return MethodSummary(method, site, n_scored, 0, 0, 0, mean, ci, 0.1, 0.05)


def scores(trained, random_model, reinit) -> list[MethodSummary]:
    """Summaries at layers 3 and 9: the trained SAE's means and each control SAE's."""
    return [summary(site, method, mean) for site, means in zip((L3, L9), zip(trained, random_model, reinit))
            for method, mean in zip(("sae", C.control_method(RANDOM, "sae"), C.control_method(REINIT, "sae")), means)]


@pytest.mark.parametrize("trained, random_model, reinit, verdict", [
    ((0.6, 0.5), (0.3, 0.3), (0.4, 0.35), "reproduced"),
    ((0.6, 0.5), (0.3, 0.3), (0.4, 0.47), "partly"),      # the reinit-blocks control overlaps at layer 9
    ((0.6, 0.5), (0.3, 0.3), (0.4, 0.62), "not"),         # ... and is clearly ahead there
    ((0.3, 0.3), (0.6, 0.6), (0.6, 0.6), "not"),
])
def test_the_verdict_is_symmetric_and_its_deciding_number_is_the_smallest_gap(trained, random_model, reinit, verdict):
    decision = V.random_model_finding(scores(trained, random_model, reinit), [3, 9], [RANDOM, REINIT],
                                      backend="token-list")
    assert decision.finding.verdict == verdict
    gaps = [(t - 0.05) - (c + 0.05) for t, r, i in zip(trained, random_model, reinit) for c in (r, i)]
    assert decision.deciding == pytest.approx(min(gaps))
    assert (decision.deciding > 0) == (verdict == "reproduced")
    assert "stand-in" in decision.finding.marks and "layer 9: trained" in decision.finding.ours


def test_a_control_with_no_scored_feature_is_not_comparable_and_a_missing_one_is_an_error():
    found = scores((0.6, 0.5), (0.3, 0.3), (0.4, 0.35))
    found[1] = summary(L3, C.control_method(RANDOM, "sae"), float("nan"), n_scored=0)
    decision = V.random_model_finding(found, [3, 9], [RANDOM, REINIT], backend="token-list")
    assert decision.finding.verdict == "not comparable" and "measurement-failed" in decision.finding.marks
    with pytest.raises(SaePaperError, match="control-random-model: no scores for smollm2-135m-random at layer 3"):
        V.random_model_finding(found[2:], [3, 9], [RANDOM, REINIT], backend="token-list")


def test_the_verdict_at_seeds_takes_the_majority():
    from sae_paper.report.seeds import decide_at_seeds

    study = AutointerpStudy(layers=(3, 9), main_layer=3, table1_layer=3, controls=[RANDOM, REINIT])
    per_seed = {0: scores((0.6, 0.5), (0.3, 0.3), (0.4, 0.35)), 1: scores((0.6, 0.5), (0.3, 0.3), (0.4, 0.47)),
                2: scores((0.6, 0.5), (0.3, 0.3), (0.4, 0.3))}
    decide = lambda s: V.control_decisions(s, study=study, backend="token-list")  # noqa: E731
    finding, seeds = decide_at_seeds(decide, per_seed, what=V.CONTROL_WHAT)["control-random-model"]
    assert finding.verdict == "reproduced" and seeds.verdicts == ("reproduced", "partly", "reproduced")


# --- integration: the controls built and scored on small random Pythias (each a few seconds) ---


def tiny_study(**changes) -> AutointerpStudy:
    values = dict(model="pythia-70m-deduped-random", layers=(1, 2), main_layer=2, table1_layer=1, n_tokens=620,
                  context_length=32, harvest_batch_size=16, eval_tokens=124, epochs=1, fig8_ratios=(2.0,), mlp_layer=None,
                  fragment_sources=("webtext",), n_fragments=40, fragment_budgets=(40,), n_features=4, n_seeds=2,
                  methods=("sae", "neurons", "random"), controls=("pythia-70m-deduped-random-seed1",))
    return AutointerpStudy(**{**values, **changes})


def test_control_saes_are_l0_matched_trained_and_scored_on_the_same_fragments(one_thread, monkeypatch):
    import functools

    from sae_paper.chapters.autointerp import make_backends, score_all, scorer
    from sae_paper.chapters.autointerp_plots import scores_with_controls
    from sae_paper.core.alpha_search import SearchSettings
    from sae_paper.core.pipeline import Run
    from sae_paper.data.models import load_model

    monkeypatch.setattr(C, "SEARCH", SearchSettings(rows=620, steps=6, tolerance=0.1))
    study = tiny_study()
    control = study.controls[0]
    get = functools.cache(load_model)
    C.prefetch_controls(study, get)
    searches = C.alpha_searches(study)
    assert set(searches) == {(control, 1), (control, 2)}
    assert all(s.trials[0][0] == Run(study.sae_config(1), progress=False).alpha for s in searches.values())
    frags = C.control_fragments(study, get)
    from sae_paper.analysis.autointerp import FragmentSpec, fragment_activations

    trained_frags, trained_acts = fragment_activations(None, FragmentSpec(study.model, 40, 64, ("webtext",), 0),
                                                       study.sites(), get_model=lambda: get(study.model))
    assert C.same_tokens(trained_frags, frags[control].fragments)  # one tokenizer: the very same tokens
    decomposed = {s: C.decompositions(study, searches, s, baselines=s == study.seed) for s in study.seeds()}
    assert [m for _, _, m in decomposed[0]] == ["sae", "neurons", "random"] * 2
    assert [m for _, _, m in decomposed[1]] == ["sae", "sae"]
    site = C.Site("resid_post", 1)
    sae0, sae1 = decomposed[0][(control, site, "sae")].sae, decomposed[1][(control, site, "sae")].sae
    assert sae0.alpha == sae1.alpha == pytest.approx(searches[(control, 1)].alpha)  # one α, every seed
    assert any(not (a == b).all() for a, b in zip(sae0.state_dict().values(), sae1.state_dict().values()))
    explain, simulate = make_backends(study)
    score = scorer(explain, simulate, study.scoring_config(), study.n_features)
    control_scores = C.score_controls(decomposed[0], score, frags)
    assert {s.method for s in control_scores} == {f"{control}/sae", f"{control}/neurons", f"{control}/random"}
    trained = [r.summary() for r in score_all({k: v for k, v in study.decompositions().items() if k[1] == "sae"}, score,
                                             trained_frags, trained_acts).values()]
    decision = V.control_decisions([*trained, *control_scores], study=study, backend="token-list")["control-random-model"]
    assert decision.finding.verdict in ("reproduced", "partly", "not", "not comparable")
    table = C.evaluation_table(study, searches)
    assert table.count(f"| {control} (") == 2 and "trials" in table
    assert len(scores_with_controls([*trained, *control_scores], study, title="t").axes) == 2


# --- the smoke notebook with both SmolLM2 controls (slow: trains the smoke SAEs in a scratch cache) ---


@pytest.mark.slow
def test_the_smoke_notebook_02_records_the_control_row_at_its_seeds(tmp_path):
    from test_book import ROOT, book_copy

    from sae_paper.book.runner import BookLayout, run_book

    book = book_copy(tmp_path)
    run_book("smoke", [], ["02_autointerp"], layout=BookLayout(ROOT / "notebooks", book, ROOT / "profiles"),
             build=False, log=lambda line: None)
    records = {r["claim_id"]: r for r in json.loads((book / "generated" / "claims" / "02_autointerp.json").read_text())["records"]}
    row = records["control-random-model"]
    assert row["verdict"] in ("reproduced", "partly", "not") and len(row["seed_verdicts"]) == 2
    assert "smollm2-135m-reinit-blocks" in row["note"]
