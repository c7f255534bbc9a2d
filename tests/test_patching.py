"""Feature patching (Section 4): known answers on toy problems and on the random Pythia.

Unit tier: a toy "model tail" (a linear readout of the residual stream) where the effect of
every feature is known; integration tier: the random-weight Pythia through the real
TransformerBridge, where lossless decompositions must reproduce the target exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sae_paper.analysis.ioi_prompts import final_logits, make_ioi_dataset
from sae_paper.analysis.patching import FeaturePatching, ModelTail, PatchingSetup, SetupsByLayer, kl_divergence
from sae_paper.analysis.patching_curves import (
    PAPER_THRESHOLDS,
    acdc,
    cost_to_reach,
    kl_levels,
    log_thresholds,
    patching_curve,
    threshold_sets,
)
from sae_paper.core.decompositions import SaeDecomposition, neuron_basis, random_directions
from sae_paper.core.sae import make_sae
from sae_paper.errors import SaePaperError

# --------------------------------------------------------------------------------------
# KL and thresholds
# --------------------------------------------------------------------------------------


def test_kl_is_hand_computed_and_in_the_papers_direction():
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # softmax: (1/4, 3/4)
    y = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # softmax: (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert kl_divergence(z, y).item() == pytest.approx(expected, rel=1e-12)
    # the authors' F.kl_div(log_softmax(y), log_softmax(z), log_target=True) is D_KL(z || y)
    authors = torch.nn.functional.kl_div(torch.log_softmax(y, -1), torch.log_softmax(z, -1), log_target=True, reduction="batchmean")
    assert kl_divergence(z, y).item() == pytest.approx(authors.item(), rel=1e-6)
    assert kl_divergence(y, z).item() != pytest.approx(expected, rel=1e-3)
    assert kl_divergence(z + 5.0, z).item() == pytest.approx(0.0, abs=1e-12)


def test_paper_thresholds_are_numpy_logspace():
    np.testing.assert_allclose(PAPER_THRESHOLDS, np.logspace(-5, 0, 50), rtol=1e-12)
    np.testing.assert_allclose(log_thresholds(50), np.logspace(-5, 0, 50), rtol=1e-12)
    with pytest.raises(SaePaperError, match="n >= 2"):
        log_thresholds(1)


# --------------------------------------------------------------------------------------
# ACDC on known set functions
# --------------------------------------------------------------------------------------


def _additive(weights: torch.Tensor):
    """KL(mask) = Σ of the weights of the features left un-patched; counts calls."""
    calls = {"sets": 0}

    def mean_kl(masks):
        calls["sets"] += len(masks)
        return ((~masks).double() * weights).sum(dim=1)

    return mean_kl, calls


def test_acdc_on_an_additive_problem_keeps_exactly_the_features_above_each_threshold():
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(40, generator=generator, dtype=torch.float64) ** 6
    mean_kl, calls = _additive(weights)
    thresholds = log_thresholds(12, 1e-4, 1.0)
    steps = acdc(mean_kl, torch.ones(40, dtype=torch.bool), thresholds, seed=1)
    expected = threshold_sets(weights, torch.ones(40, dtype=torch.bool), thresholds)
    for step, want in zip(steps, expected):
        assert torch.equal(step.mask, want)
        assert step.kl == pytest.approx(float(weights[~want].sum()), abs=1e-12)
    # memoised: a pass that changes nothing costs no call, so far fewer than 12 passes x 40
    assert calls["sets"] < 40 * 6


def test_acdc_keeps_one_of_two_redundant_features():
    # KL is 1 only if both features 0 and 1 are un-patched (either one is enough to fix it).
    def mean_kl(masks):
        return (~masks[:, 0] & ~masks[:, 1]).double()

    full = torch.ones(3, dtype=torch.bool)
    steps = acdc(mean_kl, full, [0.5], seed=0)
    assert int(steps[0].mask[:2].sum()) == 1 and not steps[0].mask[2]  # keeps one of the pair


# --------------------------------------------------------------------------------------
# A toy model tail: logits = (causal mean of the residual up to the last position) @ W
# --------------------------------------------------------------------------------------

D, POS, BATCH, VOCAB = 16, 6, 5, 11
PLANTED = (3, 7, 11)


def _toy_setup(*, identical: bool = False, seed: int = 0, readout_scale: torch.Tensor | None = None) -> PatchingSetup:
    generator = torch.Generator().manual_seed(seed)
    readout = torch.randn(D, VOCAB, generator=generator)
    if readout_scale is not None:
        readout = readout * readout_scale.unsqueeze(1)

    def tail(resid, lengths):
        last = torch.stack([resid[b, : int(n)].mean(dim=0) for b, n in enumerate(lengths)])
        return last @ readout

    base = torch.randn(BATCH, POS, D, generator=generator)
    target = base.clone() if identical else base + torch.randn(BATCH, POS, D, generator=generator)
    target[:, 0] = base[:, 0]  # position 0 (BOS) is the same in both prompts
    lengths = torch.tensor([6, 5, 6, 4, 6])
    return PatchingSetup(base, target, lengths, tail, layer=0)


def test_patching_every_feature_of_a_lossless_basis_gives_the_target_and_none_gives_the_base():
    setup = _toy_setup()
    for decomposition in (neuron_basis(D), random_directions(D, seed=2)):
        patching = FeaturePatching(setup, decomposition)
        result = patching.evaluate(torch.stack([torch.ones(D, dtype=torch.bool), torch.zeros(D, dtype=torch.bool)]))
        assert result.kl[0].item() == pytest.approx(0.0, abs=1e-10)
        assert result.kl[1].item() == pytest.approx(setup.kl_base(), rel=1e-9)
        rows = setup.rows(setup.target_resid) - setup.rows(setup.base_resid)
        assert result.edit_magnitude[0].item() == pytest.approx(rows.norm(dim=1).mean().item(), rel=1e-5)
        assert result.edit_magnitude[1].item() == 0.0


def test_identical_base_and_target_have_zero_kl_and_no_active_features():
    setup = _toy_setup(identical=True)
    patching = FeaturePatching(setup, neuron_basis(D))
    assert setup.kl_base() == pytest.approx(0.0, abs=1e-12)
    assert not patching.active.any()
    curve = patching_curve(patching, thresholds=log_thresholds(5))
    assert curve.n_active == 0 and all(p.kl == pytest.approx(0.0, abs=1e-12) for p in curve.points)


def test_position_zero_and_padding_are_never_patched():
    setup = _toy_setup()
    batch, pos = setup.positions
    assert (pos >= 1).all()
    assert all(int(p) < int(setup.lengths[int(b)]) for b, p in zip(batch, pos))
    assert len(batch) == int((setup.lengths - 1).sum())


@pytest.mark.parametrize("ordering,n_exact", [("attribution", 0), ("acdc", 6), ("acdc", D)])
def test_planted_features_come_first(ordering, n_exact):
    # The readout sees the planted coordinates strongly and the rest hardly at all; their
    # edits are the same size, so only the planted ones move the output.
    scale = torch.full((D,), 0.02)
    scale[list(PLANTED)] = 3.0
    setup = _toy_setup(readout_scale=scale, seed=1)
    patching = FeaturePatching(setup, neuron_basis(D), chunk=5)
    curve = patching_curve(patching, thresholds=log_thresholds(30, 1e-6, 1.0), ordering=ordering, n_exact=n_exact,
                           attribution_steps=4)
    assert set(curve.order[:3]) == set(PLANTED)
    # patching the three planted features gets close to the target; all the others, nowhere near
    three = [p for p in curve.points if p.n_features == 3]
    assert three and min(p.kl for p in three) < 0.05 * curve.kl_base
    assert curve.features_to_reach(0.05 * curve.kl_base) <= 3
    others = torch.ones(D, dtype=torch.bool)
    others[list(PLANTED)] = False
    assert patching.evaluate(others.unsqueeze(0)).kl.item() > 0.5 * curve.kl_base
    assert curve.points[0].n_features == 0 and curve.points[-1].n_features == D
    assert curve.kl_all == pytest.approx(0.0, abs=1e-10)


def test_attribution_sums_to_the_total_change_in_kl():
    setup = _toy_setup(seed=3)
    patching = FeaturePatching(setup, random_directions(D, seed=0))
    total = patching.evaluate(patching.active.unsqueeze(0)).kl.item() - setup.kl_base()
    assert patching.attribution(steps=16).sum().item() == pytest.approx(total, rel=0.02)


def test_sae_patching_keeps_the_base_reconstruction_error():
    setup = _toy_setup(seed=4)
    sae = make_sae("tied", D, 2 * D, seed=0)
    with torch.no_grad():
        sae.b.fill_(0.5)  # make most features fire, so that patching does something
    decomposition = SaeDecomposition(sae)
    patching = FeaturePatching(setup, decomposition)
    edit = patching.edits(torch.ones(1, 2 * D, dtype=torch.bool))[0]
    base_rows, target_rows = setup.rows(setup.base_resid), setup.rows(setup.target_resid)
    with torch.no_grad():
        expected = decomposition.decode(decomposition.encode(target_rows)) - decomposition.decode(decomposition.encode(base_rows))
    torch.testing.assert_close(edit, expected, rtol=1e-5, atol=1e-5)


def test_curve_comparisons():
    scale = torch.full((D,), 0.02)
    scale[list(PLANTED)] = 3.0
    setup = _toy_setup(readout_scale=scale, seed=1)
    neurons = patching_curve(FeaturePatching(setup, neuron_basis(D)), thresholds=log_thresholds(20, 1e-6, 1.0), n_exact=D)
    rotated = patching_curve(FeaturePatching(setup, random_directions(D, seed=5)), thresholds=log_thresholds(20, 1e-6, 1.0),
                             n_exact=D)
    levels = kl_levels([neurons, rotated], n_levels=4)
    assert levels and all(0 < level < setup.kl_base() for level in levels)
    costs = cost_to_reach([neurons, rotated], levels)
    # the basis aligned with what matters needs fewer features than a random rotation of it
    assert all(a <= b for a, b in zip(costs[neurons.name]["features"], costs[rotated.name]["features"]))
    assert costs[neurons.name]["features"][0] < costs[rotated.name]["features"][0]


def test_costs_are_read_off_the_lower_envelope_by_linear_interpolation():
    from sae_paper.analysis.patching_curves import CurvePoint, PatchingCurve

    points = (CurvePoint(0, 4.0, 0.0, None), CurvePoint(10, 2.0, 5.0, 0.1), CurvePoint(20, 1.0, 6.0, 0.01),
              CurvePoint(30, 1.2, 9.0, 0.001))  # the last point is worse than the one before: off the envelope
    curve = PatchingCurve("toy", 0, points, 40, 30, 4.0, 1.2, 4, 0.0, "attribution")
    assert curve.features_to_reach(3.0) == pytest.approx(5.0)
    assert curve.features_to_reach(1.5) == pytest.approx(15.0)
    assert curve.features_to_reach(4.0) == 0
    assert curve.features_to_reach(0.5) is None
    assert curve.edit_to_reach(1.5) == pytest.approx(5.5)


def test_bad_options_are_one_line_errors():
    patching = FeaturePatching(_toy_setup(), neuron_basis(D))
    with pytest.raises(SaePaperError, match="ordering must be one of"):
        patching_curve(patching, ordering="independent")


# --------------------------------------------------------------------------------------
# Integration: the random Pythia through TransformerBridge
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pythia_setup(pythia_random):
    data = make_ioi_dataset(pythia_random.tokenizer, 8, seed=0)
    return data, PatchingSetup.from_model(pythia_random, data, layer=2)


def test_model_tail_matches_a_full_forward_through_the_bridge(pythia_random, pythia_setup):
    data, setup = pythia_setup
    with torch.no_grad():
        full = final_logits(pythia_random(data.target_tokens), data.lengths)
        torch.testing.assert_close(setup.target_logits, full, rtol=1e-4, atol=1e-4)
        edited = setup.base_resid + 0.5 * torch.randn_like(setup.base_resid)
        tail = ModelTail(pythia_random, 2)
        torch.testing.assert_close(tail(edited, data.lengths), tail.reference(data.base_tokens, edited, data.lengths),
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(SaePaperError, match="layer 6 out of range"):
        ModelTail(pythia_random, 6)


def test_pythia_lossless_patching_reproduces_the_target(pythia_setup):
    _, setup = pythia_setup
    patching = FeaturePatching(setup, random_directions(512, seed=0))
    assert bool(patching.active.all())
    result = patching.evaluate(torch.stack([patching.active, torch.zeros(512, dtype=torch.bool)]))
    assert result.kl[0].item() == pytest.approx(0.0, abs=1e-9)
    assert result.kl[1].item() == pytest.approx(setup.kl_base(), rel=1e-4)
    assert setup.kl_base() > 0


def test_setups_by_layer_makes_each_layers_runs_once_and_as_from_model_does(pythia_random, pythia_setup):
    data, at_two = pythia_setup
    setups = SetupsByLayer(pythia_random, data)
    assert setups(2) is setups(2)
    assert setups(1) is not setups(2) and setups(1).layer == 1
    torch.testing.assert_close(setups(2).base_resid, at_two.base_resid, rtol=0, atol=0)
    torch.testing.assert_close(setups(2).target_logits, at_two.target_logits, rtol=0, atol=0)


def test_pythia_identical_prompts_give_zero_kl(pythia_random):
    data = make_ioi_dataset(pythia_random.tokenizer, 4, seed=2)
    base = PatchingSetup.from_model(pythia_random, data, layer=1)
    setup = PatchingSetup(base.base_resid, base.base_resid.clone(), data.lengths, base.tail, layer=1)
    assert setup.kl_base() == pytest.approx(0.0, abs=1e-12)
    patching = FeaturePatching(setup, neuron_basis(512))
    assert patching.evaluate(torch.ones(1, 512, dtype=torch.bool)).kl.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_smollm2_tail_and_lossless_patching(smollm2):
    data = make_ioi_dataset(smollm2.tokenizer, 6, seed=0)
    setup = PatchingSetup.from_model(smollm2, data, layer=12)
    with torch.no_grad():
        full = final_logits(smollm2(data.target_tokens), data.lengths)
    torch.testing.assert_close(setup.target_logits, full, rtol=1e-4, atol=1e-3)
    patching = FeaturePatching(setup, random_directions(576, seed=0))
    result = patching.evaluate(torch.stack([patching.active, torch.zeros(576, dtype=torch.bool)]))
    assert result.kl[0].item() == pytest.approx(0.0, abs=1e-6)
    assert result.kl[1].item() == pytest.approx(setup.kl_base(), rel=1e-4)
    assert setup.kl_base() > 1.0  # the indirect object changed: the model's prediction moves a lot
