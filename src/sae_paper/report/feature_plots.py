"""The figures of notebooks 04 and 05 (Section 5, Appendix D): single features, one function each.

As in :mod:`sae_paper.report.plots`, every function returns a :class:`matplotlib.figure.Figure`
built without pyplot's global state; a notebook shows it by ending a cell with it.

- :func:`token_histogram_figure`: Figure 4 (left) and Figures 11-15, the tokens a feature
  fires on, stacked per activation bin, with the share of a token class per bin.
  :func:`compact_histogram_figure` is its upper panel alone, sized for a feature browser card.
- :func:`logit_effect_figure`: Figure 4 (right), the change of the next-token logits when
  the feature is ablated: their distribution and the most suppressed and boosted tokens.
- :func:`causal_tree_figure`: Figure 5, the tree of features across layers, edges as
  thick as the ablation effect, each node labelled with its top tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from matplotlib.figure import Figure

from sae_paper.analysis.ablation import LogitEffect
from sae_paper.analysis.causal_tree import TreeNode
from sae_paper.analysis.feature_stats import TokenHistogram

OTHER_COLOUR = "#d9d9d9"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#393b79", "#637939"]


def _histogram_panel(ax, hist: TokenHistogram, *, legend: bool = True, log: bool = True) -> None:
    centres = ((hist.edges[:-1] + hist.edges[1:]) / 2).tolist()
    width = float(hist.edges[1] - hist.edges[0]) * 0.9
    bottom = torch.zeros(len(centres))
    for column, label in enumerate(hist.labels):
        colour = OTHER_COLOUR if label == "other" else PALETTE[column % len(PALETTE)]
        values = hist.counts[:, column].float()
        ax.bar(centres, values.tolist(), width=width, bottom=bottom.tolist(), color=colour, label=label,
               edgecolor="white", linewidth=0.3)
        bottom += values
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("activation")
    ax.set_ylabel("tokens" + (" (log scale)" if log else ""))
    if legend:
        ax.legend(fontsize=9, ncol=1, loc="upper right", title="token", title_fontsize=9)


def token_histogram_figure(
    hist: TokenHistogram,
    *,
    title: str,
    class_share: Sequence[float] | None = None,
    class_name: str = "",
) -> Figure:
    """Figure 4 (left): tokens per activation bin, stacked by token (log counts), and below,
    each bin's composition as shares, with the share of one token class (e.g. apostrophes) drawn over it."""
    fig = Figure(figsize=(8.0, 6.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    _histogram_panel(top, hist)
    top.set_xlabel("")
    top.set_title(title)
    totals = hist.counts.sum(dim=1, keepdim=True).clamp(min=1)
    shares = hist.counts.float() / totals
    centres = ((hist.edges[:-1] + hist.edges[1:]) / 2).tolist()
    width = float(hist.edges[1] - hist.edges[0]) * 0.9
    base = torch.zeros(len(centres))
    for column, label in enumerate(hist.labels):
        colour = OTHER_COLOUR if label == "other" else PALETTE[column % len(PALETTE)]
        bottom.bar(centres, shares[:, column].tolist(), width=width, bottom=base.tolist(), color=colour,
                   edgecolor="white", linewidth=0.3)
        base += shares[:, column]
    if class_share is not None:
        values = [float(v) for v in class_share]
        bottom.plot(centres, values, "k.-", linewidth=1.2, label=f"share of {class_name} tokens")
        bottom.legend(fontsize=9, loc="lower right")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("share of the bin")
    bottom.set_xlabel("activation (equal-width bins from 0 to the maximum)")
    return fig


def compact_histogram_figure(hist: TokenHistogram, *, title: str) -> Figure:
    """One small panel of :func:`token_histogram_figure` (log counts per activation bin, stacked by token),
    sized for a card of the feature browser."""
    fig = Figure(figsize=(5.0, 2.4), layout="constrained")
    ax = fig.subplots()
    _histogram_panel(ax, hist)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=9)
    ax.xaxis.label.set_size("x-small")
    ax.yaxis.label.set_size("x-small")
    return fig


def histogram_grid(panels: Sequence[tuple[str, TokenHistogram]], *, title: str, ncols: int = 2) -> Figure:
    """Several token histograms side by side (Figures 12-15), each with its own legend."""
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(6.0 * ncols, 3.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for ax, (name, hist) in zip(axes, panels):
        _histogram_panel(ax, hist)
        ax.set_title(name, fontsize="medium")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def logit_effect_figure(
    effect: LogitEffect,
    label: Callable[[int], str],
    *,
    title: str,
    threshold: float = 0.1,
    k: int = 12,
) -> Figure:
    """Figure 4 (right): histogram of logit differences beyond ±``threshold`` (the paper's
    display cut), and bars of the ``k`` most suppressed and most boosted next tokens."""
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
    diff = effect.diff.float()
    shown = diff[diff.abs() > threshold]
    below, above = effect.n_beyond(threshold)
    if len(shown):
        left.hist(shown.tolist(), bins=60, color="tab:purple")
    left.set_yscale("log")
    left.set_xlabel("logit difference, ablated − clean (centred)")
    left.set_ylabel("tokens (log scale)")
    left.set_title(f"{below:,} tokens below −{threshold:g}, {above:,} above +{threshold:g}\n"
                   f"(of {diff.numel():,}; mean over {effect.n_examples} examples)", fontsize="medium")
    left.axvline(0, color="black", linewidth=0.6)
    suppressed = effect.most(k, suppressed=True)
    boosted = effect.most(k, suppressed=False)
    rows = suppressed + list(reversed(boosted))
    names = [label(t).replace("$", r"\$") for t, _ in rows]  # a token's "$" is text: matplotlib would read mathtext
    values = [d for _, d in rows]
    positions = list(range(len(rows)))[::-1]
    right.barh(positions, values, color=["tab:red" if v < 0 else "tab:green" for v in values])
    right.set_yticks(positions, names, fontsize=9)
    right.axvline(0, color="black", linewidth=0.6)
    right.set_xlabel("logit difference, ablated − clean")
    right.set_title(f"{k} most suppressed (red) and boosted (green) next tokens", fontsize="medium")
    fig.suptitle(title)
    return fig


def _tree_layout(tree: TreeNode) -> dict[int, tuple[float, float]]:
    """x: leaves spread evenly, parents centred over their children; y: depth (root on top)."""
    positions: dict[int, tuple[float, float]] = {}
    next_leaf = [0.0]

    def place(node: TreeNode, depth: int) -> float:
        if not node.children:
            x = next_leaf[0]
            next_leaf[0] += 1.0
        else:
            xs = [place(child, depth + 1) for child in node.children]
            x = sum(xs) / len(xs)
        positions[id(node)] = (x, -depth)
        return x

    place(tree, 0)
    return positions


def causal_tree_figure(
    tree: TreeNode,
    label: Callable[[TreeNode], str],
    *,
    title: str,
) -> Figure:
    """Figure 5: each node a feature (layer, index, ``label(node)``), each edge from a
    previous-layer feature up to the feature it drives, as thick as the drop its ablation
    causes (relative to the driven feature's clean activation), annotated with that drop
    and the cosine similarity of the two directions."""
    positions = _tree_layout(tree)
    n_leaves = max(1, sum(1 for node, _ in tree.walk() if not node.children))
    depth = max(d for _, d in tree.walk())
    fig = Figure(figsize=(min(14.0, max(7.0, 3.1 * n_leaves)), 2.2 + 2.3 * depth), layout="constrained")
    ax = fig.add_subplot()
    strongest = max((abs(child.relative_effect) for _, child in tree.edges()), default=1.0) or 1.0
    for parent, child in tree.edges():
        (x0, y0), (x1, y1) = positions[id(parent)], positions[id(child)]
        width = 1.0 + 9.0 * abs(child.relative_effect) / strongest
        ax.plot([x0, x1], [y0, y1], color="tab:blue", alpha=0.55, linewidth=width, solid_capstyle="round", zorder=1)
        ax.annotate(f"−{child.relative_effect:.0%}\ncos {child.cosine:+.2f}", ((x0 + x1) / 2, (y0 + y1) / 2),
                    fontsize=9, ha="center", va="center", color="#08306b",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                    zorder=3)
    for node, _ in tree.walk():
        x, y = positions[id(node)]
        text = f"L{node.layer} #{node.feature}\n{label(node)}"
        ax.text(x, y, text, ha="center", va="center", fontsize=9, zorder=4,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": "#fff7e6" if node is tree else "white",
                      "edgecolor": "tab:orange" if node is tree else "tab:gray"})
    xs = [p[0] for p in positions.values()]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(-depth - 0.6, 0.6)
    ax.set_yticks([-d for d in range(depth + 1)], [f"layer {tree.layer - d}" for d in range(depth + 1)])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize="medium")
    return fig
