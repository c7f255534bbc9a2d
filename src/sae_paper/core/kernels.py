"""The SAE's fused kernels: one autograd node for encoder, decoder and loss, dense or sparse.

:meth:`~sae_paper.core.sae.SparseAutoencoder.forward` and the training step
(:func:`sae_paper.core.train.train_step`) compute the SAE here. A step on a batch ``x``
[batch, d_in] with effective weights ``E`` (encoder), ``b`` and ``D`` (unit-norm decoder
rows), ``c = ReLU(x Eᵀ + b)``, ``x̂ = c D``, needs:

============  ==========================  =====================================
piece          dense (5 matmuls)           sparse (only the active codes)
============  ==========================  =====================================
encoder        ``x Eᵀ``                    the same dense matmul (c is unknown before it)
decoder        ``c D``                     a weighted sum of ``L0`` rows of D per row
∂c             ``g Dᵀ``                    one dot product ``g_i · D_j`` per active (i, j)
∂D             ``cᵀ g``                    each active code adds ``c_ij g_i`` to row j
∂E             ``∂preᵀ x``                 each active code adds ``∂pre_ij x_i`` to row j
============  ==========================  =====================================

where ``g = ∂L/∂x̂``. ``∂pre = ∂c ⊙ [c > 0]`` is zero wherever the ReLU is off, so the
last three need only the ``nnz`` active codes: ``nnz · d_in`` multiply-adds each instead
of ``batch · d_sae · d_in``. With the paper's L1 codes sparse (the book's main SAE fires
~30 of 1,152 features per activation, 2.6 %), four of the five matmuls shrink by the code
density. The sparse products use torch's own kernels (so they also run on CUDA), each the
fastest candidate ``benchmarks/sparse_kernels.py`` timed on a CPU thread; the comment
beside each says what it beat, and that benchmark's docstring holds the timings. Only
``nnz``-sized tensors are made besides the codes themselves, and the firing counts come
from the active feature ids (``bincount``) instead of a pass over the dense codes.

**Which path.** The sparse products gather rows instead of streaming whole matrices, so
they reach a fraction of a dense matmul's FLOP rate; below a crossover density they still
win. ``path="auto"`` asks :func:`choose_path`, once per batch, after the encoder. Both
paths compute the same function: the tests assert that each agrees with
:meth:`~sae_paper.core.sae.SparseAutoencoder.reference_forward` to float tolerance,
gradients included, and that 100 Adam steps of each reach the same weights (only the
order of float additions differs).

:class:`NormalizeRows` is the row normalisation of ``M`` with a hand-written backward.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from sae_paper.data.device import device_type
from sae_paper.errors import SaePaperError

TrainPath = Literal["auto", "dense", "sparse"]
"""How :func:`fused_sae` computes decoder and backward: chosen by code density, or forced."""

SPARSE_CROSSOVER: dict[str, float] = {"cpu": 0.15}
"""Code density (fraction of codes > 0 in the batch) at or below which ``path="auto"`` goes sparse,
per device type; a device type not listed always goes dense (and "auto" costs no host sync there).

CPU, measured by ``benchmarks/train_throughput.py`` (torch 2.13, AVX-512): the sparse and
dense steps take equally long at 17.5 % density for batch 4,096, d_in 512, d_sae 4,096 on
one thread (14 % on two loaded threads) and at 23-24 % for the book's batch 128, d_in 576,
d_sae 1,152; 15 % keeps below every measured crossover. Near it both paths cost the same,
so its exact value matters little.
CUDA: not measured (no GPU was at hand), so "auto" stays dense there; ``path="sparse"`` runs
on CUDA with the same torch ops.
"""

NORM_EPS = 1e-8
"""Row norms are clamped to at least this before dividing (the authors' ``torch.clamp(norms, 1e-8)``)."""


def choose_path(device: str | torch.device, codes: Tensor) -> Literal["dense", "sparse"]:
    """The fused kernel ``path="auto"`` runs for a batch whose ReLU codes are ``codes``, on ``device``'s type.

    Per device type, by measurement. CPU: sparse when at most :data:`SPARSE_CROSSOVER`
    ``["cpu"]`` of the codes fire (the crossover ``benchmarks/train_throughput.py`` measured).
    CUDA, and any type not in :data:`SPARSE_CROSSOVER`: dense, without reading ``codes`` (so
    "auto" costs no host sync there). The sparse primitives were picked by
    ``benchmarks/sparse_kernels.py`` on one CPU thread, and no run of it or of
    ``benchmarks/train_throughput.py`` on a GPU has shown the sparse step paying there, so a
    CPU-tuned kernel never runs on CUDA unless asked for (``path="sparse"``). A crossover
    measured on a GPU joins :data:`SPARSE_CROSSOVER` under ``"cuda"``.
    """
    crossover = SPARSE_CROSSOVER.get(device_type(device))
    if crossover is None:
        return "dense"
    return "sparse" if int(torch.count_nonzero(codes > 0)) <= crossover * codes.numel() else "dense"


def fused_sae(x: Tensor, encoder: Tensor, bias: Tensor, decoder: Tensor, path: TrainPath = "auto",
              fire_counts: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x̂, c, mse, l1`` of ``c = ReLU(x Eᵀ + b)``, ``x̂ = c D``, differentiable, by ``path``.

    ``fire_counts`` [d_sae] (int64), if given, gets each feature's firings in this batch
    added: counted from the active codes when the step is sparse, so at no extra dense pass.
    """
    if path not in ("auto", "dense", "sparse"):
        raise SaePaperError(f"path must be 'auto', 'dense' or 'sparse', got {path!r}")
    return _FusedSae.apply(x, encoder, bias, decoder, path, fire_counts)


class _FusedSae(torch.autograd.Function):
    """``x̂, c, mse, l1`` with a hand-written backward, dense or sparse (see the module docstring).

    Dense: forward 2 matmuls, backward 3 more and ~4 elementwise passes, against ~10 for
    plain autograd. Sparse: the encoder matmul, then only products over the active codes.
    The L1 term needs no ``abs``: ``c ≥ 0``. The ReLU derivative is 0 where ``c = 0``, as
    autograd's. ``∂x`` is computed only when ``x`` requires grad.
    """

    @staticmethod
    def forward(ctx, x: Tensor, encoder: Tensor, bias: Tensor, decoder: Tensor, path: TrainPath,
                fire_counts: Tensor | None):
        codes = torch.addmm(bias, x, encoder.t()).relu_()
        if path == "auto":
            path = choose_path(codes.device, codes)
        active = ActiveCodes.of(codes) if path == "sparse" else None
        if active is not None:
            x_hat = active.decode(decoder)
            l1 = active.values.sum() / x.shape[0]
        else:
            x_hat = torch.mm(codes, decoder)
            l1 = codes.sum() / x.shape[0]
        if fire_counts is not None:
            if active is not None:
                fire_counts += torch.bincount(active.features, minlength=codes.shape[1])
            else:  # codes ≥ 0, so sign() is 1 where a feature fires (7x faster than > 0); float sums of 0/1
                fire_counts += codes.sign().sum(dim=0).long()  # are exact below 2^24 rows
        err = x_hat - x
        flat = err.view(-1)
        mse = torch.dot(flat, flat) / err.numel()
        ctx.sparse = active is not None
        # ctx.sparse is `active is not None`
        sparse_parts = (active.crow, active.rows, active.features, active.values) if ctx.sparse else (None,) * 4  # type: ignore[union-attr]
        ctx.save_for_backward(x, encoder, decoder, codes, err, *sparse_parts)
        ctx.set_materialize_grads(False)
        return x_hat, codes, mse, l1

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x_hat, grad_codes, grad_mse, grad_l1):
        x, encoder, decoder, codes, err, crow, rows, features, values = ctx.saved_tensors
        grad_err = None if grad_mse is None else err * (grad_mse * (2.0 / err.numel()))
        grad_out = _add(grad_err, grad_x_hat)  # g = ∂L/∂x̂  [batch, d_in]
        if ctx.sparse:
            active = ActiveCodes(crow, rows, features, values, tuple(codes.shape))
            grads = _sparse_backward(ctx, x, encoder, decoder, active, grad_out, grad_codes, grad_l1)
        else:
            grads = _dense_backward(ctx, x, encoder, decoder, codes, grad_out, grad_codes, grad_l1)
        grad_x = grads[0]
        if grad_x is not None and grad_err is not None:
            grad_x = grad_x - grad_err
        return grad_x, *grads[1:], None, None


def _dense_backward(ctx, x, encoder, decoder, codes, grad_out, grad_codes, grad_l1):
    """∂x, ∂E, ∂b, ∂D by three dense matmuls (∂x a fourth, when asked)."""
    batch = x.shape[0]
    grad_c = grad_codes
    if grad_out is not None:  # ∂L/∂c = g Dᵀ (+ α/batch from the L1 term, fused into addmm)
        if grad_l1 is not None:
            grad_c = _add(torch.addmm(grad_l1 / batch, grad_out, decoder.t()), grad_c)
        else:
            grad_c = _add(torch.mm(grad_out, decoder.t()), grad_c)
    elif grad_l1 is not None:
        grad_c = _add((grad_l1 / batch).expand_as(codes), grad_c)
    if grad_c is None:
        return None, None, None, None
    # ReLU backward: zero where the code is zero (the op autograd itself uses for relu), in place
    # when grad_c is ours (a fresh [batch, d_sae] buffer costs page faults on every step).
    if grad_c is grad_codes or grad_c.stride(-1) == 0:
        grad_pre = torch.ops.aten.threshold_backward(grad_c, codes, 0.0)
    else:
        grad_pre = torch.ops.aten.threshold_backward.grad_input(grad_c, codes, 0.0, grad_input=grad_c)
    grad_x = grad_encoder = grad_bias = grad_decoder = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.mm(grad_pre, encoder)
    if ctx.needs_input_grad[1]:
        grad_encoder = torch.mm(grad_pre.t(), x)
    if ctx.needs_input_grad[2]:
        grad_bias = grad_pre.sum(dim=0)
    if ctx.needs_input_grad[3] and grad_out is not None:
        grad_decoder = torch.mm(codes.t(), grad_out)
    return grad_x, grad_encoder, grad_bias, grad_decoder


def _sparse_backward(ctx, x, encoder, decoder, active: "ActiveCodes", grad_out, grad_codes, grad_l1):
    """∂x, ∂E, ∂b, ∂D touching only the active codes (∂pre is zero elsewhere)."""
    batch = x.shape[0]
    grad_pre = None  # ∂L/∂pre at the active codes [nnz]
    if grad_out is not None:
        grad_pre = active.sampled_dot(grad_out, decoder)
    if grad_l1 is not None:
        grad_pre = (grad_l1 / batch).expand(active.nnz) if grad_pre is None else grad_pre.add_(grad_l1 / batch)
    if grad_codes is not None:
        grad_pre = _add(active.gather(grad_codes), grad_pre)
    if grad_pre is None:
        return None, None, None, None
    grad_x = grad_encoder = grad_bias = grad_decoder = None
    if ctx.needs_input_grad[0]:
        grad_x = active.decode(encoder, grad_pre)
    if ctx.needs_input_grad[2]:
        grad_bias = torch.zeros_like(encoder[:, 0]).index_add_(0, active.features, grad_pre)
    if ctx.needs_input_grad[1]:
        grad_encoder = active.transposed_sum(grad_pre, x)
    if ctx.needs_input_grad[3] and grad_out is not None:
        grad_decoder = active.transposed_sum(active.values, grad_out)
    return grad_x, grad_encoder, grad_bias, grad_decoder


class ActiveCodes:
    """The non-zero codes of a batch [batch, d_sae], row by row, and the products the sparse path needs."""

    def __init__(self, crow: Tensor, rows: Tensor, features: Tensor, values: Tensor, shape: tuple[int, int]):
        self.crow = crow
        """Row pointers [batch + 1]: row i's codes are entries ``crow[i]:crow[i+1]``."""
        self.rows = rows
        """Batch row of each active code [nnz], ascending."""
        self.features = features
        """Feature index of each active code [nnz], ascending within a row."""
        self.values = values
        """The code values [nnz] (all > 0)."""
        self.shape = shape
        self.nnz = features.numel()
        self._transpose: tuple[Tensor, Tensor, Tensor] | None = None

    @classmethod
    def of(cls, codes: Tensor) -> "ActiveCodes":
        """The codes > 0 of ``codes`` [batch, d_sae]."""
        batch, d_sae = codes.shape
        # one nonzero over the byte mask, then nnz-sized work: faster than Tensor.to_sparse_csr, and it gives the rows
        flat = (codes > 0).view(-1).nonzero().squeeze(1)
        rows = torch.div(flat, d_sae, rounding_mode="floor")
        crow = torch.zeros(batch + 1, dtype=torch.int64, device=codes.device)
        torch.cumsum(torch.bincount(rows, minlength=batch), 0, out=crow[1:])
        return cls(crow, rows, flat - rows * d_sae, codes.view(-1).take(flat), (batch, d_sae))

    def decode(self, matrix: Tensor, weights: Tensor | None = None) -> Tensor:
        """``W M`` [batch, d_in] for W the pattern carrying ``weights`` (default: the codes), M [d_sae, d_in]."""
        # a weighted gather-and-sum per batch row; CSR sparse.mm is 2-3x slower
        return F.embedding_bag(self.features, matrix, self.crow, mode="sum",
                               per_sample_weights=self.values if weights is None else weights,
                               include_last_offset=True)

    def sampled_dot(self, left: Tensor, matrix: Tensor) -> Tensor:
        """``(left Mᵀ)[i, j]`` at each active (i, j) [nnz]: ``left`` [batch, d_in], M [d_sae, d_in]."""
        # SDDMM; embedding_bag's per-sample-weight backward is 2x slower, gathering rows of M 40x
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(self.crow, self.features, self.values, self.shape,
                                              check_invariants=False)
            return torch.sparse.sampled_addmm(pattern, left, matrix.t(), beta=0.0).values()

    def gather(self, dense: Tensor) -> Tensor:
        """``dense[i, j]`` at each active (i, j) [nnz]."""
        return dense.reshape(-1).take(self.rows * self.shape[1] + self.features)

    def transposed_sum(self, weights: Tensor, dense: Tensor) -> Tensor:
        """``Wᵀ Y`` [d_sae, d_in] for W the pattern carrying ``weights`` [nnz], Y [batch, d_in]."""
        # embedding_bag on the pattern grouped by feature; CSR sparse.mm on the transpose is 2x slower,
        # index_add_ of gathered rows 70x
        order, feature_ptr, rows = self.transpose()
        return F.embedding_bag(rows, dense, feature_ptr, mode="sum", per_sample_weights=weights[order],
                               include_last_offset=True)

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        """(order, feature_ptr, rows): the active codes grouped by feature; ``order`` maps back."""
        if self._transpose is None:  # one stable argsort of the feature ids serves ∂D and ∂E
            order = torch.argsort(self.features, stable=True)
            feature_ptr = torch.zeros(self.shape[1] + 1, dtype=torch.int64, device=order.device)
            torch.cumsum(torch.bincount(self.features, minlength=self.shape[1]), 0, out=feature_ptr[1:])
            self._transpose = (order, feature_ptr, self.rows[order])
        return self._transpose


class NormalizeRows(torch.autograd.Function):
    """Row normalisation with a hand-written backward: ~5 passes over the matrix instead of ~12.

    For a row ``m`` with ``n = ||m|| ≥ eps``, ``m̂ = m / n`` and ``∂m = (∂m̂ − m̂ (m̂ · ∂m̂)) / n``;
    for ``n < eps`` the clamp makes ``m̂ = m / eps`` and ``∂m = ∂m̂ / eps`` (as autograd's).
    """

    @staticmethod
    def forward(ctx, matrix: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
        clamped = norm.clamp_min(NORM_EPS)
        normalized = matrix / clamped  # divide, not multiply by 1/n: bitwise equal to F.normalize
        ctx.save_for_backward(normalized, clamped.reciprocal(), norm >= NORM_EPS)
        return normalized

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        normalized, inverse, unclamped = ctx.saved_tensors
        along = torch.linalg.vecdot(grad, normalized, dim=1).unsqueeze(1) * unclamped
        return torch.addcmul(grad, normalized, along, value=-1).mul_(inverse)


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b
