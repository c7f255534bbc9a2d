"""The figures of notebook 02 (Section 3, Appendices C and G), one function each, without pyplot's global state.

A point is drawn only where its method scored at least one feature; a figure with no point at all (every call
failed, or the score does not exist under this scoring) says so in its axes (:func:`~sae_paper.report.plots.no_scores`).
Simulation scores a correlation, 0 at chance; detection and fuzzing an AUROC, 0.5 at chance: the line drawn is
the scoring's chance level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from matplotlib.figure import Figure

from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters import autointerp_controls as controls
from sae_paper.chapters.autointerp import BASELINES, LABELS
from sae_paper.data.models import Site
from sae_paper.report.plots import no_scores

COLOURS = {"sae": "tab:red", "neurons": "tab:blue", "random": "tab:gray", "pca": "tab:green", "ica": "tab:purple",
           "topk-pca": "tab:olive", "topk-ica": "tab:pink"}


def score_name(scoring: str) -> str:
    """The score's name in a figure's title: the paper's top-and-random correlation, or the classification task."""
    return "top-and-random" if scoring == "simulation" else scoring


def score_label(scoring: str, random_only: bool = False) -> str:
    """What a score is under ``scoring``, for an axis label."""
    if scoring == "simulation":
        return ("random-only" if random_only else "top-and-random") + " autointerp score (mean r)"
    return f"{scoring} score (mean AUROC, chance 0.5)"


def chance(scoring: str) -> float:
    """The score of an explanation that tells nothing: correlation 0, AUROC 0.5."""
    return 0.0 if scoring == "simulation" else 0.5


def _scored(s: MethodSummary | None, value: float) -> bool:
    return s is not None and s.n_scored > 0 and math.isfinite(value)


def draw_by_layer(ax, summaries: Sequence[MethodSummary], layers: Sequence[int], methods: Sequence[str], *,
                  colour_of: Mapping[str, str] | None = None, random_only: bool = False,
                  layer_label: Callable[[int], str] = str, scoring: str = "simulation") -> int:
    """Mean score per layer and method on ``ax``, 95 % CI error bars, methods offset sideways, the chance line; the
    number of points drawn. ``colour_of``: the method whose colour a named method takes (a control's ``…/sae``)."""
    by = {(s.site, s.method): s for s in summaries}
    width = 0.6 / max(1, len(methods))
    drawn = 0
    for j, method in enumerate(methods):
        xs, ys, es = [], [], []
        for i, layer in enumerate(layers):
            s = by.get((str(Site("resid_post", layer)), method))
            if s is None or s.n_scored == 0:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(s.random_mean if random_only else s.mean)
            es.append(s.random_ci if random_only else s.ci)
        drawn += sum(math.isfinite(y) for y in ys)
        base = (colour_of or {}).get(method, method)
        ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, color=COLOURS.get(base), label=LABELS.get(base, base))
    ax.set_xticks(range(len(layers)), [layer_label(layer) for layer in layers])
    ax.set_xlabel("residual stream layer")
    ax.axhline(chance(scoring), color="black", linewidth=0.5)
    if not drawn:
        no_scores(ax)
    return drawn


def scores_by_layer(summaries: Sequence[MethodSummary], layers: Sequence[int], methods: Sequence[str], *, title: str,
                    random_only: bool = False, layer_label: Callable[[int], str] = str, backend: str = "",
                    scoring: str = "simulation") -> Figure:
    """Figures 2, 9, 18: mean score per layer and method, with 95 % CI error bars (methods offset sideways)."""
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title + (f"\n{backend}" if backend else ""), fontsize=10)
    if random_only and scoring != "simulation":
        ax.set_xticks(range(len(layers)), [layer_label(layer) for layer in layers])
        ax.set_xlabel("residual stream layer")
        no_scores(ax, f"no random-only score under {scoring} scoring")
        return fig
    ax.set_ylabel(score_label(scoring, random_only))
    if draw_by_layer(ax, summaries, layers, methods, random_only=random_only, layer_label=layer_label, scoring=scoring):
        ax.legend(fontsize=9, ncols=2)
    return fig


def scores_by_ratio(by_ratio: Mapping[float, MethodSummary], baselines: Sequence[MethodSummary], *, title: str,
                    backend: str = "", scoring: str = "simulation") -> Figure:
    """Figure 8: SAE score against dictionary ratio R (log scale), baselines at the same layer as bands."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    ratios = sorted(by_ratio)
    scored = [b for b in baselines if _scored(b, b.mean)]
    ax.set_xlabel("dictionary ratio R = d_hid / d_in")
    ax.set_ylabel("top-and-random score (mean r)" if scoring == "simulation" else score_label(scoring))
    ax.set_title(title + (f"\n{backend}" if backend else ""), fontsize=10)
    if not scored and not any(_scored(by_ratio[r], by_ratio[r].mean) for r in ratios):
        no_scores(ax)  # nothing positive to log-scale: the axis stays linear, with the ratios as ticks
        ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        return fig
    ax.errorbar(ratios, [by_ratio[r].mean for r in ratios], yerr=[by_ratio[r].ci for r in ratios], fmt="o-", capsize=3,
                color=COLOURS["sae"], label="SAE")
    for b in scored:
        ax.axhline(b.mean, color=COLOURS.get(b.method), linestyle="--", linewidth=1, label=LABELS.get(b.method, b.method))
        ax.axhspan(b.mean - b.ci, b.mean + b.ci, color=COLOURS.get(b.method), alpha=0.1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.legend(fontsize=9)
    return fig


def scores_with_controls(summaries: Sequence[MethodSummary], study, *, title: str, backend: str = "") -> Figure:
    """Figure 2 with its random-model controls (:mod:`~sae_paper.chapters.autointerp_controls`): one panel per model
    (the trained one first), the SAE and the baselines scored on that model at every layer, one shared score axis."""
    models = [study.model, *study.controls]
    fig = Figure(figsize=(3.6 * len(models) + 0.6, 4.6), layout="constrained")
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models):
        methods = [m for m in ("sae", *BASELINES) if m in study.methods and (model == study.model or m in controls.CONTROL_METHODS)]
        named = [m if model == study.model else controls.control_method(model, m) for m in methods]
        drawn = draw_by_layer(ax, summaries, study.layers, named, colour_of=dict(zip(named, methods)),
                              layer_label=lambda layer: study.layer_label(layer).replace(" (", "\n("),  # narrow panels
                              scoring=study.scoring)
        ax.set_title(f"{model}\n({'Figure 2' if model == study.model else controls.label(model)})", fontsize=9)
        if drawn:
            ax.legend(fontsize=7)
    axes[0].set_ylabel(score_label(study.scoring))
    fig.suptitle(title + (f"\n{backend}" if backend else ""), fontsize=10)
    return fig
