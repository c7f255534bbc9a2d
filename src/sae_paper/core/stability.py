"""Feature stability across seeds: how many of one dictionary's features another one also found.

Paulo & Belrose 2025 (arXiv 2501.16615, "Sparse Autoencoders Trained on the Same Data Learn
Different Features") train SAEs that differ only in their seed and match features by the cosine
similarity of their decoder directions: a feature is *shared* when its best match in the other
SAE has cosine ≥ 0.7. They find ~30 % shared in large TopK SAEs, more in ReLU + L1 ones.

Here, for dictionaries ``a`` ``[n_a, d]`` and ``b`` ``[n_b, d]`` (decoder directions, e.g.
:meth:`~sae_paper.core.sae.SparseAutoencoder.feature_directions`), each feature of ``a`` gets
its best match in ``b``: ``max_j ⟨â_i, b̂_j⟩`` over unit-normed rows. The cosine is **plain, not
absolute**: an SAE's codes are non-negative, so a feature adds ``+f`` and never ``−f``; the
feature whose direction is ``−f`` fires on the opposite input and is a different feature (a
``|cos|`` would call an SAE and its negation identical). :func:`feature_stability` gives the
best matches, the fraction at or above the threshold and their histogram;
:func:`stability_both_ways` both directions of a pair from one pass over its cosines;
:func:`random_direction_stability` the same figure for two seeded sets of random unit
directions of the same shape, computed by the same function: the level two unrelated
dictionaries reach by chance.

The ``[n_a, n_b]`` cosine matrix is never held whole: rows of ``a`` go through in chunks
(16,384 × 16,384 features of width 576 take ~1 GB at once, 64 MB a chunk of 1,024).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.core.sae import normalize_rows
from sae_paper.errors import SaePaperError

SHARED_COSINE = 0.7
"""Paulo & Belrose's threshold: a feature whose best match has cosine ≥ 0.7 is shared."""

DEFAULT_BIN_EDGES = tuple(np.linspace(-1.0, 1.0, 41).tolist())
"""Twenty bins of 0.05 over [0, 1] and twenty over [−1, 0): every cosine falls in one."""


class Stability(NamedTuple):
    """One dictionary's features matched in another's."""

    best: Float[Tensor, " n_a"]
    """Each feature's best-match cosine in the other dictionary."""
    threshold: float
    fraction_shared: float
    """The fraction of ``best`` at or above ``threshold``."""
    counts: Int[Tensor, " n_bins"]
    """How many of ``best`` fall in each bin (``[e_k, e_k+1)``, the last bin closed, as numpy's histogram)."""
    bin_edges: Float[Tensor, " n_edges"]


def _unit_rows(a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"], chunk: int) -> tuple[Tensor, Tensor]:
    """Both dictionaries checked and unit-normed (float32)."""
    for name, matrix in (("a", a), ("b", b)):
        if matrix.ndim != 2 or min(matrix.shape) == 0:
            raise SaePaperError(f"dictionary {name} must be a non-empty [n_features, d] matrix, got {tuple(matrix.shape)}")
        if not torch.isfinite(matrix).all():
            raise SaePaperError(f"dictionary {name} has non-finite entries")
        if (matrix.norm(dim=1) == 0).any():
            raise SaePaperError(f"dictionary {name} has a zero row: its direction, and so its cosine, is undefined")
    if a.shape[1] != b.shape[1]:
        raise SaePaperError(f"dictionaries of different widths: {a.shape[1]} and {b.shape[1]}")
    if chunk < 1:
        raise SaePaperError(f"chunk must be at least 1, got {chunk}")
    return normalize_rows(a.detach().float()), normalize_rows(b.detach().float())


def best_match_cosines(a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"], *, chunk: int = 1024) -> Float[Tensor, " n_a"]:
    """``max_j cos(a_i, b_j)`` for each row ``a_i`` (plain cosine, float32), ``chunk`` rows of ``a`` at a time."""
    a_unit, b_unit = _unit_rows(a, b, chunk)
    best = torch.cat([(a_unit[start : start + chunk] @ b_unit.T).amax(dim=1) for start in range(0, len(a_unit), chunk)])
    return best.clamp(-1.0, 1.0)  # float32 rounding puts a row against itself at 1 + 1e-7, past the last bin's edge


def mutual_best_matches(a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"], *,
                        chunk: int = 1024) -> tuple[Float[Tensor, " n_a"], Float[Tensor, " n_b"]]:
    """``(best_match_cosines(a, b), best_match_cosines(b, a))`` from one pass over the cosine matrix, half the work
    of the two calls: each chunk of ``a``'s rows gives its rows' maxima and raises ``b``'s running column maxima."""
    a_unit, b_unit = _unit_rows(a, b, chunk)
    best_a, best_b = [], torch.full((len(b_unit),), -math.inf)
    for start in range(0, len(a_unit), chunk):
        cosines = a_unit[start : start + chunk] @ b_unit.T
        best_a.append(cosines.amax(dim=1))
        best_b = torch.maximum(best_b, cosines.amax(dim=0))
    return torch.cat(best_a).clamp(-1.0, 1.0), best_b.clamp(-1.0, 1.0)


def _stability(best: Tensor, threshold: float, bin_edges: tuple[float, ...] | list[float]) -> Stability:
    edges = np.asarray(bin_edges, dtype=np.float64)
    counts, _ = np.histogram(best.double().numpy(), bins=edges)
    return Stability(best, float(threshold), float((best >= threshold).double().mean()), torch.from_numpy(counts),
                     torch.from_numpy(edges))


def _check_threshold_and_edges(threshold: float, bin_edges: tuple[float, ...] | list[float]) -> None:
    edges = np.asarray(bin_edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise SaePaperError(f"bin_edges must be at least two increasing numbers, got {list(bin_edges)}")
    if not -1.0 <= threshold <= 1.0:
        raise SaePaperError(f"a cosine threshold must lie in [-1, 1], got {threshold}")


def feature_stability(a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"], *, threshold: float = SHARED_COSINE,
                      bin_edges: tuple[float, ...] | list[float] = DEFAULT_BIN_EDGES, chunk: int = 1024) -> Stability:
    """Each feature of ``a`` matched in ``b``: best-match cosines, the fraction ≥ ``threshold``, their histogram.

    Not symmetric: ``feature_stability(b, a)`` asks how many of ``b``'s features ``a`` found
    (:func:`stability_both_ways` gives both at the cost of one)."""
    _check_threshold_and_edges(threshold, bin_edges)
    return _stability(best_match_cosines(a, b, chunk=chunk), threshold, bin_edges)


def stability_both_ways(a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"], *, threshold: float = SHARED_COSINE,
                        bin_edges: tuple[float, ...] | list[float] = DEFAULT_BIN_EDGES,
                        chunk: int = 1024) -> tuple[Stability, Stability]:
    """``(feature_stability(a, b), feature_stability(b, a))`` from one pass over the cosine matrix
    (:func:`mutual_best_matches`)."""
    _check_threshold_and_edges(threshold, bin_edges)
    best_a, best_b = mutual_best_matches(a, b, chunk=chunk)
    return _stability(best_a, threshold, bin_edges), _stability(best_b, threshold, bin_edges)


def random_unit_directions(n_features: int, d: int, seed: int) -> Float[Tensor, "n_features d"]:
    """``n_features`` random unit directions in ``d`` dimensions (normalised Gaussians: uniform on the sphere)."""
    generator = torch.Generator().manual_seed(seed)
    return normalize_rows(torch.randn(n_features, d, generator=generator))


def random_direction_stability(n_features: int, d: int, *, seeds: tuple[int, int] = (0, 1),
                               threshold: float = SHARED_COSINE,
                               bin_edges: tuple[float, ...] | list[float] = DEFAULT_BIN_EDGES,
                               chunk: int = 1024) -> Stability:
    """:func:`feature_stability` of two seeded sets of random unit directions of shape ``[n_features, d]``: what two
    dictionaries that share nothing reach by chance (for ``d`` = 576 and 16,384 features the best matches sit near 0.2,
    none near 0.7)."""
    if seeds[0] == seeds[1]:
        raise SaePaperError(f"the two random sets need two seeds, got {seeds}")
    return feature_stability(random_unit_directions(n_features, d, seeds[0]), random_unit_directions(n_features, d, seeds[1]),
                             threshold=threshold, bin_edges=bin_edges, chunk=chunk)
