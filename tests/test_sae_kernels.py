"""Differential tests of the SAE's fast paths (sae_paper.core.kernels): dense and sparse == reference.

The training step picks the kernel (sae_paper.core.train.training_forward); SAE.forward is the
"auto" choice of the same kernels."""

from __future__ import annotations

import pytest
import torch

from sae_paper.core import kernels as sae_kernels
from sae_paper.core.kernels import SPARSE_CROSSOVER, NormalizeRows, choose_path
from sae_paper.core.sae import SparseAutoencoder, make_sae, normalize_rows
from sae_paper.core.train import make_optimizer, train_step, training_forward
from sae_paper.errors import SaePaperError

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = ("tied", "untied")
PATHS = ("dense", "sparse")
D_IN, D_SAE, BATCH = 12, 30, 9


def codes_case(kind: str, case: str) -> tuple[SparseAutoencoder, torch.Tensor]:
    """A float64 SAE and a batch whose codes have the named pattern (checked by the caller)."""
    sae = make_sae(kind, D_IN, D_SAE, alpha=0.05, seed=1).double()
    x = torch.randn(BATCH, D_IN, dtype=torch.float64)
    with torch.no_grad():
        if kind == "untied":
            sae.M_e.add_(0.1 * torch.randn_like(sae.M_e))  # encoder ≠ decoder, so a mix-up would show
        encoder = sae.weights().encoder
        if case == "random":
            sae.b.normal_(0, 0.3)
        elif case == "all-zero rows":  # rows 0 and 3 are zero vectors, the bias is negative: no code fires
            sae.b.fill_(-0.05)
            x[[0, 3]] = 0.0
        elif case == "one active code":  # only feature 5 can fire, and only on row 2
            sae.b.fill_(-100.0)
            sae.b[5] = 0.0
            signs = -torch.ones(BATCH, 1, dtype=torch.float64)
            signs[2] = 2.0
            x = signs * encoder[5] + 0.01 * torch.randn(BATCH, D_IN, dtype=torch.float64)
        elif case == "one active feature":  # feature 5 fires on every row, nothing else does
            sae.b.fill_(-100.0)
            sae.b[5] = 100.0
        elif case == "no active code":
            sae.b.fill_(-100.0)
        elif case == "fully dense":
            sae.b.fill_(100.0)
        else:
            raise ValueError(case)
    return sae, x.requires_grad_()


EXPECTED_ACTIVE = {
    "all-zero rows": lambda codes: not codes[[0, 3]].any() and codes.any(),
    "one active code": lambda codes: (codes > 0).sum() == 1 and codes[2, 5] > 0,
    "one active feature": lambda codes: (codes[:, 5] > 0).all() and (codes > 0).sum() == BATCH,
    "no active code": lambda codes: not codes.any(),
    "fully dense": lambda codes: (codes > 0).all(),
    "random": lambda codes: (codes > 0).any() and (codes == 0).any(),
}

OBJECTIVES = {  # each output alone, and all together, so every branch of each backward runs
    "loss": lambda out: out.loss,
    "mse": lambda out: out.mse,
    "l1": lambda out: out.l1,
    "x_hat": lambda out: out.x_hat.sin().sum(),
    "codes": lambda out: out.codes.cos().sum(),
    "all": lambda out: out.loss + out.x_hat.sin().sum() + out.codes.cos().sum() + 3 * out.mse - out.l1,
}


@pytest.mark.parametrize("case", list(EXPECTED_ACTIVE))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", KINDS)
def test_fast_paths_agree_with_reference_values_and_gradients(kind, path, case):
    """Each hand-written backward equals plain autograd, for every input and every output used."""
    sae, x = codes_case(kind, case)
    fast, reference = training_forward(sae, x, path), sae.reference_forward(x)
    assert EXPECTED_ACTIVE[case](reference.codes.detach()), case
    for name, a, b in zip(fast._fields, fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    inputs = [x, *sae.parameters()]
    for name, objective in OBJECTIVES.items():
        fast_grads = torch.autograd.grad(objective(fast), inputs, retain_graph=True, allow_unused=True)
        reference_grads = torch.autograd.grad(objective(reference), inputs, retain_graph=True, allow_unused=True)
        for a, b in zip(fast_grads, reference_grads):
            if a is None or b is None:  # e.g. the l1 term does not reach the decoder
                assert a is None or not a.any(), name
                assert b is None or not b.any(), name
                continue
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    # and the loss alone through .backward(), the training path
    sae.zero_grad()
    training_forward(sae, x.detach(), path).loss.backward()
    fast_param_grads = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    sae.reference_forward(x.detach()).loss.backward()
    for a, p in zip(fast_param_grads, sae.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", KINDS)
def test_fast_paths_pass_gradcheck(kind, path):
    sae = make_sae(kind, 4, 6, alpha=0.1, seed=2).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: training_forward(sae, x, path).loss, (x,))
    assert torch.autograd.gradcheck(lambda x: training_forward(sae, x, path).x_hat, (x,))


def test_fused_row_normalisation_agrees_with_f_normalize_even_for_tiny_rows():
    matrix = torch.randn(5, 3, dtype=torch.float64)
    matrix[1] = 0.0  # zero row: clamped
    matrix[2] *= 1e-10  # below NORM_EPS: clamped
    matrix = matrix.requires_grad_()
    grad = torch.randn(5, 3, dtype=torch.float64)
    fast = NormalizeRows.apply(matrix)
    reference = normalize_rows(matrix)
    torch.testing.assert_close(fast, reference, rtol=1e-15, atol=0)
    (fast_grad,) = torch.autograd.grad(fast, matrix, grad)
    (reference_grad,) = torch.autograd.grad(reference, matrix, grad)
    torch.testing.assert_close(fast_grad, reference_grad, rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(NormalizeRows.apply, (torch.randn(4, 3, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", KINDS)
def test_sparse_and_dense_training_reach_the_same_weights(kind, dtype):
    """100 Adam steps on sparse codes (~5 % density): same loss, codes and weights along the way."""
    data = torch.randn(100, 32, 24, generator=torch.Generator().manual_seed(0)).to(dtype)
    runs = {}
    for path in PATHS:
        sae = make_sae(kind, 24, 96, alpha=1e-2, seed=0).to(dtype)
        with torch.no_grad():
            sae.b.fill_(-1.6)  # P(N(0, 1) > 1.6) ≈ 5 %
        optimizer = make_optimizer(sae, lr=1e-3)
        fire_counts = torch.zeros(96, dtype=torch.int64)
        losses = [train_step(sae, optimizer, batch, fire_counts, path).loss.item() for batch in data]
        runs[path] = (sae, losses, fire_counts)
    (dense, dense_losses, dense_counts), (sparse, sparse_losses, sparse_counts) = runs["dense"], runs["sparse"]
    tight = dtype == torch.float64
    assert 0.01 < dense_counts.sum() / (100 * 32 * 96) < 0.10
    assert torch.equal(dense_counts, sparse_counts)
    torch.testing.assert_close(torch.tensor(sparse_losses), torch.tensor(dense_losses),
                               rtol=1e-10 if tight else 1e-5, atol=0)
    for name, value in dense.state_dict().items():
        torch.testing.assert_close(sparse.state_dict()[name], value, rtol=1e-10 if tight else 1e-4,
                                   atol=1e-12 if tight else 1e-6, msg=name)


def codes_of_density(active: int, total: int = 1000) -> torch.Tensor:
    codes = torch.zeros(1, total)
    codes[0, :active] = 0.5
    return codes


def test_auto_goes_sparse_on_cpu_at_or_below_the_measured_crossover():
    crossover = SPARSE_CROSSOVER["cpu"]
    for device in ("cpu", torch.device("cpu")):
        assert choose_path(device, codes_of_density(0)) == "sparse"
        assert choose_path(device, codes_of_density(round(crossover * 1000))) == "sparse"
        assert choose_path(device, codes_of_density(round(crossover * 1000) + 1)) == "dense"
        assert choose_path(device, codes_of_density(1000)) == "dense"


@pytest.mark.parametrize("device", ["cuda", torch.device("cuda"), torch.device("cuda:1"), "mps", "meta"])
def test_auto_on_a_device_without_a_measured_crossover_is_dense_and_never_reads_the_codes(device):
    """benchmarks/sparse_kernels.py picked the sparse kernels on a CPU, and no benchmark has shown them
    paying on a GPU: "auto" there is the dense kernel, even for codes that are all zero, and it decides
    without reading the codes (a meta tensor has no values: counting them would raise)."""
    assert "cuda" not in SPARSE_CROSSOVER
    assert choose_path(device, torch.empty(64, 1000, device="meta")) == "dense"
    assert choose_path(device, codes_of_density(0)) == "dense"


@pytest.mark.parametrize(("bias", "measured", "expected"),
                         [(-2.0, True, "sparse"), (2.0, True, "dense"), (-2.0, False, "dense")])
def test_auto_takes_the_path_the_batch_density_calls_for(monkeypatch, bias, measured, expected):
    """train_step's default "auto" takes the sparse backward on sparse codes, the dense one on dense codes;
    on a device type without a measured crossover (here the CPU with its entry taken out) always the dense one."""
    if not measured:
        monkeypatch.delitem(SPARSE_CROSSOVER, "cpu")
    taken = []
    for path in PATHS:
        original = getattr(sae_kernels, f"_{path}_backward")
        monkeypatch.setattr(sae_kernels, f"_{path}_backward",
                            lambda *args, _path=path, _original=original: taken.append(_path) or _original(*args))
    sae = make_sae("tied", 16, 64, alpha=1e-3)
    with torch.no_grad():
        sae.b.fill_(bias)  # density P(N(0, 1) > -bias): 2 % or 98 %
    train_step(sae, make_optimizer(sae, lr=1e-3), torch.randn(256, 16))
    assert taken == [expected]


def test_an_unknown_path_is_refused():
    with pytest.raises(SaePaperError, match="path must be"):
        training_forward(make_sae("tied", 4, 8), torch.randn(2, 4), "fast")
