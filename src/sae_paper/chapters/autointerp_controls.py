"""Notebook 02's random-model controls: Figure 2's SAEs trained and scored on models that learned nothing.

Heap et al. 2025 (arXiv 2501.17727) find that SAEs trained on *randomly initialised* transformers
reach autointerp scores close to those on trained ones, and ask every such study for that
control. Without it, Figure 2's lead of the SAE over the baselines could come from the scorer,
the architecture or the token embedding rather than from anything the model learned. The
controls are models of :mod:`sae_paper.data.models` with seeded random weights (the study's
``controls``; the default: SmolLM2's architecture with its own initialisation, and SmolLM2 with
its trained embedding and random blocks). For each control, at every layer Figure 2 scores:

- **Its SAE**, trained exactly as the trained model's (the same ``n_tokens`` of the same text, the
  same ratio, epochs, batch size, learning rate and seed), except α: the random model's residual
  stream has another scale, so α is chosen by :func:`~sae_paper.core.alpha_search.matched_alpha`,
  a search by short trainings on the control's training activations (never on scores) for the
  trained SAE's held-out L0 at that layer.
  Its FVU and L0 on the control's held-out tokens are :func:`evaluation_table`'s.
- **Its baselines** on the control's activations: the residual basis and random directions
  (cheap; PCA and ICA are the trained model's question).
- **The same scorer on the same fragments**: the fragments are drawn by the study's
  :class:`~sae_paper.analysis.autointerp.fragments.FragmentSpec` under the control's name, the same
  documents at the same seed, so a control with the trained model's tokenizer sees the very same
  tokens (:func:`same_tokens`), and only the activations are the control's.

The model's own seed stays 0 (``smollm2-135m-random`` is one fixed random model, as the trained
model is one fixed model); the study's seeds retrain the SAEs and redraw the scored sample, as for
the trained SAEs. The verdict ``control-random-model`` is decided at those seeds by
:mod:`sae_paper.chapters.autointerp_control_verdicts`; the figure is
:func:`sae_paper.chapters.autointerp_plots.scores_with_controls`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sae_paper.analysis.autointerp.fragments import Fragments, fragment_activations
from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.core.alpha_search import AlphaSearch, SearchSettings, matched_alpha
from sae_paper.core.config import RunConfig
from sae_paper.core.decompositions import SaeDecomposition, neuron_basis, random_directions
from sae_paper.core.pipeline import Run
from sae_paper.data.models import MODELS, SEEDED_WEIGHTS, Site, model_spec
from sae_paper.errors import SaePaperError

CONTROL_METHODS = ("sae", "neurons", "random")
"""What is scored on a control model: its SAE and the two baselines that cost no fit."""
CONTROL_LABELS = {"smollm2-135m-random": "random weights", "smollm2-135m-reinit-blocks": "random blocks, trained embedding",
                  "pythia-70m-deduped-random": "random weights", "pythia-410m-deduped-random": "random weights"}
SEARCH = SearchSettings()
"""The α search every control SAE's α comes from (its settings are in the cache key)."""


def check_controls(study) -> None:
    """One line unless each of the study's ``controls`` is a random-weight model, not the study's own, named once,
    with every layer the study scores."""
    known = ", ".join(n for n, spec in MODELS.items() if spec.weights in SEEDED_WEIGHTS)
    if len(set(study.controls)) != len(study.controls):
        raise SaePaperError(f"{study.notebook} parameter controls={list(study.controls)}: a control is named twice")
    for name in study.controls:
        try:
            spec = model_spec(name) if isinstance(name, str) else None
        except SaePaperError:
            spec = None
        if spec is None or spec.weights not in SEEDED_WEIGHTS or name == study.model:
            raise SaePaperError(f"{study.notebook} parameter controls: {name!r} is not a random-weight control model "
                                f"(known: {known}, or <name>-seed<N>)")
        for layer in study.layers:
            Site("resid_post", layer).check(spec)


def control_method(control: str, method: str) -> str:
    """The method name a control's decomposition is scored under: ``<control>/<method>``."""
    return f"{control}/{method}"


def label(control: str) -> str:
    return CONTROL_LABELS.get(control, control)


# --------------------------------------------------------------------------------------
# Activations, α, SAEs
# --------------------------------------------------------------------------------------


def prefetch_controls(study, get_model: Callable[[str], Any]) -> list[str]:
    """Harvest each control's training and held-out activations at every layer (one pass per control model and
    text; nothing when the runner's harvest left them cached). ``get_model(name)``: the loaded model."""
    from sae_paper.core.sweeps import prefetch

    lines = []
    for control in study.controls:
        configs = [c for c in study.control_configs() if c.model == control]
        lines += prefetch(configs, model=lambda control=control: get_model(control))
    return lines


def alpha_searches(study) -> dict[tuple[str, int], AlphaSearch]:
    """(control, layer) → the α search matching the trained SAE's held-out L0 at that layer, from the trained SAE's α
    (cached; the trained SAE's evaluation, without the splice, is cached beside it)."""
    out = {}
    for layer in study.layers:
        trained = Run(study.sae_config(layer), progress=False)
        target = trained.evaluate(splice=False).mean_l0
        for control in study.controls:
            out[(control, layer)] = matched_alpha(trained.config.replace(model=control), target, start=trained.alpha,
                                                  settings=SEARCH)
    return out


def control_config(study, control: str, layer: int, alpha: float, seed: int | None = None) -> RunConfig:
    """The control's SAE at ``layer``: the trained model's settings at ``seed`` (None: the study's) with α."""
    at = study if seed is None or seed == study.seed else study.reseeded(seed)
    return at.sae_config(layer).replace(model=control, alpha=float(alpha))


@dataclass(frozen=True)
class ControlFragments:
    """One control's fragments and each scored site's activations on them."""

    fragments: Fragments
    activations: Mapping[Site, torch.Tensor]


def control_fragments(study, get_model: Callable[[str], Any]) -> dict[str, ControlFragments]:
    """Each control's fragment activations at the scored layers (cached): the study's fragments under the control's
    name, so the same documents at the same seed."""
    sites = [Site("resid_post", layer) for layer in study.layers]
    out = {}
    for control in study.controls:
        fragments, acts = fragment_activations(None, study.fragment_spec(control), sites, get_model=lambda control=control: get_model(control))
        out[control] = ControlFragments(fragments, acts)
    return out


def same_tokens(a: Fragments, b: Fragments) -> bool:
    """Whether two fragment sets are the same tokens (a control with the trained model's tokenizer: always)."""
    return a.tokens.shape == b.tokens.shape and bool(torch.equal(a.tokens, b.tokens))


def decompositions(study, searches: Mapping[tuple[str, int], AlphaSearch], seed: int | None = None, *,
                   baselines: bool = True) -> dict[tuple[str, Site, str], Any]:
    """(control, site, method) → each control's SAE at every layer (trained at ``seed`` on the control's cached
    activations, or read from the cache), and with ``baselines`` the residual basis and random directions."""
    at = study if seed is None or seed == study.seed else study.reseeded(seed)
    out: dict[tuple[str, Site, str], Any] = {}
    for control in study.controls:
        for layer in study.layers:
            site = Site("resid_post", layer)
            sae = Run(control_config(study, control, layer, searches[(control, layer)].alpha, seed), progress=False).sae()
            out[(control, site, "sae")] = SaeDecomposition(sae)
            if baselines and "neurons" in study.methods:
                out[(control, site, "neurons")] = neuron_basis(sae.d_in, name="residual basis")
            if baselines and "random" in study.methods:
                out[(control, site, "random")] = random_directions(sae.d_in, seed=at.seed)
    return out


def score_controls(decomposed: Mapping[tuple[str, Site, str], Any], score: Callable[..., Any],
                   fragments: Mapping[str, ControlFragments]) -> list[MethodSummary]:
    """Each control decomposition scored by ``score`` (:func:`~sae_paper.chapters.autointerp.scorer`) on its control's
    fragments, summarised under :func:`control_method`'s name."""
    out = []
    for (control, site, method), decomposition in decomposed.items():
        on = fragments[control]
        result = score(decomposition, on.activations[site], on.fragments, method=control_method(control, method),
                       site=str(site))
        out.append(result.summary())
    return out


def evaluation_table(study, searches: Mapping[tuple[str, int], AlphaSearch]) -> str:
    """A Markdown table: per layer, the trained SAE's and each control SAE's α, FVU and L0 on their own model's
    held-out tokens (the study's seed), and how the α search ended."""
    lines = ["| layer | model | α | FVU (held-out) | mean L0 (held-out) | α search: short-training L0 / target L0, trials |",
             "|---|---|---:|---:|---:|---|"]
    for layer in study.layers:
        trained = Run(study.sae_config(layer), progress=False)
        ev = trained.evaluate(splice=False)
        lines.append(f"| {layer} | {study.model} (Figure 2's model) | {trained.alpha:.3g} | {ev.fvu:.3f} | {ev.mean_l0:.1f} | |")
        for control in study.controls:
            found = searches[(control, layer)]
            run = Run(control_config(study, control, layer, found.alpha), progress=False)
            ev = run.evaluate(splice=False)
            state = "within tolerance" if found.converged else "**not within tolerance**"
            lines.append(f"| {layer} | {control} ({label(control)}) | {found.alpha:.3g} | {ev.fvu:.3f} | {ev.mean_l0:.1f} "
                         f"| {found.l0:.1f} / {found.target_l0:.1f}, {len(found.trials)} trials, {state} |")
    return "\n".join(lines) + "\n"
