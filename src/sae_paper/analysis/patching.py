"""Counterfactual patching along dictionary features, ordered by ACDC (Section 4, Appendix F).

The method
----------
Fix a layer of the residual stream and a decomposition of it into features ``f_j`` with
codes ``c_j`` (an SAE, PCA, an α = 0 dictionary: any :class:`~sae_paper.core.decompositions.Decomposition`).
Take a **base** IOI prompt and its counterfactual **target**, which differs only in the
indirect object's name (:mod:`sae_paper.analysis.ioi_prompts`).

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

Which features to patch, in what order, and the curves that result: :mod:`sae_paper.analysis.patching_curves`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from sae_paper.analysis.ioi_prompts import IoiDataset, final_logits
from sae_paper.core.decompositions import Decomposition
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError


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


class SetupsByLayer:
    """``setups(layer)``: the :class:`PatchingSetup` at ``layer``, made on first use and then kept.

    Every curve at a layer (each dictionary, each seed, the token sweep) patches the same base and
    target runs, so a layer's two partial passes are made once however many curves read them.
    """

    def __init__(self, model, dataset: IoiDataset):
        self.model, self.dataset = model, dataset
        self._setups: dict[int, PatchingSetup] = {}

    def __call__(self, layer: int) -> PatchingSetup:
        if layer not in self._setups:
            self._setups[layer] = PatchingSetup.from_model(self.model, self.dataset, layer)
        return self._setups[layer]


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
