"""How well an SAE reconstructs activations, and how many of its features are used.

- **FVU**, the fraction of variance unexplained (Figures 6 and 7): the total squared
  reconstruction error divided by the total squared deviation of the data from its
  per-dimension mean, ``Σ ||x − x̂||² / Σ ||x − x̄||²``. 0 is a perfect reconstruction;
  1 is no better than always predicting the mean activation ``x̄``.
- **L0**: the mean number of non-zero codes per activation vector (the "mean number of
  active features" of Figure 6).
- **Alive features** (Figure 16): a feature is alive if it fires (code > 0) more than
  ``alive_threshold`` times over the evaluated activations; the paper counts
  "fires > 10 times" in 10M data points.

:func:`reconstruction_stats` streams over batches and gives the same numbers as one
computation over the concatenated data: squared errors and firing counts are summed, and
the per-dimension variance is merged batch by batch with Chan et al.'s pairwise update
(float64), which stays accurate when the mean is large against the spread, where the
naive ``Σx² − n x̄²`` cancels catastrophically.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_paper import SaePaperError
from sae_paper.sae import SparseAutoencoder


def fvu(x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"]) -> float:
    """Fraction of variance unexplained: ``Σ (x − x̂)² / Σ (x − mean_batch(x))²`` over all rows and dims.

    Computed in float64. Raises if the shapes differ or ``x`` has no variance (FVU undefined).
    """
    if x.shape != x_hat.shape or x.ndim != 2:
        raise SaePaperError(
            f"fvu needs x and x_hat of the same [batch, d_in] shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}"
        )
    x, x_hat = x.detach().double(), x_hat.detach().double()
    total = (x - x.mean(dim=0)).pow(2).sum()
    if total <= 0:
        raise SaePaperError("fvu is undefined: the activations have zero variance")
    return ((x - x_hat).pow(2).sum() / total).item()


def alive_dead(fire_counts: Int[Tensor, " d_sae"], alive_threshold: int) -> tuple[int, int]:
    """(alive, dead) feature counts: alive means fired more than ``alive_threshold`` times."""
    alive = int((fire_counts > alive_threshold).sum())
    return alive, fire_counts.numel() - alive


@dataclass(frozen=True, eq=False)
class ReconstructionStats:
    """Reconstruction quality and feature usage of an SAE over a set of activations."""

    fvu: float
    """Fraction of variance unexplained over all rows (see module docstring)."""
    mean_l0: float
    """Mean number of non-zero codes per row."""
    alive: int
    """Features that fired more than ``alive_threshold`` times."""
    dead: int
    """``d_sae − alive``."""
    fire_counts: Int[Tensor, " d_sae"]
    """How many rows each feature fired on (int64)."""
    n_rows: int
    """Activation vectors evaluated."""


class _StreamingVariance:
    """Per-dimension count, mean and sum of squared deviations, merged batch by batch (float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, x: Float[Tensor, "batch d_in"]) -> None:
        x = x.double()
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        m2_b = (x - mean_b).pow(2).sum(dim=0)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta.pow(2) * (self.n * n_b / n)
        self.n = n

    def total(self) -> float:
        """``Σ_rows Σ_dims (x − x̄)²``: the denominator of FVU."""
        return 0.0 if self.m2 is None else self.m2.sum().item()


@torch.no_grad()
def reconstruction_stats(
    sae: SparseAutoencoder,
    batches: Iterable[Float[Tensor, "batch d_in"]],
    alive_threshold: int = 10,
) -> ReconstructionStats:
    """FVU, mean L0 and alive/dead features of ``sae`` over all rows of ``batches``, exactly.

    Batches are moved to the SAE's device and dtype; any batch sizes may be mixed.
    """
    parameter = next(sae.parameters())
    variance = _StreamingVariance()
    squared_error = torch.zeros((), dtype=torch.float64, device=parameter.device)
    fire_counts = torch.zeros(sae.d_sae, dtype=torch.int64, device=parameter.device)
    for batch in batches:
        batch = batch.to(device=parameter.device, dtype=parameter.dtype)
        codes = sae.encode(batch)
        x_hat = sae.decode(codes)
        squared_error += (x_hat - batch).double().pow(2).sum()
        fire_counts += (codes > 0).sum(dim=0)
        variance.update(batch)
    if variance.n == 0:
        raise SaePaperError("reconstruction_stats got no activations")
    total = variance.total()
    if total <= 0:
        raise SaePaperError("FVU is undefined: the activations have zero variance")
    alive, dead = alive_dead(fire_counts, alive_threshold)
    return ReconstructionStats(
        fvu=squared_error.item() / total,
        mean_l0=fire_counts.sum().item() / variance.n,
        alive=alive,
        dead=dead,
        fire_counts=fire_counts.cpu(),
        n_rows=variance.n,
    )


# --------------------------------------------------------------------------------------
# Language-model cost of a reconstruction (Section 6.2)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpliceMetrics:
    """Next-token cross-entropy (nats/token) with the site clean, reconstructed, or zeroed.

    Only predictions made from positions 1.. are counted, the positions whose activation
    is replaced; position 0 (BOS) is always left as it is, because its activation is an
    outlier no SAE is trained on, and zeroing it would break the model for reasons that
    have nothing to do with the dictionary.
    """

    ce_clean: float
    ce_spliced: float
    ce_zero: float
    n_tokens: int

    @property
    def perplexity_clean(self) -> float:
        return math.exp(self.ce_clean)

    @property
    def perplexity_spliced(self) -> float:
        return math.exp(self.ce_spliced)

    @property
    def perplexity_zero(self) -> float:
        return math.exp(self.ce_zero)

    @property
    def ce_recovered(self) -> float:
        """``(CE_zero − CE_spliced) / (CE_zero − CE_clean)``: 1 is lossless, 0 no better than zeroing."""
        return (self.ce_zero - self.ce_spliced) / (self.ce_zero - self.ce_clean)


def splice_metrics(
    model,
    site,
    reconstruct: Callable[[Tensor], Tensor],
    tokens: Int[Tensor, "batch pos"],
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> SpliceMetrics:
    """CE of ``model`` on ``tokens`` clean, with ``site`` replaced by ``reconstruct(site)`` and by zeros.

    ``reconstruct`` maps ``[n, d]`` activations to ``[n, d]``: an SAE's ``x̂``, or any other
    decomposition's reconstruction. ``site`` is a :class:`sae_paper.models.Site`.
    """

    def spliced(activation: Tensor, hook) -> Tensor:
        rest = activation[:, 1:]
        replaced = reconstruct(rest.reshape(-1, rest.shape[-1])).reshape(rest.shape)
        return torch.cat([activation[:, :1], replaced.to(activation.dtype)], dim=1)

    def zeroed(activation: Tensor, hook) -> Tensor:
        return torch.cat([activation[:, :1], torch.zeros_like(activation[:, 1:])], dim=1)

    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    count = 0
    chunks = range(0, len(tokens), batch_size)
    for start in tqdm(chunks, desc="splice CE", unit="batch", disable=not progress):
        chunk = tokens[start : start + batch_size]
        for name, hooks in (("clean", []), ("spliced", [(site.hook_name, spliced)]), ("zero", [(site.hook_name, zeroed)])):
            losses = model.run_with_hooks(chunk, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
            totals[name] += losses[:, 1:].sum().item()
        count += chunk.shape[0] * (chunk.shape[1] - 2)
    return SpliceMetrics(totals["clean"] / count, totals["spliced"] / count, totals["zero"] / count, count)
