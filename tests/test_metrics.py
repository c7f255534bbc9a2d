"""Reconstruction metrics: FVU, L0, alive features (sae_paper.core.metrics, top part)."""

from __future__ import annotations

import pytest
import torch

from sae_paper.core.metrics import alive_dead, fvu, reconstruction_stats
from sae_paper.core.sae import make_sae
from sae_paper.errors import SaePaperError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fvu_of_a_perfect_reconstruction_is_zero():
    x = torch.randn(50, 6)
    assert fvu(x, x.clone()) == 0.0


def test_fvu_of_predicting_the_mean_is_one():
    x = torch.randn(50, 6, dtype=torch.float64) * torch.arange(1, 7) + 100.0
    assert fvu(x, x.mean(dim=0).expand_as(x)) == pytest.approx(1.0, abs=1e-12)


def test_fvu_matches_hand_computation():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # per-dim means (1, 2); Σ(x − x̄)² = 1 + 1 + 1 + 1 = 4
    x_hat = torch.tensor([[0.0, 2.0], [1.0, 3.0]])  # Σ(x − x̂)² = 0 + 1 + 1 + 0 = 2
    assert fvu(x, x_hat) == pytest.approx(0.5, rel=1e-15)


def test_fvu_refuses_mismatched_shapes_and_constant_data():
    with pytest.raises(SaePaperError, match="same"):
        fvu(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(SaePaperError, match="zero variance"):
        fvu(torch.ones(3, 2), torch.zeros(3, 2))


def test_streaming_stats_equal_one_shot_over_concatenated_data():
    sae = make_sae("tied", 10, 30, seed=3).double()
    with torch.no_grad():
        sae.b.normal_(0, 0.5)
    # a large offset against a small spread is where a naive streaming variance cancels
    x = torch.randn(1000, 10, dtype=torch.float64) * 0.1 + 50.0
    sizes = [1, 7, 300, 92, 600]
    stats = reconstruction_stats(sae, torch.split(x, sizes), alive_threshold=5)

    codes = sae.encode(x)
    fire_counts = (codes > 0).sum(dim=0)
    assert stats.n_rows == 1000
    assert stats.fvu == pytest.approx(fvu(x, sae.decode(codes)), rel=1e-10)
    assert stats.mean_l0 == pytest.approx((codes > 0).sum(dim=1).double().mean().item(), rel=1e-12)
    assert torch.equal(stats.fire_counts, fire_counts)
    assert (stats.alive, stats.dead) == ((fire_counts > 5).sum().item(), (fire_counts <= 5).sum().item())


def test_stats_cast_batches_to_the_sae_dtype():
    sae = make_sae("tied", 4, 8, seed=1)
    x = torch.randn(20, 4, dtype=torch.float64)
    stats = reconstruction_stats(sae, [x[:10], x[10:]])
    assert stats.fvu == pytest.approx(fvu(x.float(), sae(x.float()).x_hat), rel=1e-5)


def test_alive_means_fired_more_than_threshold_times():
    """Features are the two coordinates (M = I, b = 0): feature 0 fires on 11 rows, feature 1 on 10."""
    sae = make_sae("tied", 2, 2)
    with torch.no_grad():
        sae.M.copy_(torch.eye(2))
    x = torch.zeros(25, 2)
    x[:11, 0] = 1.0
    x[5:15, 1] = 2.0
    x[20:, :] = -1.0
    stats = reconstruction_stats(sae, [x], alive_threshold=10)
    assert stats.fire_counts.tolist() == [11, 10]
    assert (stats.alive, stats.dead) == (1, 1)
    assert stats.mean_l0 == pytest.approx(21 / 25)
    # only the five (-1, -1) rows are not reconstructed: Σ(x − x̂)² = 5 · 2 = 10.
    # column 0: mean 6/25, Σ(x − x̄)² = 16 − 25 · 0.24² = 14.56; column 1: mean 15/25, 45 − 25 · 0.6² = 36
    assert stats.fvu == pytest.approx(10 / (14.56 + 36), rel=1e-6)
    assert alive_dead(torch.tensor([0, 10, 11, 500]), 10) == (2, 2)


def test_stats_refuse_no_data():
    with pytest.raises(SaePaperError, match="no activations"):
        reconstruction_stats(make_sae("tied", 4, 8), [])
