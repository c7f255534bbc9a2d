"""The figures of notebook 01 (Section 2, Section 6.2, Appendices B and E), one function each.

Each function takes sweep records (:class:`~sae_paper.core.sweeps.SweepRecord`) or metrics
and returns a :class:`matplotlib.figure.Figure` built without pyplot's global state, so
a notebook shows it by ending a cell with it and nothing else is drawn twice. Axes carry
their quantity and unit; titles say which figure of the paper the plot stands in for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from sae_paper.core.metrics import SpliceMetrics
from sae_paper.core.sweeps import SweepRecord

COLOURS = {"resid_post": "tab:blue", "mlp_post": "tab:orange", "untied": "tab:green"}


def no_scores(ax, text: str = "no scores") -> None:
    """Write ``text`` across ``ax`` in place of data: a figure whose every point failed (or was never measured) says
    so, instead of raising (a log axis with no positive value) or showing empty axes a reader takes for a result."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="tab:gray", wrap=True,
            bbox={"facecolor": "white", "edgecolor": "none"}, zorder=5)


def _site_colour(site: str) -> str:
    return COLOURS.get(site.split(".")[0], "tab:gray")


def _alpha_label(alpha: float) -> str:
    return "α=0" if alpha == 0 else f"α={alpha:.2g}"


def _symlog_alpha(ax, alphas: Sequence[float]) -> None:
    """A log α axis that can also show α = 0 (linear just around zero)."""
    positive = [a for a in alphas if a > 0]
    if positive and any(a == 0 for a in alphas):
        linthresh = min(positive) / 2
        ax.set_xscale("symlog", linthresh=linthresh)
        decades = range(math.ceil(math.log10(linthresh)), math.floor(math.log10(max(positive))) + 1)
        ax.set_xticks([0.0, *(10.0**k for k in decades)])  # no tick inside the linear stretch but 0
    elif positive:
        ax.set_xscale("log")


def splice_perplexity(splice: SpliceMetrics, *, label: str, paper: tuple[float, float] = (25.0, 40.0)) -> Figure:
    """Section 6.2: perplexity with the site clean, spliced with the SAE, and zero-ablated, beside the paper's 25 → 40."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    names = ["clean", "SAE spliced", "zero-ablated"]
    values = [splice.perplexity_clean, splice.perplexity_spliced, splice.perplexity_zero]
    bars = ax.bar(names, values, color=["tab:gray", "tab:blue", "tab:red"], label=f"ours: {label}")
    ax.bar_label(bars, labels=[f"{v:,.1f}" if v < 1e4 else f"{v:.2g}" for v in values])
    ax.scatter([0.3, 1.3], list(paper), marker="D", color="black", zorder=3, label="paper: Pythia-70M layer 2, Pile")
    ax.set_yscale("log")
    low, high = min(*values, *paper), max(*values, *paper)
    ax.set_ylim(low / 3, high * 300)  # room above the bars for their labels and the legend
    ax.set_ylabel("perplexity (exp of mean CE, log scale)")
    ax.set_title(f"Section 6.2 analogue: cost of splicing the SAE in\n({splice.n_tokens:,} held-out tokens)")
    ax.legend(loc="upper left", fontsize=9, ncols=2)
    return fig


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("s" if n != 1 else "")


def fig6_tradeoff(sweeps: Mapping[str, Sequence[SweepRecord]]) -> Figure:
    """Figure 6: mean L0 against FVU, one point per α, one panel per site."""
    fig = Figure(figsize=(5.2 * len(sweeps), 4.2), layout="constrained")
    axes = fig.subplots(1, len(sweeps), squeeze=False)[0]
    for ax, (site, records) in zip(axes, sweeps.items()):
        ordered = sorted(records, key=lambda r: r.alpha)
        ax.plot([r.fvu for r in ordered], [max(r.mean_l0, 1e-2) for r in ordered], "o-", color=_site_colour(site))
        for r in ordered:
            ax.annotate(_alpha_label(r.alpha), (r.fvu, max(r.mean_l0, 1e-2)), textcoords="offset points",
                        xytext=(5, 4), fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("fraction of variance unexplained (held-out)")
        ax.set_ylabel("mean active features per token (L0, log scale)")
        first = ordered[0]
        ax.set_title(f"{first.model} {site}\n{first.kind}, R={first.ratio:g}, {_epochs(first.epochs)}, "
                     f"{first.n_tokens:,} activations")
        ax.grid(alpha=0.3)
    fig.suptitle("Figure 6 analogue: sparsity vs reconstruction over an α sweep")
    return fig


def fig7_epochs(by_epochs: Mapping[int, Sequence[SweepRecord]]) -> Figure:
    """Figure 7: the α sweep's L0-FVU curve once per number of training epochs."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    colours = ["tab:purple", "tab:orange", "tab:brown", "tab:olive", "tab:cyan"]
    first = None
    for i, (epochs, records) in enumerate(sorted(by_epochs.items())):
        ordered = sorted(records, key=lambda r: r.alpha)
        first = first or ordered[0]
        ax.plot([r.fvu for r in ordered], [max(r.mean_l0, 1e-2) for r in ordered], "o-",
                color=colours[i % len(colours)], label=_epochs(epochs))
    for r in sorted(by_epochs[max(by_epochs)], key=lambda r: r.alpha):
        ax.annotate(_alpha_label(r.alpha), (r.fvu, max(r.mean_l0, 1e-2)), textcoords="offset points", xytext=(5, 4),
                    fontsize=9)
    ax.set_yscale("log")
    ax.set_xlabel("fraction of variance unexplained (held-out)")
    ax.set_ylabel("mean active features per token (L0, log scale)")
    ax.set_title(f"Figure 7 analogue: the trade-off per number of epochs\n{first.model} {first.site}, {first.kind}, "
                 f"R={first.ratio:g}, {first.n_tokens:,} activations per epoch")
    ax.legend(title="training")
    ax.grid(alpha=0.3)
    return fig


def fig16_alive(
    alpha_sweeps: Mapping[str, Sequence[SweepRecord]],
    ratio_sweeps: Mapping[str, Sequence[SweepRecord]],
    untied_pairs: Sequence[tuple[SweepRecord, SweepRecord]] = (),
) -> Figure:
    """Figure 16: alive features (% of the dictionary) against α and against R; tied vs untied MLP SAEs."""
    panels = 2 + bool(untied_pairs)
    fig = Figure(figsize=(4.6 * panels, 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    threshold = next((r.alive_threshold for rs in (*alpha_sweeps.values(), *ratio_sweeps.values()) for r in rs), 10)

    ax = axes[0]
    all_alphas = []
    for site, records in alpha_sweeps.items():
        ordered = sorted(records, key=lambda r: r.alpha)
        all_alphas += [r.alpha for r in ordered]
        ax.plot([r.alpha for r in ordered], [100 * r.alive_fraction for r in ordered], "o-", color=_site_colour(site),
                label=f"{site} (R={ordered[0].ratio:g})")
    _symlog_alpha(ax, all_alphas)
    ax.set_xlabel("L1 coefficient α (log scale; α = 0 at left)")
    ax.set_ylabel(f"alive features (% of d_sae; fires > {threshold}× in last epoch)")
    ax.set_title("alive features vs α")

    ax = axes[1]
    for site, records in ratio_sweeps.items():
        ordered = sorted(records, key=lambda r: r.ratio)
        if ordered:
            ax.plot([r.ratio for r in ordered], [100 * r.alive_fraction for r in ordered], "o-",
                    color=_site_colour(site), label=f"{site} (α={ordered[0].alpha:.2g})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dictionary ratio R = d_sae / d_in (log scale)")
    ax.set_ylabel("alive features (% of d_sae)")
    ax.set_title("alive features vs R")

    if untied_pairs:
        ax = axes[2]
        tied = sorted((t for t, _ in untied_pairs), key=lambda r: r.alpha)
        untied = sorted((u for _, u in untied_pairs), key=lambda r: r.alpha)
        ax.plot([r.alpha for r in tied], [100 * r.alive_fraction for r in tied], "o-", color=COLOURS["mlp_post"],
                label="tied")
        ax.plot([r.alpha for r in untied], [100 * r.alive_fraction for r in untied], "s--", color=COLOURS["untied"],
                label="untied")
        _symlog_alpha(ax, [r.alpha for r in tied])
        ax.set_xlabel("L1 coefficient α (log scale)")
        ax.set_ylabel("alive features (% of d_sae)")
        ax.set_title(f"tied vs untied, {tied[0].site} (Appendix C.3)")
    for ax in axes:
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    fig.suptitle("Figure 16 analogue: dead and alive features")
    return fig


# --------------------------------------------------------------------------------------
# Notebook 03 (Section 4, Appendix F): IOI feature patching
# --------------------------------------------------------------------------------------


def _patching_style(name: str, index: int) -> dict:
    """PCA grey squares, the α = 0 dictionary red triangles, sparse SAEs in blues (darker = larger α)."""
    if name == "PCA":
        return {"color": "tab:gray", "marker": "s", "linestyle": "--"}
    if name.startswith("α=0"):
        return {"color": "tab:red", "marker": "^", "linestyle": "-."}
    blues = ["#6baed6", "#2171b5", "#08306b", "#4292c6", "#084594"]
    return {"color": blues[index % len(blues)], "marker": "o", "linestyle": "-"}


def _patching_panels(axes, curves, *, legend: bool) -> None:
    left, right = axes
    sparse_index = 0
    for curve in sorted(curves, key=lambda c: (c.name == "PCA", c.name.startswith("α=0"), c.name)):
        style = _patching_style(curve.name, sparse_index)
        sparse_index += curve.name.startswith("SAE")
        points = sorted(curve.points, key=lambda p: (p.n_features, -p.kl))
        left.plot([p.n_features for p in points], [p.kl for p in points], markersize=3.5, linewidth=1.2,
                  label=f"{curve.name} ({curve.n_active} features change)", **style)
        by_edit = sorted(curve.points, key=lambda p: p.edit_magnitude)
        right.plot([p.edit_magnitude for p in by_edit], [p.kl for p in by_edit], markersize=3.5, linewidth=1.2, **style)
    base = max(c.kl_base for c in curves)
    for ax in axes:
        ax.axhline(base, color="black", linewidth=0.6, linestyle=":")
        ax.set_ylabel("KL(patched ‖ target), nats")
        ax.grid(alpha=0.3)
    left.set_xscale("symlog", linthresh=1)
    left.set_xlim(left=0)
    left.set_xlabel("number of patched features (symlog)")
    right.set_xlabel("mean edit magnitude (L2 norm of the added vector)")
    left.annotate("nothing patched", (0, base), xytext=(4, -4), textcoords="offset points", fontsize=9, va="top")
    if legend:  # beside the right panel, where it covers no curve; the KL is at each prompt's final position
        handles, labels = left.get_legend_handles_labels()
        right.legend(handles, labels, fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                     title="KL at the final position", title_fontsize=9)


def fig3_patching(curves, *, title: str) -> Figure:
    """Figure 3: KL to the target against the number of patched features (left) and the mean edit magnitude (right)."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    _patching_panels(axes, curves, legend=True)
    fig.suptitle(f"Figure 3 analogue: {title}")
    return fig


def fig17_layers(by_layer, *, title: str) -> Figure:
    """Figure 17: Figure 3's two panels at each layer, one row per layer."""
    layers = sorted(by_layer)
    fig = Figure(figsize=(12, 3.4 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 2, squeeze=False)
    for row, layer in zip(axes, layers):
        _patching_panels(row, by_layer[layer], legend=True)
        row[0].set_title(f"layer {layer}", loc="left", fontsize="medium")
    fig.suptitle(f"Figure 17 analogue: {title}")
    return fig


def budget_sensitivity(points: Mapping[str, Sequence[Any]], *, unit: str, title: str, ylabel: Mapping[str, str],
                       default: float | None = None) -> Figure:
    """Each claim's deciding number (a :class:`~sae_paper.report.budget.BudgetPoint` per budget, 95 % CI bars) against
    the budget of its deciding input, log scale; 0 (no advantage) drawn, the profile's own budget marked."""
    claims = [claim for claim, p in points.items() if p]
    fig = Figure(figsize=(3.2 * max(1, len(claims)), 3.3), layout="constrained")
    axes = fig.subplots(1, max(1, len(claims)), squeeze=False)[0]
    for ax, claim in zip(axes, claims):
        ordered = sorted(points[claim], key=lambda p: p.budget)
        if not any(math.isfinite(p.value) for p in ordered):  # every budget's measurement failed
            no_scores(ax)
            ax.set_title(claim, fontsize=9)
            continue
        ax.errorbar([p.budget for p in ordered], [p.value for p in ordered], yerr=[p.ci for p in ordered], fmt="o-",
                    capsize=3, color="tab:red")
        ax.axhline(0, color="black", linewidth=0.5)
        if default is not None:
            ax.axvline(default, color="tab:gray", linestyle=":", linewidth=1, label="this profile")
            ax.legend(fontsize=9)
        ax.set_xscale("log")
        ax.set_xticks([p.budget for p in ordered], [f"{p.budget:,.0f}" for p in ordered], fontsize=9)
        ax.minorticks_off()
        ax.set_xlabel(unit)
        ax.set_ylabel(ylabel.get(claim, "deciding number"), fontsize=9)
        ax.set_title(claim, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
