"""The figures of notebook 02 (Section 3, Appendices C and G), one function each, without pyplot's global state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from matplotlib.figure import Figure

from sae_paper.analysis.autointerp.scoring import MethodSummary
from sae_paper.chapters.autointerp import LABELS
from sae_paper.data.models import Site

COLOURS = {"sae": "tab:red", "neurons": "tab:blue", "random": "tab:gray", "pca": "tab:green", "ica": "tab:purple",
           "topk-pca": "tab:olive", "topk-ica": "tab:pink"}


def scores_by_layer(summaries: Sequence[MethodSummary], layers: Sequence[int], methods: Sequence[str], *, title: str,
                    random_only: bool = False, layer_label: Callable[[int], str] = str, backend: str = "") -> Figure:
    """Figures 2, 9, 18: mean score per layer and method, with 95 % CI error bars (methods offset sideways)."""
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.subplots()
    by = {(s.site, s.method): s for s in summaries}
    width = 0.6 / max(1, len(methods))
    for j, method in enumerate(methods):
        xs, ys, es = [], [], []
        for i, layer in enumerate(layers):
            s = by.get((str(Site("resid_post", layer)), method))
            if s is None or s.n_scored == 0:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(s.random_mean if random_only else s.mean)
            es.append(s.random_ci if random_only else s.ci)
        ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, color=COLOURS.get(method), label=LABELS.get(method, method))
    ax.set_xticks(range(len(layers)), [layer_label(layer) for layer in layers])
    ax.set_xlabel("residual stream layer")
    ax.set_ylabel(("random-only" if random_only else "top-and-random") + " autointerp score (mean r)")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title + (f"\n{backend}" if backend else ""), fontsize=10)
    ax.legend(fontsize=9, ncols=2)
    return fig


def scores_by_ratio(by_ratio: Mapping[float, MethodSummary], baselines: Sequence[MethodSummary], *, title: str,
                    backend: str = "") -> Figure:
    """Figure 8: SAE score against dictionary ratio R (log scale), baselines at the same layer as bands."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    ratios = sorted(by_ratio)
    ax.errorbar(ratios, [by_ratio[r].mean for r in ratios], yerr=[by_ratio[r].ci for r in ratios], fmt="o-", capsize=3,
                color=COLOURS["sae"], label="SAE")
    for b in baselines:
        ax.axhline(b.mean, color=COLOURS.get(b.method), linestyle="--", linewidth=1, label=LABELS.get(b.method, b.method))
        ax.axhspan(b.mean - b.ci, b.mean + b.ci, color=COLOURS.get(b.method), alpha=0.1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.set_xlabel("dictionary ratio R = d_hid / d_in")
    ax.set_ylabel("top-and-random score (mean r)")
    ax.set_title(title + (f"\n{backend}" if backend else ""), fontsize=10)
    ax.legend(fontsize=9)
    return fig
