"""Verdicts at several seeds: the seed plumbing (another seed, another SAE, on the same cached activations; the
same seed, the same bytes) and how per-seed verdicts become the headline (sae_paper.report.seeds)."""

from __future__ import annotations

import pytest

from sae_paper.chapters.autointerp import AutointerpStudy
from sae_paper.chapters.case_studies import CaseStudy
from sae_paper.chapters.ioi import IoiStudy
from sae_paper.core.config import RunConfig
from sae_paper.errors import SaePaperError
from sae_paper.report.claims import Scoreboard, read_records
from sae_paper.report.finding import Finding
from sae_paper.report.scoreboard import render_scoreboard, scoreboard_rows
from sae_paper.report.seeds import SeedRun, combine_seeds, seed_table


def finding(verdict: str, ours: str = "x") -> Finding:
    return Finding(ours, verdict, "rule")


# --- the plumbing -------------------------------------------------------------------------


def tiny_run(monkeypatch, pythia_random, **changes):
    from sae_paper.core import pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda name, device=None: pythia_random)
    fields = dict(model="pythia-70m-deduped-random", layer=1, source="webtext", n_tokens=300, eval_tokens=120,
                  context_length=24, harvest_batch_size=4, epochs=2, batch_size=64, checkpoint_every=0)
    return pipeline.Run(RunConfig(**{**fields, **changes}), progress=False)


def test_two_seeds_train_different_saes_on_the_same_cached_activations(monkeypatch, pythia_random, one_thread):
    from sae_paper.core import pipeline

    first = tiny_run(monkeypatch, pythia_random, seed=0)
    sae0 = first.sae()
    folder = first.activations("train").folder

    def no_harvest(*args, **kwargs):
        raise AssertionError("another seed harvested its activations again")

    monkeypatch.setattr(pipeline, "harvest", no_harvest)
    second = tiny_run(monkeypatch, pythia_random, seed=1)
    sae1 = second.sae()
    assert second.activations("train").folder == folder and second.sae_dir != first.sae_dir
    assert not sae0.feature_directions().detach().allclose(sae1.feature_directions().detach())  # another initialisation and batch order


def test_the_same_seed_gives_the_same_bytes(monkeypatch, pythia_random, one_thread, tmp_path):
    from sae_paper.data import paths

    run = tiny_run(monkeypatch, pythia_random, seed=3)
    run.sae()
    weights = (run.sae_dir / "sae.safetensors").read_bytes()
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "another-cache"))  # a fresh cache: harvest and train again
    again = tiny_run(monkeypatch, pythia_random, seed=3)
    assert not again.sae_dir.exists()
    again.sae()
    assert (again.sae_dir / "sae.safetensors").read_bytes() == weights


def test_a_reseeded_study_keeps_its_text_and_changes_its_samples():
    study = AutointerpStudy(seed=0, n_seeds=3)
    assert study.seeds() == (0, 1, 2)
    other = study.reseeded(2)
    for layer in study.layers:
        base, moved = study.sae_config(layer), other.sae_config(layer)
        assert moved.seed == 2 and base.seed == 0
        assert moved.text_seed == base.text_seed == 0  # the same harvested text
        assert moved.replace(seed=0) == base  # nothing else changes
    assert other.scoring_config().seed == 2 and study.scoring_config().seed == 0  # features and fragments drawn anew
    ioi = IoiStudy(seed=5, n_seeds=2)
    assert ioi.seeds() == (5, 6) and ioi.reseeded(6).config(ioi.layer, 0.01).text_seed == 5
    case = CaseStudy(n_seeds=1)
    assert case.seeds() == (0,) and case.reseeded(1).main_config().replace(seed=0) == case.main_config()


def test_a_seed_free_ioi_curve_is_shared_by_every_seed_unless_acdc_draws_an_order():
    study = IoiStudy(seed=0, n_seeds=3)
    keys = {study.reseeded(s).curve_key(12, "pca-same-activations") for s in study.seeds()}
    assert len(keys) == 1  # attribution ordering: the seed cannot change the curve of the same decomposition
    acdc = IoiStudy(seed=0, n_seeds=3, ordering="acdc", n_exact=10)
    assert len({acdc.reseeded(s).curve_key(12, "pca-same-activations") for s in acdc.seeds()}) == 3
    assert study.curve_key(12, "a") != study.curve_key(12, "b") != study.curve_key(6, "b")


@pytest.mark.parametrize("n_seeds", [0, -1, 1.5, True])
def test_n_seeds_must_be_a_positive_integer(n_seeds):
    with pytest.raises(SaePaperError, match=f"02_autointerp parameter n_seeds={n_seeds!r}: must be a positive integer"):
        AutointerpStudy(n_seeds=n_seeds)


# --- the headline -----------------------------------------------------------------------


def test_agreeing_seeds_give_their_verdict_and_the_spread():
    found, summary = combine_seeds([SeedRun(0, finding("partly", "m 0.20"), 0.20), SeedRun(1, finding("partly"), 0.10),
                                    SeedRun(2, finding("partly"), 0.30)], what="margin")
    assert found.verdict == "partly" and summary.agreement == "3/3 seeds agree" and summary.agrees
    assert found.ours.startswith("m 0.20 (seed 0; margin: +0.2 (+0.1 to +0.3 over 3 seeds))")
    assert summary.values == (0.2, 0.1, 0.3)


def test_the_majority_decides_and_the_row_says_which_seed_differs():
    runs = [SeedRun(0, finding("reproduced", "first"), 0.3), SeedRun(1, finding("partly", "second"), 0.1),
            SeedRun(2, finding("partly", "third"), 0.12)]
    found, summary = combine_seeds(runs, what="margin")
    assert found.verdict == summary.verdict == "partly"
    assert found.ours.startswith("second (seed 1;")  # the first seed that gives the majority's verdict
    assert summary.agreement == "seed-dependent (2/3 partly; seed 0: reproduced)"


@pytest.mark.parametrize("verdicts,expected", [
    (("reproduced", "not"), "not"),
    (("partly", "reproduced"), "partly"),
    (("reproduced", "partly", "not"), "not"),
    (("not comparable", "not comparable"), "not comparable"),
])
def test_a_tie_goes_to_the_less_favourable_verdict(verdicts, expected):
    _, summary = combine_seeds([SeedRun(i, finding(v), 0.0) for i, v in enumerate(verdicts)], what="x")
    assert summary.verdict == expected


def test_bad_seed_runs_are_refused():
    with pytest.raises(SaePaperError, match="needs at least one seed's finding"):
        combine_seeds([], what="x")
    with pytest.raises(SaePaperError, match=r"seeds must be distinct, got \[1, 1\]"):
        combine_seeds([SeedRun(1, finding("not"), 0.0), SeedRun(1, finding("not"), 0.0)], what="x")
    with pytest.raises(SaePaperError, match="unknown verdict"):
        combine_seeds([SeedRun(1, finding("maybe"), 0.0)], what="x")


def test_seed_fields_reach_the_scoreboard_page_and_its_json(tmp_path):
    runs = [SeedRun(0, finding("partly"), 0.2), SeedRun(1, finding("not"), -0.1), SeedRun(2, finding("partly"), 0.1)]
    found, summary = combine_seeds(runs, what="SAE − best baseline")
    board = Scoreboard("02_autointerp", folder=tmp_path, show=lambda badge: None)
    board.record("fig2-early-layers", *found, seeds=summary)
    with pytest.raises(SaePaperError, match="is not the seeds' majority 'partly'"):
        board.record("fig2-early-layers", found.ours, "reproduced", found.note, seeds=summary)
    records = read_records(tmp_path)
    row = next(r for r in scoreboard_rows(records, board.claims) if r["id"] == "fig2-early-layers")
    assert row["seeds"] == (0, 1, 2) and row["seed_verdicts"] == ("partly", "not", "partly")
    assert row["seed_agreement"] == "seed-dependent (2/3 partly; seed 1: not)" and row["deciding"] == "SAE − best baseline"
    assert row["deciding_spread"] == "+0.0667 (-0.1 to +0.2 over 3 seeds)"
    page = render_scoreboard(tmp_path, board.claims)
    assert "seed-dependent (2/3 partly; seed 1: not)" in page and "seed 1: not (-0.1)" in page
    assert "| fig2-early-layers | SAE − best baseline | partly (+0.200) | not (-0.100) | partly (+0.100) |" in \
        seed_table({"fig2-early-layers": (found, summary)})
