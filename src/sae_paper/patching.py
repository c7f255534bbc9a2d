"""Counterfactual patching along dictionary features, ordered by ACDC (Section 4, Appendix F).

The method
----------
Fix a layer of the residual stream and a decomposition of it into features ``f_j`` with
codes ``c_j`` (an SAE, PCA, an α = 0 dictionary: any :class:`~sae_paper.decompositions.Decomposition`).
Take a **base** IOI prompt and its counterfactual **target**, which differs only in the
indirect object's name (:mod:`sae_paper.ioi`).

1. Run the target; keep its final-position logits ``y`` and its codes ``c̄_{i,j}`` at every
   position ``i``.
2. Run the base up to the layer; encode its codes ``c_{i,j}``.
3. For a set ``F`` of features, add at every position ``i``
   ``Σ_{j∈F} (c̄_{i,j} − c_{i,j}) f_j`` to the base's residual stream ``x_i``. The
   reconstruction error of the base stays in place, so patching *every* feature of a
   lossless decomposition turns the base activations into the target's exactly, while an
   SAE's error difference ``e_target − e_base`` is never patched (which is why a sparser SAE,
   with a larger error, has a higher floor of KL).
4. Finish the forward pass from the layer to get logits ``z`` and measure
   ``D_KL(z ‖ y) = Σ_v softmax(z)_v (log softmax(z)_v − log softmax(y)_v)`` at each prompt's
   **final position** (where the answer is predicted), averaged over the prompts. This is
   the direction of the authors' code (``F.kl_div(log_softmax(y), log_softmax(z),
   log_target=True)``). The **edit magnitude** of ``F`` is the mean L2 norm of the added
   vector over all patched (prompt, position) pairs.

Positions: every position but 0 is patched. Position 0 is BOS in both prompts, so its
activation, and hence every decomposition's code there, is identical in base and target
and the patch would be exactly zero; leaving it out also keeps SmolLM2's huge-norm BOS
activation, which no dictionary is trained on, away from every encoder, and keeps the
mean edit magnitude an average over the positions that carry the prompt. Padding
positions (prompts of different templates differ in length) are never patched.

Ordering features: ACDC on a flat graph
---------------------------------------
The paper orders features with ACDC (Conmy et al. 2023, Algorithm 4.1) over the features
as a flat graph, "each feature contributing an independent change to D_KL": the result is
an ordering, and ``F`` is the first ``k`` features of it. The authors' code starts with
every feature patched and, for each threshold ``τ`` of an ascending sweep (50 values
log-spaced from 1e-5 to 1), visits the still-patched features in a random order and
un-patches feature ``j`` for good if that raises the mean KL by less than ``τ``; the patched
set after each threshold is one point of the curve "KL against number of patched
features". :func:`acdc` is that algorithm, exactly, for any set function.

It needs one forward pass (from the layer on, over the 50 prompts) per visited feature per
threshold, ``Σ_τ |F_τ|`` in all: hundreds of thousands of passes for a dictionary of
thousands of features, which the authors ran on a GPU and a 2-core CPU cannot (one pass
takes seconds there). :func:`patching_curve` offers two orderings:

- ``"acdc"``: :func:`acdc` itself over the ``n_exact`` features the attribution ranks
  highest; with ``n_exact`` at least the number of changing features it *is* the paper's
  procedure. Otherwise the other features are un-patched first, as one block.
- ``"attribution"`` (the CPU default): the flat graph with independent changes, where each
  feature's change to the KL is its **integrated-gradients attribution**: the gradient of
  the mean KL along the straight path from the base residuals to the all-patched ones,
  averaged over ``attribution_steps`` midpoints, dotted with the feature's edit. These
  changes add up to ``KL(all) − KL(none)`` (completeness), so they are a split of the whole
  effect into one independent share per feature, and for independent changes ACDC's
  answer at threshold ``τ`` is the features whose share is at least ``τ`` (a test checks
  :func:`acdc` gives exactly :func:`threshold_sets` on an additive problem). Estimating
  every share costs ``attribution_steps`` forward-and-backward passes instead of a pass
  per feature per threshold. What it gives up: the shares are first-order (exact for a
  model linear in the residual), and interactions between features (two redundant
  features, each unimportant while the other is patched) are averaged over the path
  rather than resolved one decision at a time.

Why not measure each feature's own effect exactly, one pass each, and threshold that?
Removing one feature from the all-patched set is a *marginal* change: for PCA, where the
all-patched KL is its minimum, every single component's removal costs almost nothing
(a few thousandths of a nat on SmolLM2's layer 12), so a threshold above that un-patches everything at
once; the sequential algorithm avoids that only because each removal changes the state the
next one is judged in.

Features whose code never changes (``c̄_j = c_j`` at every position of every prompt, common
in a sparse dictionary) have no effect at all: they are left out of every set without a
pass, and counts of patched features count only features that change. Every point of a
curve, whatever the ordering, is an exact forward pass of its feature set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from sae_paper import SaePaperError
from sae_paper.decompositions import Decomposition
from sae_paper.ioi import IoiDataset, final_logits
from sae_paper.models import Site

PAPER_THRESHOLDS: tuple[float, ...] = tuple(10 ** (-5 + 5 * i / 49) for i in range(50))
"""The authors' sweep: 50 thresholds log-spaced from 1e-5 to 1 (``np.logspace(-5, 0, 50)``)."""

Ordering = Literal["attribution", "acdc"]


def log_thresholds(n: int, low: float = 1e-5, high: float = 1.0) -> tuple[float, ...]:
    """``n`` thresholds log-spaced from ``low`` to ``high`` (the paper: 50 from 1e-5 to 1)."""
    if n < 2 or not 0 < low < high:
        raise SaePaperError(f"need n >= 2 thresholds and 0 < low < high, got n={n}, low={low}, high={high}")
    return tuple(math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (n - 1)) for i in range(n))


def kl_divergence(z: Float[Tensor, "... d_vocab"], y: Float[Tensor, "... d_vocab"]) -> Float[Tensor, "..."]:
    """``D_KL(softmax(z) ‖ softmax(y))`` per row, in float64: the patched run ``z`` against the target ``y``."""
    log_p = torch.log_softmax(z.double(), dim=-1)
    log_q = torch.log_softmax(y.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


# --------------------------------------------------------------------------------------
# Running the model from a layer on
# --------------------------------------------------------------------------------------


class ModelTail:
    """The model from the residual stream after block ``layer`` to each prompt's final-position logits.

    TransformerBridge's ``start_at_layer`` still runs blocks ``0..layer`` (it feeds the
    residual in as embeddings and discards their output), so a pass from the layer would
    cost a whole forward. Instead the wrapped Hugging Face model's own decoder-layer list is
    swapped, for the duration of the call, for the blocks after ``layer``, and it is run on
    the residual as ``inputs_embeds``: it builds the causal mask and rotary position
    embeddings as usual, applies its final norm, and only the final positions go through
    the unembedding. :meth:`reference` does the same through the bridge's hooks (a full
    forward with the site replaced); the tests check the two agree.
    """

    def __init__(self, model, layer: int):
        self.model, self.layer = model, layer
        self.hook_name = Site("resid_post", layer).hook_name
        hf_model = getattr(model, "original_model", None)
        base = getattr(hf_model, "base_model", None)
        if base is None or not isinstance(getattr(base, "layers", None), nn.ModuleList):
            raise SaePaperError(f"cannot run {type(model).__name__} from a layer: expected a Hugging Face model with a 'layers' list")
        if not 0 <= layer < len(base.layers):
            raise SaePaperError(f"layer {layer} out of range for a model with {len(base.layers)} layers")
        self._base, self._head = base, hf_model.get_output_embeddings()

    @contextmanager
    def _later_layers(self):
        layers = self._base.layers
        self._base.layers = nn.ModuleList(list(layers)[self.layer + 1 :])
        try:
            yield
        finally:
            self._base.layers = layers

    def __call__(self, resid: Float[Tensor, "batch pos d_model"], lengths: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        with self._later_layers():
            hidden = self._base(inputs_embeds=resid, use_cache=False).last_hidden_state
        return self._head(final_logits(hidden, lengths))

    def reference(self, tokens: Int[Tensor, "batch pos"], resid: Float[Tensor, "batch pos d_model"],
                  lengths: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
        """The same logits from a full bridge forward on ``tokens`` with the site overwritten by ``resid``."""
        logits = self.model.run_with_hooks(tokens, fwd_hooks=[(self.hook_name, lambda activation, hook: resid)])
        return final_logits(logits, lengths)


def residual_at(model, tokens: Int[Tensor, "batch pos"], layer: int) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream after block ``layer`` (the forward pass stops there)."""
    captured = {}

    def grab(activation: Tensor, hook) -> Tensor:
        captured["resid"] = activation
        return activation

    model.run_with_hooks(tokens, stop_at_layer=layer + 1, fwd_hooks=[(Site("resid_post", layer).hook_name, grab)])
    return captured["resid"].detach().float()


# --------------------------------------------------------------------------------------
# One layer, one prompt set: what every decomposition shares
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class PatchingSetup:
    """Base and target residuals at one layer, the target's logits, and a way to finish the pass.

    ``tail(resid, lengths)`` maps residuals ``[batch, pos, d]`` to final-position logits; it
    may be any differentiable function (a :class:`ModelTail`, or a toy readout in tests).
    """

    base_resid: Float[Tensor, "batch pos d_model"]
    target_resid: Float[Tensor, "batch pos d_model"]
    lengths: Int[Tensor, " batch"]
    tail: Callable[[Tensor, Tensor], Tensor]
    layer: int = -1
    target_logits: Float[Tensor, "batch d_vocab"] = field(init=False)
    """``y``: the target's final-position logits, through the same ``tail``."""
    base_logits: Float[Tensor, "batch d_vocab"] = field(init=False)
    positions: tuple[Int[Tensor, " rows"], Int[Tensor, " rows"]] = field(init=False)
    """(prompt index, position) of every patched row: positions ``1 .. lengths[b] − 1``."""

    def __post_init__(self) -> None:
        if self.base_resid.shape != self.target_resid.shape or self.base_resid.ndim != 3:
            raise SaePaperError(f"base and target residuals must share a [batch, pos, d] shape, got "
                                f"{tuple(self.base_resid.shape)} and {tuple(self.target_resid.shape)}")
        if len(self.lengths) != len(self.base_resid) or int(self.lengths.max()) > self.base_resid.shape[1]:
            raise SaePaperError("lengths must give one length per prompt, at most the padded width")
        batch = [torch.full((int(n) - 1,), b) for b, n in enumerate(self.lengths)]
        pos = [torch.arange(1, int(n)) for n in self.lengths]
        self.positions = (torch.cat(batch), torch.cat(pos))
        with torch.no_grad():
            self.target_logits = self.tail(self.target_resid, self.lengths).float()
            self.base_logits = self.tail(self.base_resid, self.lengths).float()

    @classmethod
    @torch.no_grad()
    def from_model(cls, model, dataset: IoiDataset, layer: int) -> "PatchingSetup":
        """Run base and target prompts to the residual stream after ``layer`` (two partial passes)."""
        return cls(residual_at(model, dataset.base_tokens, layer), residual_at(model, dataset.target_tokens, layer),
                   dataset.lengths, ModelTail(model, layer), layer)

    @property
    def n_prompts(self) -> int:
        return len(self.lengths)

    def rows(self, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "rows d_model"]:
        return resid[self.positions]

    def kl_base(self) -> float:
        """Mean ``D_KL(z_base ‖ y)``: nothing patched."""
        return kl_divergence(self.base_logits, self.target_logits).mean().item()

    def run_edits(self, edits: Float[Tensor, "m rows d_model"]) -> Float[Tensor, "m batch"]:
        """Per-prompt KL for each of ``m`` edits added at the patched rows, in one batched pass."""
        m = len(edits)
        resid = self.base_resid.repeat(m, 1, 1)
        batch, pos = self.positions
        offsets = (torch.arange(m) * self.n_prompts).repeat_interleave(len(batch))
        resid = resid.index_put((batch.repeat(m) + offsets, pos.repeat(m)), edits.reshape(-1, edits.shape[-1]).to(resid.dtype),
                                accumulate=True)
        logits = self.tail(resid, self.lengths.repeat(m))
        return kl_divergence(logits.view(m, self.n_prompts, -1), self.target_logits.unsqueeze(0))


# --------------------------------------------------------------------------------------
# One decomposition: feature edits and their exact evaluation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchResult:
    """Exact results of patching some feature sets (one entry per set)."""

    kl: Float[Tensor, " m"]
    """Mean over prompts of ``D_KL(z ‖ y)`` at the final position."""
    edit_magnitude: Float[Tensor, " m"]
    """Mean L2 norm of the added vector over the patched (prompt, position) rows."""
    kl_per_prompt: Float[Tensor, "m batch"]


class FeaturePatching:
    """Patching one decomposition's features between base and target (:class:`PatchingSetup`).

    ``delta[r, j] = c̄_{r,j} − c_{r,j}`` at every patched row ``r``; a feature set is a boolean
    mask over features, and its edit at row ``r`` is ``Σ_j mask_j · delta[r, j] · f_j``.
    """

    def __init__(self, setup: PatchingSetup, decomposition: Decomposition, *, chunk: int = 4):
        self.setup, self.decomposition, self.chunk = setup, decomposition, chunk
        self.name = decomposition.name
        with torch.no_grad():
            base_codes = decomposition.encode(setup.rows(setup.base_resid))
            target_codes = decomposition.encode(setup.rows(setup.target_resid))
            self.delta: Float[Tensor, "rows n_features"] = (target_codes - base_codes).float()
            self.directions: Float[Tensor, "n_features d_model"] = decomposition.feature_directions().float()
        self.n_features = self.delta.shape[1]
        self.active: Bool[Tensor, " n_features"] = (self.delta != 0).any(dim=0)
        """Features whose code changes somewhere; the others have no effect and are never patched."""
        self.n_evaluations = 0
        """Forward passes over the prompts spent so far, in equivalents (an attribution step counts 3)."""

    def edits(self, masks: Bool[Tensor, "m n_features"]) -> Float[Tensor, "m rows d_model"]:
        return (self.delta.unsqueeze(0) * masks.unsqueeze(1).to(self.delta.dtype)) @ self.directions

    @torch.no_grad()
    def evaluate(self, masks: Bool[Tensor, "m n_features"]) -> PatchResult:
        """Exact KL and edit magnitude of each feature set, ``chunk`` sets per forward pass."""
        masks = masks.reshape(-1, self.n_features)
        kls, norms = [], []
        for start in range(0, len(masks), self.chunk):
            edits = self.edits(masks[start : start + self.chunk])
            kls.append(self.setup.run_edits(edits))
            norms.append(edits.norm(dim=-1).mean(dim=-1))
        self.n_evaluations += len(masks)
        per_prompt = torch.cat(kls)
        return PatchResult(per_prompt.mean(dim=1), torch.cat(norms).double(), per_prompt)

    def attribution(self, steps: int = 2) -> Float[Tensor, " n_features"]:
        """Integrated-gradients estimate of the change in mean KL from patching each feature alone.

        ``a_j = Σ_r delta[r, j] · f_j · mean_t ∇_x KL(x_base + t·E_all)[r]`` at the midpoints
        ``t = (k + ½)/steps``, where ``E_all`` is the all-features edit; ``Σ_j a_j ≈ KL(all) −
        KL(none)``. Negative for features that move the output towards the target.
        """
        setup = self.setup
        full_edit = self.edits(self.active.unsqueeze(0))[0]
        t = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
        resid = setup.base_resid.repeat(steps, 1, 1)
        batch, pos = setup.positions
        offsets = (torch.arange(steps) * setup.n_prompts).repeat_interleave(len(batch))
        index = (batch.repeat(steps) + offsets, pos.repeat(steps))
        resid = resid.index_put(index, (t.repeat_interleave(len(batch)).unsqueeze(1) * full_edit.repeat(steps, 1)), accumulate=True)
        resid.requires_grad_(True)
        with torch.enable_grad():
            logits = setup.tail(resid, setup.lengths.repeat(steps))
            loss = kl_divergence(logits.view(steps, setup.n_prompts, -1), setup.target_logits.unsqueeze(0)).mean()
            (grad,) = torch.autograd.grad(loss, resid)
        self.n_evaluations += 3 * steps  # a backward costs about two forwards
        mean_grad = grad[index].view(steps, len(batch), -1).sum(dim=0).float()  # mean over steps (loss is averaged over them)
        return (self.delta * (mean_grad @ self.directions.T)).sum(dim=0).double()


# --------------------------------------------------------------------------------------
# Orderings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcdcStep:
    threshold: float
    mask: Bool[Tensor, " n_features"]
    kl: float


def acdc(
    mean_kl: Callable[[Tensor], Tensor],
    start: Bool[Tensor, " n_features"],
    thresholds: Sequence[float],
    *,
    seed: int = 0,
) -> list[AcdcStep]:
    """ACDC (Conmy et al. 2023, Alg. 4.1) on a flat graph of features, as the authors' code runs it.

    Start with ``start`` patched. For each threshold in ascending order, visit the patched
    features in a fresh seeded random order and un-patch feature ``j`` for good when that
    raises the KL by less than the threshold. ``mean_kl(masks [m, n]) -> [m]`` is the set
    function; results are memoised, so a pass that changes nothing costs no new calls.
    Returns the patched set and its KL after each threshold.
    """
    memo: dict[bytes, float] = {}

    def value(mask: Tensor) -> float:
        key = mask.numpy().tobytes()
        if key not in memo:
            memo[key] = float(mean_kl(mask.unsqueeze(0))[0])
        return memo[key]

    generator = torch.Generator().manual_seed(seed)
    state = start.clone()
    current = value(state)
    steps = []
    for threshold in sorted(thresholds):
        patched = state.nonzero().flatten()
        for j in patched[torch.randperm(len(patched), generator=generator)].tolist():
            trial = state.clone()
            trial[j] = False
            trial_value = value(trial)
            if trial_value - current < threshold:
                state, current = trial, trial_value
        steps.append(AcdcStep(float(threshold), state.clone(), current))
    return steps


def threshold_sets(effects: Float[Tensor, " n_features"], allowed: Bool[Tensor, " n_features"],
                   thresholds: Sequence[float]) -> list[Bool[Tensor, " n_features"]]:
    """The patched set at each threshold when effects are independent: ``{j allowed : effect_j ≥ τ}``."""
    return [allowed & (effects >= threshold) for threshold in thresholds]


# --------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurvePoint:
    n_features: int
    """Patched features (only features whose code changes are counted)."""
    kl: float
    edit_magnitude: float
    threshold: float | None
    """The ACDC threshold that gave this set (None: the all-patched and nothing-patched ends)."""


def _cost_to_reach(costs: Sequence[float], kls: Sequence[float], level: float) -> float | None:
    """The cost at which the lower envelope of (cost, KL) points first reaches KL ≤ ``level``,
    interpolated linearly between the two measured points around the crossing."""
    envelope, best = [], math.inf
    for cost, kl in sorted(zip(costs, kls)):
        best = min(best, kl)
        envelope.append((float(cost), best))
    for i, (cost, kl) in enumerate(envelope):
        if kl <= level:
            if i == 0:
                return cost
            previous_cost, previous_kl = envelope[i - 1]
            return previous_cost + (cost - previous_cost) * (previous_kl - level) / (previous_kl - kl)
    return None


@dataclass(frozen=True)
class PatchingCurve:
    """KL against patched features and against edit magnitude for one decomposition at one layer."""

    name: str
    layer: int
    points: tuple[CurvePoint, ...]
    """Sorted by number of patched features, from 0 (the base) to all active features."""
    n_features: int
    n_active: int
    kl_base: float
    """KL with nothing patched."""
    kl_all: float
    """KL with every feature patched: the floor set by the decomposition's reconstruction error."""
    n_evaluations: int
    """Forward-pass equivalents spent (exact sets, plus ~3 per attribution step)."""
    seconds: float
    ordering: str
    order: tuple[int, ...] = ()
    """Active features from most to least important by the effects used for the threshold sweep."""

    def features_to_reach(self, kl: float) -> float | None:
        """Patched features needed to bring the KL down to ``kl``, read off the curve (None: never reached).

        The curve as the figure draws it: its lower envelope (the lowest KL reached with at
        most that many features), linearly interpolated between measured points.
        """
        return _cost_to_reach([p.n_features for p in self.points], [p.kl for p in self.points], kl)

    def edit_to_reach(self, kl: float) -> float | None:
        """Mean edit magnitude needed to bring the KL down to ``kl``, read off the curve the same way."""
        return _cost_to_reach([p.edit_magnitude for p in self.points], [p.kl for p in self.points], kl)

    def to_dict(self) -> dict:
        return {"name": self.name, "layer": self.layer, "n_features": self.n_features, "n_active": self.n_active,
                "kl_base": self.kl_base, "kl_all": self.kl_all, "n_evaluations": self.n_evaluations,
                "seconds": self.seconds, "ordering": self.ordering,
                "points": [p.__dict__ for p in self.points]}


def patching_curve(
    patching: FeaturePatching,
    *,
    thresholds: Sequence[float] = PAPER_THRESHOLDS,
    ordering: Ordering = "attribution",
    n_exact: int = 0,
    attribution_steps: int = 2,
    seed: int = 0,
) -> PatchingCurve:
    """The KL-against-features curve of one decomposition (see the module docstring).

    1. attribute the change in KL to every changing feature (integrated gradients);
    2. ``ordering="attribution"``: the patched set at each threshold is the features whose
       share is at least the threshold; ``ordering="acdc"``: sequential :func:`acdc` over the
       ``n_exact`` features with the largest shares;
    3. evaluate every distinct set, plus all-patched and none, exactly.
    """
    if ordering not in Ordering.__args__:
        raise SaePaperError(f"ordering must be one of {', '.join(Ordering.__args__)}, got {ordering!r}")
    started = time.perf_counter()
    before = patching.n_evaluations
    active = patching.active
    n = patching.n_features
    memo: dict[bytes, tuple[float, float]] = {}

    def exact(masks: list[Tensor]) -> list[tuple[float, float]]:
        todo = {m.numpy().tobytes(): m for m in masks if m.numpy().tobytes() not in memo}
        if todo:
            result = patching.evaluate(torch.stack(list(todo.values())))
            for key, kl, edit in zip(todo, result.kl.tolist(), result.edit_magnitude.tolist()):
                memo[key] = (kl, edit)
        return [memo[m.numpy().tobytes()] for m in masks]

    def mean_kl(masks: Tensor) -> Tensor:
        return torch.tensor([kl for kl, _ in exact(list(masks))], dtype=torch.float64)

    # 1. each feature's share of the change in KL (positive: patching it moves towards the target)
    share = -patching.attribution(attribution_steps) if active.any() else torch.zeros(n, dtype=torch.float64)
    share = torch.where(active, share, torch.full_like(share, -math.inf))
    nothing = torch.zeros(n, dtype=torch.bool)

    # 2. the patched set of each threshold
    sets: list[tuple[float | None, Tensor]] = [(None, active.clone()), (None, nothing)]
    if ordering == "attribution":
        sets += list(zip(thresholds, threshold_sets(share, active, thresholds)))
        importance = share
    else:
        ranked = [j for j in torch.argsort(share, descending=True, stable=True).tolist() if active[j]]
        candidates = ranked[: max(0, n_exact)]
        start = nothing.clone()
        start[candidates] = True
        if len(candidates) < int(active.sum()):
            sets.append((None, start.clone()))
        steps = acdc(mean_kl, start, thresholds, seed=seed)
        sets += [(step.threshold, step.mask) for step in steps]
        # importance: the candidates by how long ACDC kept them (then by share), ahead of the rest
        kept = torch.stack([step.mask for step in steps]).sum(dim=0).double() if steps else torch.zeros(n, dtype=torch.float64)
        importance = torch.where(start, 1e6 * (1 + kept) + share.clamp(-1e5, 1e5), share)

    # 3. one point per distinct set, each evaluated exactly
    distinct: dict[bytes, tuple[float | None, Tensor]] = {}
    for threshold, mask in sets:
        key = mask.numpy().tobytes()
        if key not in distinct or (distinct[key][0] is None and threshold is not None):
            distinct[key] = (threshold, mask)
    values = exact([mask for _, mask in distinct.values()])
    points = sorted(
        (CurvePoint(int(mask.sum()), kl, edit, threshold) for (threshold, mask), (kl, edit) in zip(distinct.values(), values)),
        key=lambda p: (p.n_features, p.kl),
    )
    (kl_all, _), (kl_none, _) = exact([active, nothing])
    order = tuple(j for j in torch.argsort(importance, descending=True, stable=True).tolist() if active[j])
    return PatchingCurve(
        name=patching.name, layer=patching.setup.layer, points=tuple(points), n_features=n, n_active=int(active.sum()),
        kl_base=kl_none, kl_all=kl_all, n_evaluations=patching.n_evaluations - before,
        seconds=time.perf_counter() - started, ordering=ordering, order=order,
    )


# --------------------------------------------------------------------------------------
# Comparing curves (the claims of Figure 3)
# --------------------------------------------------------------------------------------


def kl_levels(curves: Sequence[PatchingCurve], n_levels: int = 8) -> tuple[float, ...]:
    """KL targets every curve can be asked about: log-spaced from just above the highest floor
    (the largest ``kl_all``) to half of the base KL. Empty if the floors are above that."""
    high = 0.5 * min(c.kl_base for c in curves)
    low = max(max(c.kl_all for c in curves) * 1.5, high * 1e-3)
    if not low < high:
        return ()
    return log_thresholds(n_levels, low, high)


def cost_to_reach(curves: Sequence[PatchingCurve], levels: Sequence[float]) -> dict[str, dict[str, list]]:
    """For each curve, the fewest features and the smallest edit reaching each KL level."""
    return {
        c.name: {"features": [c.features_to_reach(level) for level in levels],
                 "edit": [c.edit_to_reach(level) for level in levels]}
        for c in curves
    }
