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
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_paper.core.sae import SparseAutoencoder
from sae_paper.errors import SaePaperError


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
        if self.mean is None or self.m2 is None:  # both are None until the first batch
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
class ReferenceCE:
    """CE of the clean model and with a site zero-ablated: what every SAE of that site is compared with,
    computed once per (model, site, held-out text) (:func:`reference_ce`)."""

    ce_clean: float
    ce_zero: float
    n_tokens: int


@dataclass(frozen=True)
class SpliceMetrics:
    """Next-token cross-entropy (nats/token) with the site clean, reconstructed, or zeroed.

    Only the positions the separator-row policy keeps (:func:`sae_paper.data.text.kept_positions`:
    not BOS, not the first token after it, not a separator) are replaced, and only the
    predictions made from them are counted: the other positions hold attention-sink
    activations no SAE is trained on, and replacing them would measure something that has
    nothing to do with the dictionary.
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


def replace_at(keep: Tensor, replace: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """A hook that replaces the activation rows at ``keep`` ``[batch, pos]`` by ``replace(rows)`` and leaves the rest."""

    def hook(activation: Tensor, hook=None) -> Tensor:
        patched = activation.clone()
        patched[keep] = replace(activation[keep]).to(activation.dtype)
        return patched

    return hook


def _masked_ce(model, site, tokens: Int[Tensor, "batch pos"], replace: Callable[[Tensor], Tensor] | None, *,
               separator_id: int, batch_size: int, progress: bool, desc: str) -> tuple[float, int]:
    """(mean CE over the predictions made from kept positions, their number), with the site's kept positions
    replaced by ``replace(rows)`` (None: the clean model)."""
    from sae_paper.data.text import kept_positions

    mask = kept_positions(tokens, separator_id)
    total, count = 0.0, 0
    for start in tqdm(range(0, len(tokens), batch_size), desc=desc, unit="batch", disable=not progress):
        chunk, keep = tokens[start : start + batch_size], mask[start : start + batch_size]
        hooks = [] if replace is None else [(site.hook_name, replace_at(keep, replace))]
        losses = model.run_with_hooks(chunk, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
        counted = keep[:, :-1]  # loss t predicts token t + 1 from position t
        total += losses[counted].sum().item()
        count += int(counted.sum())
    if count == 0:
        raise SaePaperError("the splice CE has no position to count (every position is BOS, first or a separator)")
    return total / count, count


def reference_ce(model, site, tokens: Int[Tensor, "batch pos"], *, separator_id: int = 0, batch_size: int = 32,
                 progress: bool = False) -> ReferenceCE:
    """CE of ``model`` on ``tokens`` clean and with ``site`` zero-ablated at the kept positions."""
    options = dict(separator_id=separator_id, batch_size=batch_size, progress=progress)
    clean, n = _masked_ce(model, site, tokens, None, desc="clean CE", **options)  # type: ignore[arg-type]
    zero, _ = _masked_ce(model, site, tokens, torch.zeros_like, desc="zero-ablated CE", **options)  # type: ignore[arg-type]
    return ReferenceCE(clean, zero, n)


def splice_metrics(
    model,
    site,
    reconstruct: Callable[[Tensor], Tensor],
    tokens: Int[Tensor, "batch pos"],
    *,
    separator_id: int = 0,
    batch_size: int = 32,
    progress: bool = False,
    reference: ReferenceCE | None = None,
) -> SpliceMetrics:
    """CE of ``model`` on ``tokens`` clean, with ``site`` replaced by ``reconstruct(site)`` and by zeros.

    ``reconstruct`` maps ``[n, d]`` activations to ``[n, d]``: an SAE's ``x̂``, or any other
    decomposition's reconstruction. ``site`` is a :class:`sae_paper.data.models.Site`.
    ``reference``: the clean and zero-ablated CE of these tokens, when already known
    (:func:`reference_ce`; one forward pass instead of three).
    """
    options = dict(separator_id=separator_id, batch_size=batch_size, progress=progress)
    reference = reference or reference_ce(model, site, tokens, **options)  # type: ignore[arg-type]
    spliced, n = _masked_ce(model, site, tokens, reconstruct, desc="spliced CE", **options)  # type: ignore[arg-type]
    if n != reference.n_tokens:
        raise SaePaperError(f"the reference CE counts {reference.n_tokens} predictions, these tokens {n}: another text")
    return SpliceMetrics(reference.ce_clean, spliced, reference.ce_zero, n)


# --------------------------------------------------------------------------------------
# The same CE under SAELens's / SAEBench's convention (issue 13)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllPositionsSpliceMetrics(SpliceMetrics):
    """:class:`SpliceMetrics` under SAELens's and SAEBench's convention (``get_recons_loss``).

    Every position, BOS included, is replaced by the reconstruction or zeroed, and a
    prediction is left out of every mean when the token it is made *from* is a special
    token (BOS, end-of-text separators, padding). Ours (:class:`SpliceMetrics`) replaces
    only the positions the separator-row policy keeps and counts the predictions made from
    them. Zeroing BOS too is what makes this zero-ablation CE smaller than ours: without
    the BOS activation a model's attention has no sink, and a model without biases
    (SmolLM2) then outputs logits of exactly 0, a CE of ``ln(vocabulary)``.
    ``ce_recovered`` is SAEBench's ``ce_loss_score``.
    """


def splice_metrics_all_positions(
    model,
    site,
    reconstruct: Callable[[Tensor], Tensor],
    tokens: Int[Tensor, "batch pos"],
    ignore_token_ids: Iterable[int | None],
    *,
    batch_size: int = 32,
) -> AllPositionsSpliceMetrics:
    """CE of ``model`` on ``tokens`` clean, with every position of ``site`` reconstructed, and zeroed,
    counting only predictions made from tokens not in ``ignore_token_ids`` (None entries are skipped,
    as a tokenizer without a pad token gives). See :class:`AllPositionsSpliceMetrics`.
    """
    ignored = torch.tensor(sorted({int(t) for t in ignore_token_ids if t is not None}), dtype=torch.long)

    def spliced(activation: Tensor, hook) -> Tensor:
        flat = activation.reshape(-1, activation.shape[-1])
        return reconstruct(flat).reshape(activation.shape).to(activation.dtype)

    def zeroed(activation: Tensor, hook) -> Tensor:
        return torch.zeros_like(activation)

    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    count = 0
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size]
        keep = ~torch.isin(chunk[:, :-1], ignored.to(chunk.device))  # the position each prediction is made from
        for name, hooks in (("clean", []), ("spliced", [(site.hook_name, spliced)]), ("zero", [(site.hook_name, zeroed)])):
            losses = model.run_with_hooks(chunk, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
            totals[name] += losses[keep.to(losses.device)].double().sum().item()
        count += int(keep.sum())
    if count == 0:
        raise SaePaperError("splice_metrics_all_positions: every prediction is made from an ignored token")
    return AllPositionsSpliceMetrics(totals["clean"] / count, totals["spliced"] / count, totals["zero"] / count, count)
