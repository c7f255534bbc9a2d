"""Notebook 02's feature-stability control (chapters/seed_stability.py): the chance bound, the pairs, the
verdict at each seed, the table and figure, and the SAEs it reads back."""

from __future__ import annotations

import math

import pytest
import torch

from sae_paper.chapters import seed_stability as S
from sae_paper.core.sae import make_sae
from sae_paper.core.stability import DEFAULT_BIN_EDGES, random_unit_directions
from sae_paper.errors import SaePaperError
from sae_paper.report.seeds import decide_at_seeds

EDGES = torch.tensor(DEFAULT_BIN_EDGES, dtype=torch.float64)


def pair(shared: float, *, seed: int = 0, other: int = 1, sae: str = "layer 3", n: int = 1000,
         random_shared: float = 0.0) -> S.PairStability:
    counts = torch.zeros(len(DEFAULT_BIN_EDGES) - 1, dtype=torch.int64)
    return S.PairStability(sae, seed, other, n, shared, 0.5, random_shared, 0.14, counts, counts, EDGES)


def test_wilson_upper_bound_by_hand():
    # 50 of 100: the textbook Wilson interval is (0.4038, 0.5962); 0 of n: z² / (n + z²).
    assert S.wilson_upper(0.5, 100, 1.96) == pytest.approx(0.596170, abs=1e-6)
    assert S.wilson_upper(0.0, 100, 1.96) == pytest.approx(1.96**2 / (100 + 1.96**2), rel=1e-12)
    assert S.wilson_upper(1.0, 10, 1.96) == 1.0
    with pytest.raises(SaePaperError, match="fraction in"):
        S.wilson_upper(0.1, 0, 1.96)


def test_the_margin_is_the_random_figures_bound_and_decides_both_sides():
    bound = 1.96**2 / (1000 + 1.96**2)  # random directions share 0 of 1,000 features
    assert pair(0.0).chance_bound == pytest.approx(bound)
    assert pair(bound + 1e-4).gap > 0 > pair(bound - 1e-4).gap  # one bound, either side of it


@pytest.mark.parametrize(("shares", "verdict"), [((0.6, 0.4, 0.5), "reproduced"), ((0.6, 0.0, 0.5), "partly"),
                                                 ((0.001, 0.0, 0.002), "not")])
def test_each_verdict_from_constructed_shares(shares, verdict):
    pairs = [pair(s, sae=f"layer {i}") for i, s in enumerate(shares)]
    decision = S.seed_stability_finding(pairs)
    assert decision.finding.verdict == verdict
    assert (decision.deciding > 0) == (verdict == "reproduced")
    assert decision.deciding == pytest.approx(min(shares) - pair(0.0).chance_bound)
    assert "rule control-seed-stability" in decision.finding.note


def test_a_seeds_verdict_takes_only_that_seeds_pairs():
    with pytest.raises(SaePaperError, match="one seed's pairs"):
        S.seed_stability_finding([pair(0.5, seed=0, other=1), pair(0.5, seed=1, other=0)])
    with pytest.raises(SaePaperError, match="one seed's pairs"):
        S.seed_stability_finding([])


def test_decided_at_seeds_with_their_agreement():
    # seed 2's features recur nowhere (e.g. its SAEs died): 2 of 3 seeds reproduce, the majority decides.
    pairs = [pair(0.0 if s == 2 else 0.5, seed=s, other=o) for s in range(3) for o in range(3) if o != s]
    seeded = decide_at_seeds(S.decisions, S.stability_inputs(pairs, (0, 1, 2)), what=S.WHAT)
    finding, summary = seeded[S.CLAIM]
    assert finding.verdict == "reproduced" and summary.verdicts == ("reproduced", "reproduced", "not")
    assert summary.agreement.startswith("seed-dependent (2/3 reproduced")


def test_an_sae_against_itself_recurs_and_two_initialisations_do_not():
    trained = make_sae("untied", 64, 256, seed=0).feature_directions()
    directions = {"same": {0: trained, 1: trained[torch.randperm(256)]},
                  "unrelated": {0: trained, 1: make_sae("untied", 64, 256, seed=1).feature_directions()}}
    pairs = S.stability_pairs(directions)
    assert [(p.sae, p.seed, p.other) for p in pairs] == [("same", 0, 1), ("same", 1, 0), ("unrelated", 0, 1),
                                                         ("unrelated", 1, 0)]
    same, unrelated = pairs[0], pairs[2]
    assert same.shared == 1.0 and same.mean_best == pytest.approx(1.0, abs=1e-6)
    assert unrelated.shared == same.random_shared == 0.0
    assert abs(unrelated.mean_best - unrelated.random_mean_best) < 0.03  # both ~0.39 for 256 directions in 64 dims
    assert int(same.counts.sum()) == int(same.random_counts.sum()) == 256
    # the random sets are those of their seeds, whatever the SAE: one per shape and seed
    torch.testing.assert_close(pairs[0].random_counts, pairs[2].random_counts)
    assert S.seed_stability_finding([same]).finding.verdict == "reproduced"
    assert S.seed_stability_finding([unrelated]).finding.verdict == "not"


def test_pairs_refuse_one_seed_and_mismatched_shapes():
    a = random_unit_directions(8, 4, seed=0)
    with pytest.raises(SaePaperError, match="at least two seeds"):
        S.stability_pairs({"x": {0: a}})
    with pytest.raises(SaePaperError, match="shapes"):
        S.stability_pairs({"x": {0: a, 1: random_unit_directions(9, 4, seed=1)}})


def test_table_has_one_row_per_pair_of_seeds_both_ways():
    pairs = [pair(0.25, seed=0, other=1), pair(0.75, seed=1, other=0), pair(0.5, seed=0, other=2),
             pair(0.5, seed=2, other=0)]
    rows = S.stability_table(pairs).splitlines()[2:]
    assert len(rows) == 2
    assert rows[0].startswith("| layer 3 | 0, 1 | 1,000 | 25.0% | 75.0% | 0.500 | 0.0% | 0.140 |")


def test_figure_has_a_labelled_panel_per_sae():
    trained = make_sae("untied", 16, 32, seed=0).feature_directions()
    pairs = S.stability_pairs({f"layer {i}": {0: trained, 1: trained.flip(0)} for i in range(5)})
    fig = S.stability_figure(pairs, title="t")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5 and len(fig.axes) == 6  # a 2 × 3 grid, one panel hidden
    assert all(ax.get_xlabel() == "best-match cosine, other seed" for ax in visible)
    assert visible[0].get_ylabel() == "share of features" and visible[0].get_legend() is not None
    with pytest.raises(SaePaperError, match="no SAE"):
        S.stability_figure([], title="t")


def test_seeded_saes_reads_every_sae_the_notebook_trains_at_each_seed(monkeypatch):
    from sae_paper.chapters.autointerp import AutointerpStudy

    study = AutointerpStudy(model="pythia-70m-deduped-random", layers=(1, 2), main_layer=2, table1_layer=1,
                            fig8_ratios=(0.5, 2.0), n_seeds=2)
    monkeypatch.setattr(S, "Run", _fake_run(asked := []))
    directions = S.seeded_saes(study, S.autointerp_saes)
    assert list(directions) == ["layer 1", "layer 2", "layer 2, R = 0.5"]
    assert {name: sorted(by_seed) for name, by_seed in directions.items()} == {n: [0, 1] for n in directions}
    # exactly the SAEs decompositions() scores at each seed, seed by seed
    assert asked == [study.reseeded(s).sae_config(layer, ratio) for s in (0, 1)
                     for layer, ratio in ((1, None), (2, None), (2, 0.5))]
    assert directions["layer 2, R = 0.5"][1].shape == (256, 512)
    assert not torch.equal(directions["layer 1"][0], directions["layer 1"][1])
    assert math.isclose(float(directions["layer 1"][0].norm(dim=1).mean()), 1.0, rel_tol=1e-5)


def test_seeded_saes_reads_notebook_03s_main_layer_dictionaries(monkeypatch):
    from sae_paper.chapters.ioi import IoiStudy, LayerDictionaries

    study = IoiStudy(model="pythia-70m-deduped-random", layer=2, layers=(1, 2), alphas=(0.0, 8.6e-4),
                     fig17_alphas=(8.6e-4,), n_seeds=3)
    monkeypatch.setattr(S, "Run", _fake_run(asked := []))
    directions = S.seeded_saes(study, S.ioi_saes)
    assert list(directions) == ["layer 2, α=0 dictionary", "layer 2, SAE α=0.00086"]
    # the dictionaries reseeded_curves patches at each seed
    assert asked == [run.config for s in (0, 1, 2) for run in LayerDictionaries(study.reseeded(s), 2).runs.values()]


def _fake_run(asked: list):
    """A stand-in for :class:`~sae_paper.core.pipeline.Run` that records the configs it is asked for and gives an
    initialised SAE of their shape and seed (no training)."""

    class FakeRun:
        def __init__(self, config, progress):
            self.config = config

        def sae(self):
            asked.append(self.config)
            return make_sae("tied", 512, int(512 * self.config.ratio), seed=self.config.seed)

    return FakeRun
