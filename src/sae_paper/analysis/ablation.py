"""Less-than-rank-one ablation of one feature, and what it does to the next-token logits.

Section 5 of the paper (Figure 4, right) asks what a dictionary feature *does*: remove it
from the residual stream, finish the forward pass, and look at which next-token logits
move. Footnote 5 says how it is removed: "less-than-rank-one ablation, where we lower the
activation vector in the direction of the feature only up to the point where the feature
is no longer active". For an activation ``x`` and feature ``i`` with

- encoder row ``e_i`` and bias ``b_i`` (its pre-activation is ``p_i(x) = e_i · x + b_i``,
  its activation ``c_i = ReLU(p_i)``), and
- direction ``f_i`` (the vector one unit of ``c_i`` adds to the reconstruction),

moving ``x`` along ``f_i`` by ``t`` changes the pre-activation by ``t (e_i · f_i)``, so

    x' = x + t f_i,   t = −p_i(x) / (e_i · f_i)   where p_i(x) > 0, else t = 0

is the smallest move along ``f_i`` that switches the feature off: ``p_i(x') = 0``. For the
paper's tied SAE ``e_i = f_i`` is a unit vector, ``t = −c_i`` and ``x' = x − c_i f_i``,
i.e. subtracting the feature's own contribution to the reconstruction; for an untied
SAE the encoder row and the direction differ and the formula above still zeroes the
pre-activation. Only the component of ``x`` along ``f_i`` changes, which is what makes it
"less than rank one": a rank-one ablation would project out the whole ``f_i`` component.
Other features' activations may still change, because dictionary directions are not
orthogonal. Where the feature does not fire, nothing moves.

:func:`logit_effect` applies this at one site of a language model, on every non-BOS
position of each context, runs the rest of the model, and averages the change of the
logits at a chosen position of each context (where the feature fired): negative entries
are next tokens the feature promotes (ablating it suppresses them). The paper's
apostrophe feature most suppressed ``s`` and showed differences beyond ±0.1 only.
Adding one constant to every logit changes no prediction (the softmax ignores it), and an
ablation that changes the residual norm can shift all logits together (by several units
for SmolLM2), so each example's change is centred on its mean over the vocabulary before
averaging; the mean shift itself is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.core.decompositions import Decomposition, LinearDecomposition, SaeDecomposition, TopK
from sae_paper.errors import SaePaperError

SLOPE_EPS = 1e-6
"""Smallest ``|e_i · f_i|`` accepted: below it, moving along ``f_i`` cannot switch the feature off."""


@dataclass(frozen=True)
class FeatureEncoder:
    """The affine map before each feature's nonlinearity: ``p = x @ encoder.T + bias``."""

    encoder: Float[Tensor, "n_features d_in"]
    bias: Float[Tensor, " n_features"]


def feature_encoder(decomposition: Decomposition) -> FeatureEncoder:
    """Encoder rows and biases of an SAE, a linear decomposition (neurons, PCA, ...) or top-K.

    For a linear decomposition with offset ``o`` the code is ``e · (x − o)``, so the bias is
    ``−e · o``; top-K uses its base's (zeroing a component's pre-activation removes it
    from the top K whatever the others do).
    """
    if isinstance(decomposition, SaeDecomposition):
        weights = decomposition.sae.weights()
        return FeatureEncoder(weights.encoder.detach(), weights.bias.detach())
    if isinstance(decomposition, TopK):
        return feature_encoder(decomposition.base)
    if isinstance(decomposition, LinearDecomposition):
        return FeatureEncoder(decomposition.encoder, -(decomposition.encoder @ decomposition.offset))
    raise SaePaperError(f"ablation needs an SAE, linear or top-K decomposition, got {type(decomposition).__name__}")


@dataclass(frozen=True)
class FeatureAxis:
    """What ablating one feature needs: its encoder row, bias and direction."""

    encoder_row: Float[Tensor, " d_in"]
    bias: float
    direction: Float[Tensor, " d_in"]

    @property
    def slope(self) -> float:
        """``e_i · f_i``: how much one unit of movement along the direction moves the pre-activation."""
        return float(self.encoder_row.double() @ self.direction.double())


def feature_axis(decomposition: Decomposition, feature: int) -> FeatureAxis:
    """The encoder row, bias and direction of one feature, checked to be ablatable."""
    if not 0 <= feature < decomposition.n_features:
        raise SaePaperError(f"feature {feature} out of range 0..{decomposition.n_features - 1} of {decomposition.name}")
    encoder = feature_encoder(decomposition)
    axis = FeatureAxis(encoder.encoder[feature], float(encoder.bias[feature]), decomposition.feature_directions()[feature])
    if abs(axis.slope) < SLOPE_EPS:
        raise SaePaperError(
            f"feature {feature} of {decomposition.name}: its direction is orthogonal to its encoder row "
            f"(e·f = {axis.slope:.2e}), so no move along it switches the feature off"
        )
    return axis


def pre_activation(axis: FeatureAxis, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "..."]:
    """``e_i · x + b_i``, in float64."""
    return x.double() @ axis.encoder_row.double() + axis.bias


def ablation_shift(axis: FeatureAxis, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "..."]:
    """The amount ``t`` to move each ``x`` along the feature's direction: ``−p/(e·f)`` where ``p > 0``, else 0."""
    pre = pre_activation(axis, x)
    return torch.where(pre > 0, -pre / axis.slope, torch.zeros_like(pre))


def ablate(
    axis: FeatureAxis,
    x: Float[Tensor, "... d_in"],
    where: Tensor | None = None,
) -> Float[Tensor, "... d_in"]:
    """``x`` with the feature switched off by less-than-rank-one ablation (see the module docstring).

    ``where``: an optional boolean mask over ``x``'s leading dimensions; rows outside it are
    left untouched (e.g. the BOS position). Computed in float64, returned in ``x``'s dtype.
    """
    shift = ablation_shift(axis, x)
    if where is not None:
        shift = shift * where.to(shift.dtype)
    moved = x.double() + shift.unsqueeze(-1) * axis.direction.double().to(x.device)
    return moved.to(x.dtype)


def ablate_feature(decomposition: Decomposition, feature: int, x: Float[Tensor, "... d_in"],
                   where: Tensor | None = None) -> Float[Tensor, "... d_in"]:
    """:func:`ablate` for ``feature`` of ``decomposition`` (convenience)."""
    return ablate(feature_axis(decomposition, feature), x, where)


def ablation_hook(axis: FeatureAxis, skip_bos: bool = True):
    """A TransformerLens forward hook that ablates the feature at every position (BOS excluded)."""

    def hook(activation: Tensor, hook=None) -> Tensor:
        where = None
        if skip_bos:
            where = torch.ones(activation.shape[:-1], dtype=torch.bool, device=activation.device)
            where[..., 0] = False
        return ablate(axis, activation, where)

    return hook


# --------------------------------------------------------------------------------------
# Effect on the next-token logits (Figure 4, right)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogitEffect:
    """Mean change of the next-token logits when a feature is ablated, ``ablated − clean``."""

    diff: Float[Tensor, " d_vocab"]
    """Averaged over the examples, each centred on its mean over the vocabulary; negative: the
    feature promoted that token."""
    mean_shift: float
    """The average uncentred change of a logit (what the centring removed)."""
    n_examples: int
    feature_clean: Float[Tensor, " n_examples"]
    """The feature's activation at each example's position before the ablation."""
    feature_ablated: Float[Tensor, " n_examples"]
    """... and after it (0 up to float rounding)."""

    def most(self, k: int = 10, *, suppressed: bool = True) -> list[tuple[int, float]]:
        """The ``k`` most suppressed (most negative) or most boosted tokens, as (token id, diff)."""
        values, ids = (-self.diff if suppressed else self.diff).topk(k)
        return [(int(i), float(self.diff[i])) for i in ids]

    def n_beyond(self, threshold: float = 0.1) -> tuple[int, int]:
        """(tokens with diff < −threshold, tokens with diff > threshold): the paper's display cut."""
        return int((self.diff < -threshold).sum()), int((self.diff > threshold).sum())


@torch.no_grad()
def logit_effect(
    model,
    hook_name: str,
    decomposition: Decomposition,
    feature: int,
    contexts: Int[Tensor, "n_examples pos"],
    positions: Int[Tensor, " n_examples"],
    *,
    batch_size: int = 8,
) -> LogitEffect:
    """Ablate ``feature`` at ``hook_name`` on every non-BOS position and average the logit change
    at ``positions[k]`` of ``contexts[k]`` over the examples.

    Examples are batched by length and each batch is cut after its largest position (the
    model is causal, so the logits there do not depend on later tokens). ``model`` is a hooked model with
    ``run_with_hooks(tokens, fwd_hooks=[(name, fn)])`` returning logits (a TransformerBridge).
    """
    if contexts.ndim != 2 or positions.shape != contexts.shape[:1]:
        raise SaePaperError(f"contexts must be [n, pos] and positions [n], got {tuple(contexts.shape)} and {tuple(positions.shape)}")
    if len(positions) == 0:
        raise SaePaperError("logit_effect needs at least one example")
    if int(positions.min()) < 1 or int(positions.max()) >= contexts.shape[1]:
        raise SaePaperError(f"positions must lie in 1..{contexts.shape[1] - 1} (0 is BOS), got {positions.tolist()}")
    axis = feature_axis(decomposition, feature)
    seen: dict[str, Tensor] = {}

    def read(activation: Tensor, hook=None) -> Tensor:
        seen["x"] = activation
        return activation

    def ablate_and_read(activation: Tensor, hook=None) -> Tensor:
        ablated = ablation_hook(axis)(activation)
        seen["x"] = ablated
        return ablated

    total = None
    clean_codes, ablated_codes, shifts = [], [], []
    order = positions.argsort()  # batch examples of similar length, each batch cut after its last position
    for start in range(0, len(contexts), batch_size):
        chosen = order[start : start + batch_size]
        pos = positions[chosen]
        tokens = contexts[chosen, : int(pos.max()) + 1]
        rows = torch.arange(len(tokens))
        clean = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, read)])[rows, pos]
        clean_codes.append(pre_activation(axis, seen["x"][rows, pos]).clamp(min=0))
        ablated = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, ablate_and_read)])[rows, pos]
        ablated_codes.append(pre_activation(axis, seen["x"][rows, pos]).clamp(min=0))
        change = ablated.double() - clean.double()
        shift = change.mean(dim=1, keepdim=True)
        shifts.append(shift.flatten())
        change = (change - shift).sum(dim=0)
        total = change if total is None else total + change
    inverse = order.argsort()
    return LogitEffect(
        diff=(total / len(contexts)).float(),
        mean_shift=float(torch.cat(shifts).mean()),
        n_examples=len(contexts),
        feature_clean=torch.cat(clean_codes).float()[inverse],
        feature_ablated=torch.cat(ablated_codes).float()[inverse],
    )
