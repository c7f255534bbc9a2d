"""Unit and property tests of the tied/untied SAEs (sae_paper.core.sae)."""

from __future__ import annotations

import json

import pytest
import torch

from sae_paper.core.sae import (
    CONFIG_FILE,
    SAE_KINDS,
    WEIGHTS_FILE,
    ImportedUntiedSAE,
    SparseAutoencoder,
    TiedSAE,
    UntiedSAE,
    load_sae,
    make_sae,
    register_sae,
)
from sae_paper.core.train import training_forward
from sae_paper.errors import SaePaperError

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = ("tied", "untied")


def hand_set(kind: str) -> SparseAutoencoder:
    """d_in = d_sae = 2, float64. Decoder M_d (= M when tied) = [[3, 4], [0, 2]], rows of norm 5 and 2,
    so the dictionary is [[0.6, 0.8], [0, 1]]; untied encoder M_e = [[1, 0], [0, 1]]; b = [0.1, -0.5]."""
    sae = make_sae(kind, 2, 2, alpha=0.1).double()
    decoder = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    with torch.no_grad():
        sae.b.copy_(torch.tensor([0.1, -0.5], dtype=torch.float64))
        if kind == "tied":
            sae.M.copy_(decoder)
        else:
            sae.M_d.copy_(decoder)
            sae.M_e.copy_(torch.eye(2))
    return sae


X_HAND = torch.tensor([[1.0, 2.0], [2.0, -1.0]], dtype=torch.float64)


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_tied_loss_matches_hand_computation(path):
    # M̂ = [[0.6, 0.8], [0, 1]], b = [0.1, -0.5], α = 0.1
    # row (1, 2):  pre = (0.6 + 1.6 + 0.1, 2 - 0.5) = (2.3, 1.5) → c = (2.3, 1.5)
    #              x̂ = 2.3·(0.6, 0.8) + 1.5·(0, 1) = (1.38, 3.34); err = (0.38, 1.34)
    # row (2, -1): pre = (1.2 - 0.8 + 0.1, -1 - 0.5) = (0.5, -1.5) → c = (0.5, 0)
    #              x̂ = (0.3, 0.4); err = (-1.7, 1.4)
    squared_errors = 0.38**2 + 1.34**2 + 1.7**2 + 1.4**2
    mse = squared_errors / 4  # mean over batch (2) and d_in (2)
    l1 = ((2.3 + 1.5) + 0.5) / 2  # summed over features, mean over batch
    out = training_forward(hand_set("tied"), X_HAND, path)
    torch.testing.assert_close(out.codes, torch.tensor([[2.3, 1.5], [0.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(out.x_hat, torch.tensor([[1.38, 3.34], [0.3, 0.4]], dtype=torch.float64))
    assert out.mse.item() == pytest.approx(mse, rel=1e-12)
    assert out.l1.item() == pytest.approx(l1, rel=1e-12)
    assert out.loss.item() == pytest.approx(mse + 0.1 * l1, rel=1e-12)
    assert out.loss.item() == pytest.approx(1.9125, rel=1e-12)


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_untied_loss_matches_hand_computation(path):
    # M_e = I, b = [0.1, -0.5]: row (1, 2) → c = (1.1, 1.5); row (2, -1) → c = (2.1, 0)
    # x̂ = c · [[0.6, 0.8], [0, 1]]: (0.66, 0.88 + 1.5) = (0.66, 2.38) and (1.26, 1.68)
    errors = [0.66 - 1, 2.38 - 2, 1.26 - 2, 1.68 + 1]
    mse = sum(e * e for e in errors) / 4
    l1 = ((1.1 + 1.5) + 2.1) / 2
    out = training_forward(hand_set("untied"), X_HAND, path)
    torch.testing.assert_close(out.x_hat, torch.tensor([[0.66, 2.38], [1.26, 1.68]], dtype=torch.float64))
    assert out.loss.item() == pytest.approx(mse + 0.1 * l1, rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_equals_decode_of_encode(kind):
    sae = make_sae(kind, 16, 40, alpha=1e-3, seed=3)
    with torch.no_grad():
        sae.b.normal_(0, 0.1)
    x = torch.randn(32, 16)
    out = sae(x)
    codes = sae.encode(x)
    torch.testing.assert_close(out.codes, codes, rtol=0, atol=0)
    torch.testing.assert_close(out.x_hat, sae.decode(codes), rtol=0, atol=0)
    assert (codes >= 0).all() and (codes == 0).any() and (codes > 0).any()


@pytest.mark.parametrize("kind", KINDS)
def test_dictionary_rows_have_unit_norm(kind):
    sae = make_sae(kind, 8, 20, seed=4)
    with torch.no_grad():  # far from unit norm, as after training
        for p in sae.parameters():
            p.mul_(7.0)
    norms = sae.feature_directions().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(20), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("kind", "matrix"), [("tied", "M"), ("untied", "M_d")])
def test_scaling_a_dictionary_row_does_not_change_outputs(kind, matrix):
    """Normalisation happens in the forward pass, so only each row's direction matters."""
    sae = make_sae(kind, 8, 20, alpha=0.01, seed=5)
    x = torch.randn(16, 8)
    before = sae(x)
    with torch.no_grad():
        getattr(sae, matrix)[3].mul_(10.0)
        getattr(sae, matrix)[7].mul_(0.25)
    after = sae(x)
    for name, a, b in zip(before._fields, before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_scaling_the_untied_encoder_does_change_outputs():
    sae = make_sae("untied", 8, 20, seed=5)
    x = torch.randn(16, 8)
    before = sae(x).codes
    with torch.no_grad():
        sae.M_e[3].mul_(10.0)
    assert not torch.allclose(before[:, 3], sae(x).codes[:, 3])


def test_initialisation_is_seeded_and_documented():
    a, b, c = (make_sae("tied", 8, 16, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.M, b.M) and not torch.equal(a.M, c.M)
    assert torch.equal(a.b, torch.zeros(16))
    bound = (6 / (8 + 16)) ** 0.5  # Xavier-uniform, as the authors' code
    assert a.M.abs().max() <= bound and a.M.abs().max() > 0.8 * bound


def test_untied_starts_as_the_tied_sae_of_the_same_seed():
    tied, untied = make_sae("tied", 8, 16, seed=9), make_sae("untied", 8, 16, seed=9)
    assert torch.equal(untied.M_d, tied.M)
    torch.testing.assert_close(untied.M_e, tied.feature_directions(), rtol=0, atol=0)
    x = torch.randn(10, 8)
    torch.testing.assert_close(untied(x).x_hat, tied(x).x_hat, rtol=0, atol=0)


def test_untied_has_separate_encoder_and_decoder_parameters():
    sae = make_sae("untied", 8, 16)
    names = {name for name, _ in sae.named_parameters()}
    assert names == {"M_e", "M_d", "b"}
    assert sae.M_e.data_ptr() != sae.M_d.data_ptr()
    assert {name for name, _ in make_sae("tied", 8, 16).named_parameters()} == {"M", "b"}


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    sae = make_sae(kind, 8, 24, alpha=8.6e-4, seed=7, metadata={"model": "toy", "layer": 2, "site": "resid_post"})
    with torch.no_grad():
        sae.b.normal_()
    sae.save(tmp_path)
    assert (tmp_path / WEIGHTS_FILE).is_file() and not list(tmp_path.glob("*.tmp"))
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (stored["kind"], stored["d_in"], stored["d_sae"], stored["alpha"]) == (kind, 8, 24, 8.6e-4)
    loaded = load_sae(tmp_path)
    assert type(loaded) is type(sae) and loaded.metadata == sae.metadata and loaded.alpha == sae.alpha
    for (name, a), (_, b) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(5, 8)
    for a, b in zip(sae(x), loaded(x)):
        assert torch.equal(a, b)
    assert type(SparseAutoencoder.load(tmp_path)) is type(sae)


def test_load_keeps_the_saved_dtype(tmp_path):
    sae = make_sae("tied", 4, 8).double()
    sae.save(tmp_path)
    assert load_sae(tmp_path).M.dtype == torch.float64


def test_load_refuses_missing_or_mismatched_files(tmp_path):
    with pytest.raises(SaePaperError, match="missing sae.json"):
        load_sae(tmp_path)
    make_sae("untied", 4, 8).save(tmp_path)
    with pytest.raises(SaePaperError, match="'untied' SAE, not a TiedSAE"):
        TiedSAE.load(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(SaePaperError, match="missing sae.safetensors"):
        load_sae(tmp_path)
    make_sae("tied", 4, 8).save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "kind": "topk"}))
    with pytest.raises(SaePaperError, match="unknown SAE kind 'topk'"):
        load_sae(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "d_sae": 9}))
    with pytest.raises(SaePaperError, match="do not fit"):
        load_sae(tmp_path)


def test_save_refuses_unserialisable_metadata(tmp_path):
    with pytest.raises(SaePaperError, match="JSON"):
        make_sae("tied", 4, 8, metadata={"tensor": torch.zeros(1)}).save(tmp_path)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(4, 7), r"shape \[batch, d_in=8\], got \(4, 7\)"),
        (torch.zeros(2, 3, 8), r"shape \[batch, d_in=8\], got \(2, 3, 8\)"),
        (torch.zeros(8), r"shape \[batch, d_in=8\], got \(8,\)"),
        (torch.zeros(4, 8, dtype=torch.int64), "dtype torch.float32 .*got torch.int64"),
        (torch.zeros(4, 8, dtype=torch.float64), "dtype torch.float32 .*got torch.float64"),
        ([[0.0] * 8], "must be a torch.Tensor"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_wrong_inputs_are_refused_in_one_line(kind, bad, message):
    sae = make_sae(kind, 8, 16)
    for method in (sae, sae.encode, sae.reference_forward):
        with pytest.raises(SaePaperError, match=message) as error:
            method(bad)
        assert "\n" not in str(error.value)


def test_decode_checks_the_code_width():
    with pytest.raises(SaePaperError, match=r"codes must have shape \[batch, d_sae=16\], got \(3, 8\)"):
        make_sae("tied", 8, 16).decode(torch.zeros(3, 8))


@pytest.mark.parametrize(("d_in", "d_sae", "alpha"), [(0, 4, 0.0), (4, -1, 0.0), (4, 2.5, 0.0), (4, 4, -1.0)])
def test_bad_sizes_are_refused(d_in, d_sae, alpha):
    with pytest.raises(SaePaperError):
        make_sae("tied", d_in, d_sae, alpha=alpha)


def test_registry_maps_kinds_and_rejects_duplicates():
    assert SAE_KINDS == {"tied": TiedSAE, "untied": UntiedSAE, "untied-imported": ImportedUntiedSAE}
    with pytest.raises(SaePaperError, match="unknown SAE kind 'gated'"):
        make_sae("gated", 4, 8)

    class AnotherTied(TiedSAE):
        kind = "tied"

    with pytest.raises(ValueError, match="already registered"):
        register_sae(AnotherTied)
    assert SAE_KINDS["tied"] is TiedSAE
