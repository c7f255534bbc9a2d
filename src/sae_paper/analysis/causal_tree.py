"""The causal tree of a feature across adjacent layers (Section 5.3, Figure 5).

The paper traces where a late-layer feature comes from. Pick a target feature (there the
layer-5 closing-parenthesis feature of Pythia-70M: unembedding its direction gives
closing brackets as all top tokens), then:

1. find its maximum activation ``M`` over the data and sample 20 contexts where it fires
   in ``[M/2, M]`` (:func:`sample_contexts`);
2. for each feature of the previous layer's dictionary, rerun the model with that
   feature ablated and rank the features by how much the ablation lowers the target
   (:func:`feature_effects`);
3. recurse on the strongest, one layer further back each time (:func:`causal_tree`).

Edges are weighted by the effect. The paper also notes that features linked this way
"often point in similar directions in activation space, as measured by cosine
similarity": each node keeps the cosine of its direction with its parent's.

Choices the paper leaves open, made here:

- **Ablation** is the less-than-rank-one ablation of :mod:`sae_paper.analysis.ablation` (move the
  activation along the feature's direction until the feature stops firing), applied at
  every non-BOS position of the context up to the target position (earlier positions
  matter through attention).
- **What is measured.** The root is measured where it was sampled: its activation at
  the target position of each context. A deeper node is measured as its activation
  summed over positions 1..target, since it can feed its parent through attention from
  any earlier position. The same 20 contexts are used at every level, so the tree
  answers "in these contexts, what makes the target fire, and what makes that fire".
  An edge's effect is the mean drop of the parent's measure over the contexts; its
  *relative* effect divides by the parent's mean clean measure.
- **Which features are ablated.** A feature that does not fire anywhere in the contexts
  has no effect (ablating it moves nothing), so only firing features are candidates.
  With ``n_candidates`` set, they are first ranked by a first-order estimate of their
  effect (the gradient of the parent's measure with respect to the previous layer's
  activations, dotted with each ablation's move: attribution patching) and only the top
  ``n_candidates`` are ablated exactly; the tree ranks by the exact effects. The
  estimate only chooses whom to test; with ``n_candidates=None`` every firing feature
  is tested.

Any model with TransformerLens-style ``run_with_hooks(tokens, fwd_hooks=[(name, fn)],
stop_at_layer=...)`` and hooks named ``blocks.{layer}.hook_resid_post`` works (a
TransformerBridge; the tests use a two-layer toy with a planted parent feature).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.analysis.ablation import feature_encoder
from sae_paper.analysis.token_activations import TokenActivations
from sae_paper.core.decompositions import Decomposition
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError


@dataclass(frozen=True)
class TreeContexts:
    """The contexts a tree is computed on, and the target position in each."""

    tokens: Int[Tensor, "n pos"]
    """Token ids (BOS at 0), cut after the largest target position."""
    positions: Int[Tensor, " n"]
    target_activation: Float[Tensor, " n"]
    """The target's activation at each position, from the data it was sampled from."""
    max_activation: float
    """``M``: the target's largest activation over the data."""
    n_eligible: int
    """Contexts with an activation in ``[low·M, M]`` that the sample was drawn from."""


def sample_contexts(
    acts: TokenActivations,
    activation: Float[Tensor, " n_rows"],
    *,
    n: int = 20,
    low: float = 0.5,
    seed: int = 0,
) -> TreeContexts:
    """Up to ``n`` distinct contexts where the feature's activation lies in ``[low·M, M]``, seeded.

    ``activation``: the target feature's activation on every row of ``acts``. Each context
    is used once, at its highest eligible position.
    """
    top = float(activation.max())
    if top <= 0:
        raise SaePaperError("the target feature never fires on these activations")
    per_context = activation.reshape(-1, acts.per_context)
    best, where = per_context.max(dim=1)
    eligible = torch.nonzero(best >= low * top).flatten()
    generator = torch.Generator().manual_seed(seed)
    chosen = eligible[torch.randperm(len(eligible), generator=generator)[:n]].sort().values
    positions = where[chosen] + 1
    tokens = acts.contexts[chosen, : int(positions.max()) + 1]
    return TreeContexts(tokens, positions, best[chosen], top, len(eligible))


def _hook(layer: int) -> str:
    return Site("resid_post", layer).hook_name


def _run(model, tokens: Tensor, read_layers: Sequence[int], edit=None, edit_layer: int | None = None) -> dict[int, Tensor]:
    """The residual stream after each block in ``read_layers``, with ``edit`` applied after ``edit_layer``
    (before it is read there)."""
    seen: dict[int, Tensor] = {}

    def reader(layer: int):
        def read(activation: Tensor, hook=None) -> Tensor:
            seen[layer] = activation
            return activation
        return read

    hooks = [] if edit is None else [(_hook(edit_layer), edit)]
    hooks += [(_hook(layer), reader(layer)) for layer in read_layers]
    model.run_with_hooks(tokens, fwd_hooks=hooks, stop_at_layer=max(read_layers) + 1)
    return seen


@dataclass(frozen=True)
class NodeMeasure:
    """How a node is measured: its activation, weighted per (context, position), summed per context
    (the root: one-hot at the target position; deeper nodes: 1 on positions 1..target)."""

    layer: int
    feature: int
    weights: Float[Tensor, "n pos"]

    def __call__(self, decomposition: Decomposition, x: Float[Tensor, "n pos d"]) -> Float[Tensor, " n"]:
        encoder = feature_encoder(decomposition)
        pre = x.float() @ encoder.encoder[self.feature].float() + float(encoder.bias[self.feature])
        return (pre.clamp(min=0) * self.weights).sum(dim=1)


def _root_weights(contexts: TreeContexts) -> Tensor:
    weights = torch.zeros(contexts.tokens.shape, dtype=torch.float32)
    weights[torch.arange(len(weights)), contexts.positions] = 1.0
    return weights


def _prefix_weights(contexts: TreeContexts) -> Tensor:
    """1 on positions 1..target of each context, 0 elsewhere (BOS and after the target)."""
    steps = torch.arange(contexts.tokens.shape[1])
    return ((steps >= 1) & (steps <= contexts.positions.unsqueeze(1))).float()


@dataclass(frozen=True)
class FeatureEffects:
    """Effects of ablating previous-layer features on one node's measure."""

    features: Int[Tensor, " k"]
    """The features ablated exactly, strongest drop first."""
    drops: Float[Tensor, " k"]
    """Mean drop of the node's measure over the contexts (clean − ablated)."""
    clean: float
    """The node's mean clean measure."""
    n_firing: int
    """Previous-layer features firing somewhere in the contexts (the candidates)."""
    estimates: Float[Tensor, " k"]
    """The first-order estimates of the same drops (what chose the candidates; NaN if not needed)."""
    previous_activations: Float[Tensor, "n pos d"] = field(repr=False, default=None)
    """The clean residual stream of the previous layer (its nodes are measured on it)."""


def feature_effects(
    model,
    contexts: TreeContexts,
    measure: NodeMeasure,
    decomposition: Decomposition,
    previous: Decomposition,
    *,
    n_candidates: int | None = 32,
    batch_size: int = 16,
) -> FeatureEffects:
    """Ablate each firing feature of ``previous`` (the dictionary of layer ``measure.layer − 1``)
    and measure the drop of ``measure`` (a feature of ``decomposition`` at ``measure.layer``).

    One clean pass (with a backward pass when candidates must be pre-ranked) gives the
    clean measure, the previous layer's activations and the gradient; then each candidate
    is ablated in every context, the contexts one at a time, cut after their target position.
    """
    layer = measure.layer
    tokens, positions = contexts.tokens, contexts.positions
    encoder = feature_encoder(previous)
    directions = previous.feature_directions().float()
    slopes = (encoder.encoder.double() * directions.double()).sum(dim=1)
    prefix = _prefix_weights(contexts)

    clean_x, clean, gradient = _clean_pass(model, tokens, measure, decomposition, want_gradient=n_candidates is not None)
    with torch.no_grad():
        pre = clean_x.float() @ encoder.encoder.float().T + encoder.bias.float()  # [n, pos, F]
        firing = ((pre > 0) & (prefix.unsqueeze(-1) > 0)).any(dim=1).any(dim=0)
        candidates = torch.nonzero(firing).flatten()
        estimates = torch.full((previous.n_features,), math.nan)
        if gradient is not None:
            shift = torch.where(pre > 0, -pre / slopes.float(), torch.zeros_like(pre)) * prefix.unsqueeze(-1)
            estimates = -(shift * (gradient.float() @ directions.T)).sum(dim=(0, 1)) / len(tokens)
            if len(candidates) > n_candidates:
                candidates = candidates[estimates[candidates].argsort(descending=True)[:n_candidates]]
        del pre

    drops = torch.zeros(len(candidates), dtype=torch.float64)
    with torch.no_grad():
        for c in range(len(tokens)):
            length = int(positions[c]) + 1
            one = tokens[c : c + 1, :length]
            single = NodeMeasure(measure.layer, measure.feature, measure.weights[c : c + 1, :length])
            for start in range(0, len(candidates), batch_size):
                chosen = candidates[start : start + batch_size]
                edit = _batched_ablation(encoder.encoder[chosen], encoder.bias[chosen], directions[chosen], slopes[chosen])
                read = _run(model, one.expand(len(chosen), -1), [layer], edit, layer - 1)
                drops[start : start + len(chosen)] += clean[c] - single(decomposition, read[layer]).double()
    drops /= len(tokens)
    order = drops.argsort(descending=True)
    return FeatureEffects(candidates[order], drops[order].float(), float(clean.mean()), int(firing.sum()),
                          estimates[candidates[order]].float(), clean_x.detach())


def _clean_pass(model, tokens, measure, decomposition, *, want_gradient: bool):
    """(previous layer's activations, the measure per context, the measure's gradient there or None).

    With ``g = ∂(Σ measure)/∂x`` at the previous layer, ablating feature ``j`` moves ``x`` by
    ``t_j f_j`` (``t_j = −p_j / (e_j·f_j)`` where it fires), so the measure changes by about
    ``Σ_{contexts, positions} t_j (g · f_j)``: the first-order estimate (attribution patching).
    """
    layer = measure.layer
    if not want_gradient:
        with torch.no_grad():
            read = _run(model, tokens, [layer - 1, layer])
            return read[layer - 1].float(), measure(decomposition, read[layer]).double(), None
    delta = torch.zeros(tokens.shape + (decomposition.d_in,), requires_grad=True)

    def add_delta(activation: Tensor, hook=None) -> Tensor:
        return activation + delta.to(activation.dtype)

    with torch.enable_grad():
        read = _run(model, tokens, [layer - 1, layer], add_delta, layer - 1)
        values = measure(decomposition, read[layer])
        (gradient,) = torch.autograd.grad(values.sum(), delta)
    return read[layer - 1].detach().float(), values.detach().double(), gradient


def _batched_ablation(encoder_rows: Tensor, biases: Tensor, directions: Tensor, slopes: Tensor):
    """A hook ablating feature ``k`` in batch row ``k`` at every non-BOS position."""

    def hook(activation: Tensor, hook=None) -> Tensor:
        x = activation.double()
        pre = torch.einsum("kpd,kd->kp", x, encoder_rows.double()) + biases.double().unsqueeze(1)
        shift = torch.where(pre > 0, -pre / slopes.unsqueeze(1), torch.zeros_like(pre))
        shift[:, 0] = 0.0  # never touch BOS
        return (x + shift.unsqueeze(-1) * directions.double().unsqueeze(1)).to(activation.dtype)

    return hook


@dataclass(frozen=True)
class TreeNode:
    """One feature of the tree and its link to its parent."""

    layer: int
    feature: int
    clean: float
    """Mean measure over the contexts (root: activation at the target position; others: summed over 1..target)."""
    effect: float = math.nan
    """Mean drop of the parent's measure when this feature is ablated (NaN at the root)."""
    relative_effect: float = math.nan
    """``effect`` divided by the parent's ``clean``."""
    cosine: float = math.nan
    """Cosine similarity of this feature's direction with its parent's."""
    children: tuple["TreeNode", ...] = field(default=())

    def walk(self, depth: int = 0):
        """Every node with its depth, depth-first."""
        yield self, depth
        for child in self.children:
            yield from child.walk(depth + 1)

    def edges(self) -> list[tuple["TreeNode", "TreeNode"]]:
        """(parent, child) pairs."""
        return [(node, child) for node, _ in self.walk() for child in node.children]

    def lines(self, label=lambda node: "") -> list[str]:
        """An indented text rendering (for logs and reports)."""
        out = []
        for node, depth in self.walk():
            link = "" if depth == 0 else f"  drop {node.effect:.3g} ({node.relative_effect:.0%}), cos {node.cosine:+.2f}"
            out.append(f"{'    ' * depth}L{node.layer} #{node.feature}{link}  {label(node)}".rstrip())
        return out


def causal_tree(
    model,
    decompositions: Mapping[int, Decomposition],
    target_layer: int,
    target_feature: int,
    contexts: TreeContexts,
    *,
    depth: int = 2,
    branching: int = 3,
    expand: int | None = None,
    n_candidates: int | None = 32,
    min_relative_effect: float = 0.0,
) -> TreeNode:
    """The tree of :func:`feature_effects`, recursing ``depth`` layers back from the target.

    ``decompositions[layer]``: the dictionary of the residual stream after block ``layer``,
    for the target layer and each layer the tree descends to. Each node keeps its
    ``branching`` strongest parents whose relative effect exceeds ``min_relative_effect``,
    and the ``expand`` strongest of those (default: all) are traced further down.
    """
    if target_layer not in decompositions:
        raise SaePaperError(f"no dictionary for the target layer {target_layer}")
    missing = [layer for layer in range(target_layer - depth, target_layer) if layer not in decompositions]
    if missing:
        raise SaePaperError(f"a tree of depth {depth} from layer {target_layer} needs dictionaries at layers "
                            f"{', '.join(map(str, missing))} too")
    root = NodeMeasure(target_layer, target_feature, _root_weights(contexts))
    limits = (branching, branching if expand is None else expand, n_candidates, min_relative_effect)
    return _grow(model, decompositions, contexts, root, None, None, depth, limits)


def _grow(model, decompositions, contexts, measure, clean, link, depth, limits) -> TreeNode:
    """The node of ``measure`` and, ``depth`` layers down, its parents. ``clean``: its mean clean
    measure when the caller already knows it (a parent's pass gives its children's)."""
    branching, expand, n_candidates, min_relative = limits
    decomposition = decompositions[measure.layer]
    children: list[TreeNode] = []
    if depth > 0:
        previous = decompositions[measure.layer - 1]
        effects = feature_effects(model, contexts, measure, decomposition, previous, n_candidates=n_candidates)
        clean = effects.clean
        mine = decomposition.feature_directions()[measure.feature].float()
        theirs = previous.feature_directions().float()
        for feature, drop in zip(effects.features.tolist(), effects.drops.tolist()):
            if len(children) >= branching or clean <= 0 or drop <= 0 or drop / clean <= min_relative:
                break
            cosine = float(torch.nn.functional.cosine_similarity(mine, theirs[feature], dim=0))
            child = NodeMeasure(measure.layer - 1, feature, _prefix_weights(contexts))
            with torch.no_grad():
                child_clean = float(child(previous, effects.previous_activations).mean())
            deeper = depth - 1 if len(children) < expand else 0
            children.append(_grow(model, decompositions, contexts, child, child_clean, (drop, drop / clean, cosine),
                                  deeper, limits))
    elif clean is None:
        with torch.no_grad():
            clean = float(measure(decomposition, _run(model, contexts.tokens, [measure.layer])[measure.layer]).mean())
    effect, relative, cosine = link if link is not None else (math.nan, math.nan, math.nan)
    return TreeNode(measure.layer, measure.feature, clean, effect, relative, cosine, tuple(children))


def unembedding_scores(
    model,
    decomposition: Decomposition,
    in_class: Sequence[bool] | Tensor,
    *,
    k: int = 10,
) -> tuple[Float[Tensor, " n_features"], Int[Tensor, "n_features k"]]:
    """For every feature, the share of its ``k`` top unembedded tokens that are in a class
    (e.g. closing brackets), and those top tokens (Section 5.3's unembedding test)."""
    from sae_paper.analysis.feature_stats import unembed_direction

    mask = torch.as_tensor(in_class, dtype=torch.bool)
    directions = decomposition.feature_directions().float()
    scores, tops = [], []
    for start in range(0, len(directions), 256):
        logits = unembed_direction(model, directions[start : start + 256])
        top = logits.topk(k, dim=1).indices
        tops.append(top)
        scores.append(mask[top].float().mean(dim=1))
    return torch.cat(scores), torch.cat(tops)
