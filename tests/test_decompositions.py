"""Every decomposition reconstructs through the same interface; patching directions are exact."""

from __future__ import annotations

import pytest
import torch

from sae_paper.core.decompositions import (
    SaeDecomposition,
    TopK,
    fit_ica,
    fit_pca,
    interpretable_codes,
    neuron_basis,
    random_directions,
)
from sae_paper.core.sae import make_sae
from sae_paper.data.activations import InMemoryActivations
from sae_paper.errors import SaePaperError


@pytest.fixture
def data():
    mixing = torch.randn(6, 6)
    sources = torch.distributions.Laplace(0.0, 1.0).sample((3000, 6))
    return sources @ mixing.T + torch.arange(6.0)


@pytest.mark.parametrize("make", [
    lambda d: neuron_basis(6),
    lambda d: random_directions(6, seed=1),
    lambda d: fit_pca(InMemoryActivations(d), batch_size=500),
    lambda d: fit_ica(InMemoryActivations(d), max_rows=3000),
])
def test_full_rank_linear_decompositions_are_lossless(data, make):
    decomposition = make(data)
    x = data[:50]
    torch.testing.assert_close(decomposition.decode(decomposition.encode(x)), x, rtol=1e-4, atol=1e-3)
    # Patching every feature along its direction turns x into the target exactly.
    target = data[50:100]
    delta = decomposition.encode(target) - decomposition.encode(x)
    torch.testing.assert_close(x + delta @ decomposition.feature_directions(), target, rtol=1e-4, atol=1e-3)


def test_ica_records_whether_it_converged(data):
    """Laplace sources mixed by a random 6 × 6 matrix: FastICA converges within its limit and says so (one more
    iteration would move the unmixing by less than the tolerance); stopped after 2 iterations it does not."""
    converged = fit_ica(InMemoryActivations(data), max_rows=3000, max_iter=500)
    assert converged.fit["converged"] and converged.fit["final_change"] < 1e-4 < 0.5
    assert converged.fit["rows"] == 3000 and 2 < converged.fit["iterations"] < 500 and converged.fit["tol"] == 1e-4
    stopped = fit_ica(InMemoryActivations(data), max_rows=1000, max_iter=2)
    assert not stopped.fit["converged"] and stopped.fit["final_change"] > 1e-3
    assert stopped.fit["iterations"] == 2 and stopped.fit["rows"] == 1000


def test_ica_finds_the_mixed_sources(data):
    """Each unmixing row picks out one Laplace source: |correlation| with its best-matching source ≥ 0.99."""
    generator = torch.Generator().manual_seed(3)
    sources = torch.distributions.Laplace(0.0, 1.0).sample((4000, 4))
    mixed = sources @ torch.randn(4, 4, generator=generator).T
    ica = fit_ica(InMemoryActivations(mixed), max_rows=4000, max_iter=500)
    recovered = ica.encode(mixed)
    correlation = torch.corrcoef(torch.cat([recovered, sources], dim=1).T)[:4, 4:].abs()
    assert ica.fit["converged"] and correlation.max(dim=1).values.min() > 0.99


def test_pca_records_its_rows():
    x = torch.randn(1200, 3)
    assert fit_pca(InMemoryActivations(x), batch_size=500).fit == {"rows": 1200}


def test_pca_finds_the_known_principal_axis():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=generator) * torch.tensor([5.0, 1.0, 0.2])
    pca = fit_pca(InMemoryActivations(x), batch_size=1000)
    assert abs(pca.feature_directions()[0] @ torch.tensor([1.0, 0.0, 0.0])) > 0.999


def test_random_directions_are_orthonormal_and_seeded():
    first, again = random_directions(8, seed=3), random_directions(8, seed=3)
    directions = first.feature_directions()
    torch.testing.assert_close(directions @ directions.T, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.equal(directions, again.feature_directions())


def test_top_k_keeps_only_the_k_largest():
    topk = TopK(neuron_basis(5), k=2)
    codes = topk.encode(torch.tensor([[3.0, -1.0, 5.0, 0.5, 4.0]]))
    assert codes.tolist() == [[0.0, 0.0, 5.0, 0.0, 4.0]]
    with pytest.raises(SaePaperError, match="0 < k <= 5"):
        TopK(neuron_basis(5), k=6)


def test_interpretable_codes_zero_the_negatives():
    codes = interpretable_codes(neuron_basis(3), torch.tensor([[-2.0, 0.0, 1.5]]))
    assert codes.tolist() == [[0.0, 0.0, 1.5]]


def test_sae_decomposition_matches_the_sae():
    sae = make_sae("tied", 6, 12, seed=0)
    decomposition = SaeDecomposition(sae)
    x = torch.randn(4, 6)
    torch.testing.assert_close(decomposition.decode(decomposition.encode(x)), sae(x).x_hat.detach())
    assert decomposition.feature_directions().norm(dim=1).allclose(torch.ones(12))


def test_wrong_shapes_are_one_line_errors():
    with pytest.raises(SaePaperError, match=r"neurons: input x must have shape \[batch, 4\]"):
        neuron_basis(4).encode(torch.zeros(2, 5))
