"""Counting what a feature fires on: token histograms per activation bin, and precision/recall
of every feature on a class of tokens.

- **Token histogram per activation bin** (Figure 4 left, Figures 11–15): over every
  token where the feature fires, split its activation range into equal-width bins and
  count the tokens in each, stacked by token; a few tokens are named, the rest are
  "other". A monosemantic feature shows one kind of token, above all at high
  activation; a polysemantic direction (Figure 11) shows different tokens in different
  ranges. :func:`token_histogram`.

To find features by what they fire on (the single-token features of Section 5: periods,
``" the"``, newlines; or the 'If'-in-code and apostrophe features of Appendix D),
:func:`class_stats` counts, for every feature at once, how often it fires and how often
on a given class of tokens: the *precision* (share of its firings on the class; "fires
only on periods" means precision near 1) and the *recall* (share of the class it fires on).

:func:`top_tokens` and :func:`unembed_direction` read a feature through the unembedding
(Appendix D's logit views).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_paper.analysis.token_activations import CODE_BATCH, TokenActivations, feature_codes, token_label
from sae_paper.core.decompositions import Decomposition, interpretable_codes
from sae_paper.errors import SaePaperError

# --------------------------------------------------------------------------------------
# Token histogram per activation bin (Figure 4 left, Figures 11-15)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenHistogram:
    """Counts of the tokens a feature fires on, per equal-width activation bin."""

    edges: Float[Tensor, " n_bins_plus_1"]
    """Bin edges from 0 to the largest activation."""
    token_ids: tuple[int, ...]
    """The named tokens (the columns of :attr:`counts` but the last)."""
    labels: tuple[str, ...]
    """Their labels, then "other"."""
    counts: Int[Tensor, "n_bins n_named_plus_1"]
    """Tokens per bin and per named token; the last column is every other token."""

    @property
    def n_firing(self) -> int:
        return int(self.counts.sum())

    def top_per_bin(self, k: int = 3) -> list[list[tuple[str, int]]]:
        """For each bin, its ``k`` most frequent named tokens with their counts."""
        out = []
        for row in self.counts:
            order = row[:-1].argsort(descending=True)[:k]
            out.append([(self.labels[i], int(row[i])) for i in order if row[i] > 0])
        return out


def activation_bins(activation: Float[Tensor, " n"], n_bins: int) -> tuple[Float[Tensor, " b1"], Int[Tensor, " n"]]:
    """Equal-width bins over (0, max]: the edges and each value's bin (values must be > 0)."""
    top = float(activation.max())
    edges = torch.linspace(0.0, top, n_bins + 1)
    index = (activation / top * n_bins).floor().long().clamp(0, n_bins - 1)
    return edges, index


def token_histogram(
    activation: Float[Tensor, " n"],
    tokens: Int[Tensor, " n"],
    *,
    n_bins: int = 10,
    n_named: int = 8,
    label: Callable[[int], str] = str,
) -> TokenHistogram:
    """Histogram of the tokens where ``activation > 0``, split into ``n_bins`` activation bins.

    Named tokens: the most frequent token of each bin (so every range shows what leads
    it), then the most frequent tokens overall, up to ``n_named``; the rest is "other".
    The counts add up to the number of firing tokens.
    """
    if activation.shape != tokens.shape or activation.ndim != 1:
        raise SaePaperError(f"activation and tokens must be equal-length vectors, got {tuple(activation.shape)} and {tuple(tokens.shape)}")
    fired = activation > 0
    if not fired.any():
        raise SaePaperError("the feature never fires on these tokens: no histogram to draw")
    values, ids = activation[fired].float(), tokens[fired]
    edges, index = activation_bins(values, n_bins)
    unique, column = torch.unique(ids, return_inverse=True)
    table = torch.zeros(n_bins, len(unique), dtype=torch.long)
    table.index_put_((index, column), torch.ones_like(index), accumulate=True)
    named: list[int] = []
    for row in reversed(list(table)):  # each bin's leader first, highest bin first
        if row.sum() > 0:
            leader = int(row.argmax())
            if leader not in named and len(named) < n_named:
                named.append(leader)
    for candidate in table.sum(dim=0).argsort(descending=True).tolist():
        if len(named) >= n_named:
            break
        if candidate not in named:
            named.append(candidate)
    named_index = torch.tensor(named, dtype=torch.long)
    counts = torch.cat([table[:, named_index], (table.sum(dim=1) - table[:, named_index].sum(dim=1)).unsqueeze(1)], dim=1)
    token_ids = tuple(int(unique[i]) for i in named)
    return TokenHistogram(edges, token_ids, tuple(label(t) for t in token_ids) + ("other",), counts)


def class_share_per_bin(activation: Float[Tensor, " n"], in_class: Bool[Tensor, " n"], n_bins: int = 10) -> Float[Tensor, " n_bins"]:
    """For each activation bin of :func:`token_histogram`, the share of firing tokens in a class (NaN if empty)."""
    fired = activation > 0
    _, index = activation_bins(activation[fired].float(), n_bins)
    total = torch.bincount(index, minlength=n_bins).double()
    hits = torch.bincount(index, weights=in_class[fired].double(), minlength=n_bins)
    return (hits / total).float()



# --------------------------------------------------------------------------------------
# Finding features by the tokens they fire on
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassStats:
    """For every feature: how often it fires, how high, and how often on a class of tokens."""

    fire_counts: Int[Tensor, " n_features"]
    in_class: Int[Tensor, " n_features"]
    """Firings on rows of the class."""
    max_activation: Float[Tensor, " n_features"]
    mass: Float[Tensor, " n_features"]
    """Sum of each feature's activations."""
    in_class_mass: Float[Tensor, " n_features"]
    """... over the rows of the class."""
    class_size: int
    n_rows: int

    @property
    def precision(self) -> Float[Tensor, " n_features"]:
        """Share of each feature's firings that are on the class (0 for a feature that never fires)."""
        return self.in_class.double().div(self.fire_counts.clamp(min=1)).float()

    @property
    def mass_precision(self) -> Float[Tensor, " n_features"]:
        """Share of each feature's total activation that is on the class: like :attr:`precision`,
        but the many faint firings most features have at the bottom of their range count little."""
        return self.in_class_mass.div(self.mass.clamp(min=1e-12)).float()

    @property
    def recall(self) -> Float[Tensor, " n_features"]:
        """Share of the class's rows each feature fires on."""
        return self.in_class.double().div(max(self.class_size, 1)).float()

    @property
    def f1(self) -> Float[Tensor, " n_features"]:
        p, r = self.precision, self.recall
        return torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(p))

    @property
    def mass_f1(self) -> Float[Tensor, " n_features"]:
        """Harmonic mean of :attr:`mass_precision` and :attr:`recall`."""
        p, r = self.mass_precision, self.recall
        return torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(p))

    def best(self, k: int = 5, *, min_precision: float = 0.0, min_fires: int = 1, by_mass: bool = False) -> list[int]:
        """Up to ``k`` features by F1 (``by_mass``: by :attr:`mass_f1`, precision read as
        :attr:`mass_precision`), among those with at least that precision and firings."""
        precision, f1 = (self.mass_precision, self.mass_f1) if by_mass else (self.precision, self.f1)
        ok = (precision >= min_precision) & (self.fire_counts >= min_fires) & (self.in_class > 0)
        score = torch.where(ok, f1, torch.full_like(f1, -1.0))
        order = score.argsort(descending=True)[:k]
        return [int(i) for i in order if score[i] >= 0]


@torch.no_grad()
def class_stats(decomposition: Decomposition, rows: Float[Tensor, "n d_in"], in_class: Bool[Tensor, " n"]) -> ClassStats:
    """:class:`ClassStats` of every feature of ``decomposition`` over ``rows``, in one pass."""
    return multi_class_stats(decomposition, rows, {"class": in_class})["class"]


@torch.no_grad()
def multi_class_stats(decomposition: Decomposition, rows: Float[Tensor, "n d_in"],
                      classes: Mapping[str, Bool[Tensor, " n"]]) -> dict[str, ClassStats]:
    """:class:`ClassStats` for several token classes at once (the rows are encoded once)."""
    for name, mask in classes.items():
        if mask.shape != rows.shape[:1]:
            raise SaePaperError(f"the mask of class {name!r} must have one entry per row ({rows.shape[0]}), got {tuple(mask.shape)}")
    n = decomposition.n_features
    fires = torch.zeros(n, dtype=torch.long)
    top = torch.zeros(n)
    mass = torch.zeros(n, dtype=torch.float64)
    hits = {name: torch.zeros(n, dtype=torch.long) for name in classes}
    hit_mass = {name: torch.zeros(n, dtype=torch.float64) for name in classes}
    for start in range(0, len(rows), CODE_BATCH):
        codes = interpretable_codes(decomposition, rows[start : start + CODE_BATCH])
        fired = codes > 0
        fires += fired.sum(dim=0)
        top = torch.maximum(top, codes.max(dim=0).values)
        mass += codes.sum(dim=0, dtype=torch.float64)
        for name, mask in classes.items():
            chosen = mask[start : start + CODE_BATCH]
            hits[name] += fired[chosen].sum(dim=0)
            hit_mass[name] += codes[chosen].sum(dim=0, dtype=torch.float64)
    return {name: ClassStats(fires, hits[name], top, mass, hit_mass[name], int(mask.sum()), len(rows))
            for name, mask in classes.items()}


@torch.no_grad()
def top_tokens(
    decomposition: Decomposition,
    acts: TokenActivations,
    features: Sequence[int],
    tokenizer,
    *,
    k: int = 3,
) -> dict[int, list[str]]:
    """For each feature, the ``k`` tokens carrying the most of its total activation (labels)."""
    codes = feature_codes(decomposition, acts.rows, list(features))
    unique, column = torch.unique(acts.tokens, return_inverse=True)
    mass = torch.zeros(len(unique), len(features), dtype=torch.float64)
    mass.index_add_(0, column, codes.double())
    out = {}
    for j, feature in enumerate(features):
        order = mass[:, j].argsort(descending=True)[:k]
        out[int(feature)] = [token_label(tokenizer, int(unique[i])) for i in order if mass[i, j] > 0]
    return out


def unembed_direction(model, direction: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Residual direction(s) read through the final norm's gain and the unembedding (Section 5.3).

    The norm's scale factor is positive and common to all tokens, so it is left out; a
    LayerNorm (Pythia) also centres the vector first; an RMSNorm (SmolLM2) does not.
    """
    norm = getattr(model.ln_final, "_original_component", model.ln_final)
    vector = direction.float()
    if getattr(norm, "bias", None) is not None:  # LayerNorm subtracts the mean over d_model
        vector = vector - vector.mean(dim=-1, keepdim=True)
    weight = getattr(norm, "weight", None)
    if weight is not None:
        vector = vector * weight.detach().float()
    return vector @ model.W_U.detach().float()
