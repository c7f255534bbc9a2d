"""Decompositions of activations into features, behind one small interface.

The paper compares its dictionaries against other ways of splitting an activation
vector into directions (Section 3.2, Section 4, Appendix G): the default basis
(neurons, or residual-stream dimensions), random directions, PCA, ICA, and top-K
variants of PCA and ICA. Every experiment treats them alike through
:class:`Decomposition`:

- ``encode(x)`` → codes ``c`` ``[batch, n_features]`` (signed for the linear methods,
  non-negative for SAEs);
- ``decode(c)`` = ``offset + c @ feature_directions()``, so ``decode(encode(x)) ≈ x``
  (exactly for the full-rank linear methods, up to the SAE's error for an SAE);
- ``feature_directions()`` ``[n_features, d_in]``: the vector each unit of code adds,
  which is what feature patching moves along (Section 4:
  ``x' = x + Σ_{j∈F} (c̄_j − c_j) f_j``);
- :func:`interpretable_codes` = ``ReLU(encode(x))``, what autointerp reads: the paper
  sets negative activations of random directions and of the residual basis to zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from jaxtyping import Float
from torch import Tensor

from sae_paper.core.sae import SparseAutoencoder
from sae_paper.data.activations import ActivationBatches
from sae_paper.errors import SaePaperError


class Decomposition(Protocol):
    name: str
    d_in: int
    n_features: int

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch n_features"]: ...

    def decode(self, codes: Float[Tensor, "batch n_features"]) -> Float[Tensor, "batch d_in"]: ...

    def feature_directions(self) -> Float[Tensor, "n_features d_in"]: ...


def interpretable_codes(decomposition: Decomposition, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch n_features"]:
    """Non-negative feature activations for autointerp: negatives set to zero, as the paper does."""
    return decomposition.encode(x).clamp(min=0)


class SaeDecomposition:
    """An SAE seen as a decomposition: codes ``c``, directions the unit-norm decoder rows."""

    def __init__(self, sae: SparseAutoencoder, name: str | None = None):
        self.sae = sae
        self.name = name or f"SAE (α={sae.alpha:g}, R={sae.d_sae / sae.d_in:g})"
        self.d_in, self.n_features = sae.d_in, sae.d_sae

    @torch.no_grad()
    def encode(self, x):
        return self.sae.encode(x)

    @torch.no_grad()
    def decode(self, codes):
        return self.sae.decode(codes)

    @torch.no_grad()
    def feature_directions(self):
        return self.sae.feature_directions()


class LinearDecomposition:
    """``c = (x − offset) @ encoder.T``, ``x̂ = offset + c @ directions``: neurons, random, PCA, ICA."""

    def __init__(self, name: str, encoder: Tensor, directions: Tensor, offset: Tensor | None = None,
                 fit: Mapping[str, Any] | None = None):
        if encoder.shape != directions.shape or encoder.ndim != 2:
            raise SaePaperError(f"encoder {tuple(encoder.shape)} and directions {tuple(directions.shape)} must both be [n_features, d_in]")
        self.name = name
        self.fit = dict(fit or {})
        """How it was fitted, for the reader (PCA: rows; ICA: rows, iterations, tolerance, whether it converged)."""
        self.encoder = encoder.float()
        self.directions = directions.float()
        self.n_features, self.d_in = directions.shape
        self.offset = torch.zeros(self.d_in) if offset is None else offset.float()

    def _check(self, tensor: Tensor, width: int, what: str) -> None:
        if tensor.ndim != 2 or tensor.shape[1] != width:
            raise SaePaperError(f"{self.name}: {what} must have shape [batch, {width}], got {tuple(tensor.shape)}")

    def encode(self, x):
        self._check(x, self.d_in, "input x")
        return (x - self.offset) @ self.encoder.T

    def decode(self, codes):
        self._check(codes, self.n_features, "codes")
        return self.offset + codes @ self.directions

    def feature_directions(self):
        return self.directions


def neuron_basis(d_in: int, name: str = "neurons") -> LinearDecomposition:
    """The default basis: each feature is one neuron (MLP) or one residual dimension."""
    identity = torch.eye(d_in)
    return LinearDecomposition(name, identity, identity)


def signed_neuron_basis(d_in: int, name: str = "signed residual basis") -> LinearDecomposition:
    """Each dimension twice, as ``+e_i`` (features ``0..d_in−1``) and ``−e_i`` (features ``d_in..2d_in−1``).

    Appendix D.3 searched both the most positive and the most negative residual
    dimensions, since the residual stream takes both signs; with :func:`interpretable_codes`
    feature ``i`` is the positive part of dimension ``i`` and feature ``d_in + i`` its negative part.
    """
    signed = torch.cat([torch.eye(d_in), -torch.eye(d_in)])
    return LinearDecomposition(name, signed, signed)


def random_directions(d_in: int, seed: int = 0) -> LinearDecomposition:
    """``d_in`` random orthonormal directions (a seeded random rotation of the default basis)."""
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d_in, d_in, generator=generator))
    q = q * torch.sign(torch.diagonal(r))  # a uniformly random rotation (Haar), not QR's biased one
    return LinearDecomposition("random directions", q.T, q.T)


def fit_pca(activations: ActivationBatches, *, batch_size: int = 4096, n_components: int | None = None) -> LinearDecomposition:
    """Incremental PCA over the cached activations (the paper used an online PCA), all components by default."""
    from sklearn.decomposition import IncrementalPCA

    n_components = n_components or activations.d_in
    pca = IncrementalPCA(n_components=n_components)
    leftover = None
    for batch in activations.batches(max(batch_size, n_components), seed=0, epoch=0):
        batch = batch if leftover is None else torch.cat([leftover, batch])
        if len(batch) < n_components:  # IncrementalPCA needs at least n_components rows per fit
            leftover = batch
            continue
        pca.partial_fit(batch.double().numpy())
        leftover = None
    components = torch.from_numpy(pca.components_).float()
    return LinearDecomposition("PCA", components, components, torch.from_numpy(pca.mean_).float(),
                               fit={"rows": int(pca.n_samples_seen_)})


def fit_ica(activations: ActivationBatches, *, max_rows: int = 100_000, seed: int = 0, max_iter: int = 400,
            tol: float = 1e-4) -> LinearDecomposition:
    """FastICA (parallel, logcosh, sklearn's) on a seeded subsample of ``max_rows`` rows (the paper could fit ICA
    on ~2 GB of activations only), stopping when an iteration changes no unmixing row by more than ``tol``.

    ``fit`` records the rows, the iterations run, ``tol``, the change of one more iteration
    (:func:`fastica_change`, below ``tol`` when it converged) and whether it converged, so a
    chapter can say how strong the baseline it compares against was.
    """
    import warnings

    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    rows = []
    for batch in activations.batches(4096, seed=seed, epoch=0):
        rows.append(batch)
        if sum(len(r) for r in rows) >= max_rows:
            break
    data = torch.cat(rows)[:max_rows].double().numpy()
    ica = FastICA(n_components=activations.d_in, random_state=seed, max_iter=max_iter, tol=tol, whiten="unit-variance")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in ``fit`` instead
        ica.fit(data)
    change = fastica_change(ica, data)
    unmixing = torch.from_numpy(ica.components_).float()  # s = (x − mean) @ unmixingᵀ
    mixing = torch.from_numpy(ica.mixing_).float().T  # x = mean + s @ mixingᵀ
    fit = {"rows": len(data), "iterations": int(ica.n_iter_), "max_iter": max_iter, "tol": tol,
           "final_change": change, "converged": change < tol}
    return LinearDecomposition("ICA", unmixing, mixing, torch.from_numpy(ica.mean_).float(), fit=fit)


def _symmetric_decorrelation(w):
    """``(W Wᵀ)^(-1/2) W``: the nearest orthogonal matrix to ``W`` (FastICA's parallel step)."""
    import numpy as np

    eigenvalues, vectors = np.linalg.eigh(w @ w.T)
    eigenvalues = np.clip(eigenvalues, np.finfo(w.dtype).tiny, None)
    return (vectors * (1 / np.sqrt(eigenvalues))) @ vectors.T @ w


def fastica_change(ica, data) -> float:
    """How far one more FastICA iteration would move the fitted unmixing: ``max |1 − |⟨w_new, w⟩||`` over its
    rows, the quantity FastICA stops on (``< tol``). Read from a fitted sklearn ``FastICA`` (parallel, logcosh,
    whitened) and its training ``data``; its stored unmixing has unit-variance rows, which decorrelating
    undoes exactly (a positive row scaling of an orthogonal matrix decorrelates back to it)."""
    import numpy as np

    w = _symmetric_decorrelation(ica._unmixing)
    white = ica.whitening_ @ (data - ica.mean_).T * np.sqrt(len(data))
    projected = np.tanh(w @ white)
    derivative = (1 - projected**2).mean(axis=1)
    w_next = _symmetric_decorrelation(projected @ white.T / white.shape[1] - derivative[:, None] * w)
    return float(np.max(np.abs(np.abs(np.einsum("ij,ij->i", w_next, w)) - 1)))


class TopK:
    """Appendix G: only the ``k`` largest codes of ``base`` may be active; the others are zeroed."""

    def __init__(self, base: LinearDecomposition, k: int):
        if not 0 < k <= base.n_features:
            raise SaePaperError(f"top-K needs 0 < k <= {base.n_features}, got {k}")
        self.base, self.k = base, k
        self.name = f"top-{k} {base.name}"
        self.d_in, self.n_features = base.d_in, base.n_features

    def encode(self, x):
        codes = self.base.encode(x)
        top = codes.topk(self.k, dim=-1)
        return torch.zeros_like(codes).scatter(-1, top.indices, top.values)

    def decode(self, codes):
        return self.base.decode(codes)

    def feature_directions(self):
        return self.base.feature_directions()
