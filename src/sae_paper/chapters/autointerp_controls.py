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
  a short search on training activations (never on scores) that matches the trained SAE's L0.
  Its FVU and L0 on the control's held-out tokens are :func:`evaluation_table`'s.
- **Its baselines** on the control's activations: the residual basis and random directions
  (cheap; PCA and ICA are the trained model's question).
- **The same scorer on the same fragments**: the fragments are drawn by the study's
  :class:`~sae_paper.analysis.autointerp.fragments.FragmentSpec` under the control's name, the same
  documents at the same seed, so a control with the trained model's tokenizer sees the very same
  tokens (:func:`same_tokens`), and only the activations are the control's.

The model's own seed stays 0 (``smollm2-135m-random`` is one fixed random model, as the trained
model is one fixed model); the study's seeds retrain the SAEs and redraw the scored sample, as for
the trained SAEs. The verdict ``control-random-model`` (:data:`CONTROL_RULE`) is decided at those
seeds by :func:`control_decisions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure

from sae_paper.analysis.autointerp.fragments import Fragments, FragmentSpec, fragment_activations
from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters.autointerp_verdicts import (
    _backend_note,
    _failures,
    _gap,
    _half_width,
    _marks,
    _smallest,
    unmeasured,
)
from sae_paper.core.alpha_search import AlphaSearch, SearchSettings, matched_alpha
from sae_paper.core.config import RunConfig
from sae_paper.core.decompositions import SaeDecomposition, neuron_basis, random_directions
from sae_paper.core.pipeline import Run
from sae_paper.data.models import SEEDED_WEIGHTS, MODELS, Site, model_spec
from sae_paper.errors import SaePaperError
from sae_paper.report.finding import Decision, Finding
from sae_paper.report.rules import Rule

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
    """(control, layer) → the α search matching the trained SAE's L0 at that layer (cached)."""
    out = {}
    for control in study.controls:
        for layer in study.layers:
            trained = study.sae_config(layer)
            out[(control, layer)] = matched_alpha(trained.replace(model=control), trained,
                                                  reference_alpha=Run(trained, progress=False).alpha, settings=SEARCH)
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
        spec = FragmentSpec(control, study.n_fragments, study.fragment_length, study.fragment_sources, study.text_order)
        fragments, acts = fragment_activations(None, spec, sites, get_model=lambda control=control: get_model(control))
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


# --------------------------------------------------------------------------------------
# What the notebook shows
# --------------------------------------------------------------------------------------


def evaluation_table(study, searches: Mapping[tuple[str, int], AlphaSearch]) -> str:
    """A Markdown table: per layer, the trained SAE's and each control SAE's α, FVU and L0 on their own model's
    held-out tokens (the study's seed), and how the α search ended."""
    lines = ["| layer | model | α | FVU (held-out) | mean L0 (held-out) | α search: short-training L0 / target, trials |",
             "|---|---|---:|---:|---:|---|"]
    for layer in study.layers:
        trained = Run(study.sae_config(layer), progress=False)
        ev = trained.evaluate(splice=False)
        lines.append(f"| {layer} | {study.model} (trained) | {trained.alpha:.3g} | {ev.fvu:.3f} | {ev.mean_l0:.1f} | |")
        for control in study.controls:
            found = searches[(control, layer)]
            run = Run(control_config(study, control, layer, found.alpha), progress=False)
            ev = run.evaluate(splice=False)
            state = "within tolerance" if found.converged else "**not within tolerance**"
            lines.append(f"| {layer} | {control} ({label(control)}) | {found.alpha:.3g} | {ev.fvu:.3f} | {ev.mean_l0:.1f} "
                         f"| {found.l0:.1f} / {found.target_l0:.1f}, {len(found.trials)} trials, {state} |")
    return "\n".join(lines) + "\n"


def figure(summaries: Sequence[MethodSummary], study, *, title: str, backend: str = "") -> Figure:
    """Figure 2 with its controls: one panel per model (the trained one first), the SAE and the baselines scored on
    that model at every layer, on one shared score axis."""
    from sae_paper.chapters.autointerp import BASELINES
    from sae_paper.chapters.autointerp_plots import draw_by_layer, score_label

    models = [study.model, *study.controls]
    fig = Figure(figsize=(3.4 * len(models) + 0.6, 4.0), layout="constrained")
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models):
        methods = [m for m in ("sae", *BASELINES) if m in study.methods and (model == study.model or m in CONTROL_METHODS)]
        named = [m if model == study.model else control_method(model, m) for m in methods]
        drawn = draw_by_layer(ax, summaries, study.layers, named, colour_of=dict(zip(named, methods)),
                              layer_label=study.layer_label, scoring=study.scoring)
        ax.set_title(f"{model}" + ("" if model == study.model else f"\n({label(model)})"), fontsize=9)
        if drawn:
            ax.legend(fontsize=8)
    axes[0].set_ylabel(score_label(study.scoring))
    fig.suptitle(title + (f"\n{backend}" if backend else ""), fontsize=10)
    return fig


# --------------------------------------------------------------------------------------
# The verdict: control-random-model
# --------------------------------------------------------------------------------------


CONTROL_RULE = Rule(
    "control-random-model",
    paper="SAEs trained on randomly initialised transformers reach autointerpretability scores similar to those of "
          "SAEs on trained transformers, so a study should compare its SAE with the same SAE on a randomised model",
    rule="at every layer scored, the trained model's SAE against each control model's SAE (top-and-random score): the "
         "trained SAE's 95% CI above every control SAE's at every layer → reproduced; a control SAE's 95% CI above the "
         "trained SAE's at some layer → not; otherwise (the intervals overlap somewhere) partly",
    why="the same test the book's Figure 2 rules use for 'far more interpretable' (non-overlapping 95% intervals over "
        "the scored features), applied both ways, so a control that wins clearly counts as much as a trained SAE "
        "that wins clearly; every layer and both controls must agree for reproduced, since a lead that a random model "
        "matches anywhere is not shown to come from training; the controls' α matches the trained SAE's L0 by a "
        "search on training activations, so sparsity does not decide it",
    deciding=("the trained SAE against each control SAE at every layer scored",))

CONTROL_WHAT = {"control-random-model": "smallest gap, trained SAE's lower 95% bound − a control SAE's upper, any layer"}
"""What the control row's deciding number is, in words (the scoreboard's *deciding number*)."""


def random_model_finding(summaries: Sequence[MethodSummary], layers: Sequence[int], controls: Sequence[str], *,
                         backend: str) -> Decision:
    """``control-random-model`` (:data:`CONTROL_RULE`) from one seed's summaries, the trained model's and the
    controls' (:func:`score_controls`) together; deciding number: the smallest gap between the trained SAE's lower
    95 % bound and a control SAE's upper one over every layer and control, positive exactly when *reproduced*."""
    by = {(s.site, s.method): s for s in summaries}
    pairs = [(by.get((str(Site("resid_post", layer)), "sae")),
              by.get((str(Site("resid_post", layer)), control_method(control, "sae"))), layer, control)
             for layer in layers for control in controls]
    missing = [f"{control} at layer {layer}" for trained, other, layer, control in pairs if trained is None or other is None]
    if not pairs or missing:
        raise SaePaperError(f"control-random-model: no scores for {', '.join(missing) or 'any control'}")
    failed = unmeasured(CONTROL_RULE, [s for pair in pairs for s in pair[:2]], backend=backend)
    if failed:
        return Decision(failed, math.nan)
    gaps = [(_gap(trained, other), _half_width(trained, other)) for trained, other, _, _ in pairs]
    gap, ci = _smallest(gaps)
    behind = any(_gap(other, trained) > 0 for trained, other, _, _ in pairs)
    verdict = "reproduced" if gap > 0 else "not" if behind else "partly"
    ours = "; ".join(f"layer {layer}: trained {trained.mean:.2f}±{trained.ci:.2f}, {label(control)} "
                     f"{other.mean:.2f}±{other.ci:.2f}" for trained, other, layer, control in pairs)
    note = CONTROL_RULE.note(f"{pairs[0][0].n_scored} features per method",
                             "controls: " + ", ".join(f"{c} ({label(c)})" for c in controls),
                             "each control SAE's α matches the trained SAE's L0 (a short search on training activations)",
                             _backend_note(backend, pairs[0][0].scoring), _failures([s for p in pairs for s in p[:2]]))
    return Decision(Finding(ours, verdict, note, _marks(backend)), gap, ci)


def control_decisions(summaries: Sequence[MethodSummary], *, study, backend: str) -> dict[str, Decision]:
    """The control row's decision from one seed's summaries (what :func:`~sae_paper.report.seeds.decide_at_seeds`
    calls at each seed)."""
    return {"control-random-model": random_model_finding(summaries, study.layers, study.controls, backend=backend)}


RULES = (CONTROL_RULE,)
"""The control rows this module decides, one rule each."""
