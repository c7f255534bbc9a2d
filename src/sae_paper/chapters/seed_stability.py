"""Feature stability across seeds, a control beyond the paper: do the SAEs find the same features when only the seed
changes?

Paulo & Belrose 2025 (arXiv 2501.16615) train SAEs that differ only in their seed and call a feature *shared* when
its best match in the other SAE has decoder cosine ≥ 0.7 (:mod:`sae_paper.core.stability`); they find ~30 % shared in
large TopK SAEs, more in ReLU + L1 ones. The book trains some SAEs at every seed of a study's ``seeds()``: notebook
02's central residual SAEs (:func:`autointerp_saes`; notebook 04's main SAE is one of them) and notebook 03's
main-layer dictionaries (:func:`ioi_saes`). :func:`seeded_saes` reads them back from the cache, and
:func:`stability_pairs` matches, for each SAE and each ordered pair of seeds (s, o), seed s's features in seed o's
SAE: both directions are counted, each under the seed whose features are matched. Beside each, the same figure for
two random-direction sets of the same shape (seeded ``RANDOM_SEED_OFFSET + s`` and ``+ o``, a generator of their
own, so no other draw of the book moves): the level two dictionaries that share nothing reach by chance.

The control row ``control-seed-stability`` is notebook 02's, decided from its SAEs per seed like the other seeded
rows (:func:`~sae_paper.report.seeds.decide_at_seeds`): a seed's verdict asks whether its features recur at each
other seed more than random directions do, by :data:`STABILITY_RULE`. Notebook 03 shows its dictionaries' table
and figure beside Figure 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from matplotlib.figure import Figure
from torch import Tensor

from sae_paper.chapters.autointerp import AutointerpStudy
from sae_paper.chapters.ioi import IoiStudy
from sae_paper.chapters.ioi_verdicts import dictionary_name
from sae_paper.core.config import RunConfig
from sae_paper.core.pipeline import Run
from sae_paper.core.stability import SHARED_COSINE, Stability, random_unit_directions, stability_both_ways
from sae_paper.errors import SaePaperError
from sae_paper.report.finding import Decision, Finding
from sae_paper.report.markdown import table_cell
from sae_paper.report.rules import Rule

CLAIM = "control-seed-stability"
RANDOM_SEED_OFFSET = 10_000
"""The random-direction set that stands beside seed ``s``'s SAE is drawn at ``RANDOM_SEED_OFFSET + s``."""


class PairStability(NamedTuple):
    """Seed ``seed``'s features of one SAE matched in seed ``other``'s, beside two random-direction sets of its shape."""

    sae: str
    """Which SAE, in words (``layer 3``, ``layer 3, R = 0.5``)."""
    seed: int
    """The seed whose features are matched."""
    other: int
    """The seed they are matched in."""
    n_features: int
    shared: float
    """The fraction of ``seed``'s features whose best match at ``other`` has cosine ≥ the threshold."""
    mean_best: float
    random_shared: float
    """The same fraction for the random set at ``seed`` matched in the random set at ``other``."""
    random_mean_best: float
    counts: Tensor
    """The histogram of the best-match cosines (:data:`~sae_paper.core.stability.DEFAULT_BIN_EDGES`)."""
    random_counts: Tensor
    bin_edges: Tensor

    @property
    def chance_bound(self) -> float:
        """The random figure's 95 % upper bound (Wilson): the most that chance could share, given ``n_features``."""
        return wilson_upper(self.random_shared, self.n_features, STABILITY_RULE.thresholds["z"])

    @property
    def gap(self) -> float:
        """``shared`` minus :attr:`chance_bound`: positive exactly when this pair's features recur above chance."""
        return self.shared - self.chance_bound


def wilson_upper(fraction: float, n: int, z: float) -> float:
    """The upper end of the Wilson score interval of a fraction observed over ``n`` trials. Unlike the normal
    approximation it is above 0 at a fraction of 0 (3.8 / (n + 3.8) at z = 1.96): a chance level measured as 0 over
    ``n`` features is only known to be below that."""
    if n < 1 or not 0.0 <= fraction <= 1.0:
        raise SaePaperError(f"a fraction in [0, 1] over at least one trial, got {fraction} over {n}")
    centre = fraction + z * z / (2 * n)
    spread = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


# --------------------------------------------------------------------------------------
# The SAEs and their matches
# --------------------------------------------------------------------------------------


def autointerp_saes(at: AutointerpStudy) -> list[tuple[str, RunConfig]]:
    """Notebook 02's SAEs at ``at``'s seed, by name: Figure 2's at each layer, then Figure 8's further ratios at the
    main layer, as :meth:`~sae_paper.chapters.autointerp.AutointerpStudy.decompositions` scores them at every seed
    (notebook 04's main SAE is the layer-3 one: the same configuration)."""
    named = [(f"layer {layer}", at.sae_config(layer)) for layer in at.layers]
    return named + [(f"layer {at.main_layer}, R = {ratio:g}", at.sae_config(at.main_layer, ratio))
                    for ratio in at.fig8_ratios if ratio != at.ratio]


def ioi_saes(at: IoiStudy) -> list[tuple[str, RunConfig]]:
    """Notebook 03's SAEs at ``at``'s seed, by name: Figure 3's main-layer dictionaries, one per α, which
    :func:`~sae_paper.chapters.ioi.reseeded_curves` retrains at every seed."""
    return [(f"layer {at.layer}, {dictionary_name(alpha)}", at.config(at.layer, alpha))
            for alpha in at.layer_alphas(at.layer)]


def seeded_saes(study, saes: Callable[[Any], list[tuple[str, RunConfig]]]) -> dict[str, dict[int, Tensor]]:
    """Each SAE ``saes(study at a seed)`` names, its decoder directions at every seed of ``study.seeds()``: read from
    the cache, where the notebook's seed section left them (a missing one is trained, as anywhere)."""
    out: dict[str, dict[int, Tensor]] = {}
    for seed in study.seeds():
        for name, config in saes(study.reseeded(seed)):
            out.setdefault(name, {})[seed] = Run(config, progress=False).sae().feature_directions().detach()
    return out


def stability_pairs(directions: Mapping[str, Mapping[int, Tensor]]) -> list[PairStability]:
    """For each SAE and each ordered pair of its seeds (s, o), seed s's features matched in seed o's, beside the random
    set at s matched in the random set at o. Both directions of a pair come from one pass over its cosines
    (:func:`~sae_paper.core.stability.stability_both_ways`), the random figure once per shape and pair of seeds."""
    chance: dict[tuple[int, int, int, int], tuple[Stability, Stability]] = {}

    def random_figure(n: int, d: int, seed: int, other: int) -> tuple[Stability, Stability]:
        if (n, d, seed, other) not in chance:
            chance[(n, d, seed, other)] = stability_both_ways(random_unit_directions(n, d, RANDOM_SEED_OFFSET + seed),
                                                              random_unit_directions(n, d, RANDOM_SEED_OFFSET + other))
        return chance[(n, d, seed, other)]

    pairs = []
    for name, by_seed in directions.items():
        seeds = list(by_seed)
        if len(seeds) < 2:
            raise SaePaperError(f"feature stability of {name} needs at least two seeds, got {sorted(by_seed)}")
        matched: dict[tuple[int, int], tuple[Stability, Stability]] = {}
        for i, seed in enumerate(seeds):
            for other in seeds[i + 1 :]:
                mine, theirs = by_seed[seed], by_seed[other]
                if mine.shape != theirs.shape:
                    raise SaePaperError(f"{name}: seeds {seed} and {other} have dictionaries of shapes "
                                        f"{tuple(mine.shape)} and {tuple(theirs.shape)}")
                found, random = stability_both_ways(mine, theirs), random_figure(*mine.shape, seed, other)
                for k, key in enumerate(((seed, other), (other, seed))):  # k = 0: seed's features; 1: other's
                    matched[key] = (found[k], random[k])
        for seed in seeds:
            for other in seeds:
                if other != seed:
                    found, random = matched[(seed, other)]
                    pairs.append(PairStability(name, seed, other, len(found.best), found.fraction_shared,
                                               float(found.best.mean()), random.fraction_shared,
                                               float(random.best.mean()), found.counts, random.counts, found.bin_edges))
    return pairs


# --------------------------------------------------------------------------------------
# Table and figure
# --------------------------------------------------------------------------------------


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"  # no space: a narrow table column would break "0.0 %" over two lines


def stability_table(pairs: Sequence[PairStability]) -> str:
    """A Markdown table, one row per SAE and unordered pair of seeds (a, b): the shares of a's features found in b and
    of b's in a, the mean best-match cosine over both, and the same for random directions of the same shape."""
    by = {(p.sae, p.seed, p.other): p for p in pairs}
    lines = [f"| SAE | seeds a, b | features | shared (cos ≥ {SHARED_COSINE:g}): a's in b | b's in a | mean best-match "
             "cosine | random directions: shared | random: mean best-match cosine | chance bound (95%) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in pairs:
        back = by.get((p.sae, p.other, p.seed))
        if p.seed > p.other and back is not None:
            continue  # the row of (a, b) with a < b shows both directions
        q = back or p
        cells = [p.sae, f"{p.seed}, {p.other}", f"{p.n_features:,}", _percent(p.shared), _percent(q.shared),
                 f"{(p.mean_best + q.mean_best) / 2:.3f}", _percent((p.random_shared + q.random_shared) / 2),
                 f"{(p.random_mean_best + q.random_mean_best) / 2:.3f}", _percent(max(p.chance_bound, q.chance_bound))]
        lines.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def stability_figure(pairs: Sequence[PairStability], *, title: str) -> Figure:
    """One panel per SAE: the histogram of best-match cosines over every ordered pair of seeds, the trained SAE's
    against the random directions', as shares of the features matched, with the threshold drawn."""
    names = list(dict.fromkeys(p.sae for p in pairs))
    if not names:
        raise SaePaperError("no SAE to draw: feature stability needs at least one SAE at two seeds")
    ncols = min(3, len(names))  # three panels fill the page's width and keep their labels readable
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.1 * ncols + 0.4, 2.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        mine = [p for p in pairs if p.sae == name]
        edges = mine[0].bin_edges.numpy()
        for counts, label, colour, fill in ((sum(p.counts for p in mine), "trained SAE", "tab:red", True),
                                            (sum(p.random_counts for p in mine), "random directions", "tab:gray", False)):
            share = (counts.double() / counts.sum()).numpy()
            ax.stairs(share, edges, fill=fill, alpha=0.6 if fill else 1.0, color=colour, label=label, linewidth=1.5)
        ax.axvline(SHARED_COSINE, color="black", linestyle="--", linewidth=1)
        drawn = torch.nonzero(sum(p.counts + p.random_counts for p in mine))  # bins holding a cosine
        ax.set_xlim(min(0.0, float(edges[int(drawn[0])])), 1.0)  # from 0, or lower where a cosine is
        ax.set_title(f"{name} ({mine[0].n_features:,} features)", fontsize=10)
        ax.set_xlabel("best-match cosine, other seed")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of features")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="upper right")  # the bulk of the cosines is at the left
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------
# The control row
# --------------------------------------------------------------------------------------


STABILITY_RULE = Rule(
    CLAIM,
    paper="SAEs that differ only in their seed share only part of their features (a feature is shared when its best "
          "match in the other SAE has decoder cosine of at least 0.7), ReLU + L1 SAEs more than TopK ones; here the "
          "SAE's features should recur across seeds more than random directions do",
    rule="for each seed, each SAE and each other seed: the share of the seed's features whose best match in the other "
         "seed's SAE has decoder cosine ≥ {cosine:g} (Paulo & Belrose 2025, arXiv 2501.16615), against the same share "
         "for two random-direction sets of the same shape, whose 95% upper bound (Wilson, z = {z:g}) is the margin; "
         "above that bound for every SAE and other seed → reproduced; above it for none → not; otherwise partly; "
         "decided at each seed, the seeds' majority is the verdict",
    thresholds={"cosine": SHARED_COSINE, "z": 1.96},
    why="the threshold 0.7 is Paulo & Belrose's definition of a shared feature. The margin comes from the random "
        "figure alone, never from the SAEs': random directions in a residual stream this wide almost never reach 0.7 "
        "(the share measured is 0), so chance is only known to lie below the upper bound of that share over the "
        "features matched; the one bound decides both sides, so a share is either above chance or not. Isotropic "
        "random directions are a lenient floor: an SAE's directions lie in the data's subspace, where chance matches "
        "are likelier, so a share just above the bound says little. Dead features keep their initial, seed-specific "
        "direction and count as not shared, as in Paulo & Belrose. Each seed is judged by its own features found at "
        "the other seeds, so both directions of every pair are counted, each at the seed whose features it matches",
    deciding=("every SAE's shared fraction at every other seed against the random-direction figure's 95% upper bound",))

RULES = (STABILITY_RULE,)
WHAT = {CLAIM: "smallest shared fraction − random directions' 95% upper bound, over SAEs and other seeds"}
"""What the control's deciding number is, in words (the scoreboard's *deciding number*)."""


def seed_stability_finding(pairs: Iterable[PairStability]) -> Decision:
    """One seed's verdict (:data:`STABILITY_RULE`) from the pairs whose features are that seed's; deciding number: the
    smallest :attr:`PairStability.gap`, positive exactly when *reproduced*."""
    pairs = list(pairs)
    if not pairs or len({p.seed for p in pairs}) != 1:
        raise SaePaperError("a seed's stability verdict needs that one seed's pairs, got seeds "
                            f"{sorted({p.seed for p in pairs})}")
    above = [p for p in pairs if p.gap > 0]
    verdict = "reproduced" if len(above) == len(pairs) else "not" if not above else "partly"
    low, high = min(pairs, key=lambda p: p.shared), max(pairs, key=lambda p: p.shared)
    spread = (f"{_percent(low.shared)} for every SAE at every other seed" if low.shared == high.shared else
              f"{_percent(low.shared)} ({low.sae} at seed {low.other}) to {_percent(high.shared)} ({high.sae} at seed "
              f"{high.other})")
    ours = (f"seed {pairs[0].seed}'s features shared at cos ≥ {SHARED_COSINE:g}: {spread}; random directions "
            f"{_percent(max(p.random_shared for p in pairs))}, 95% bound ≤ {_percent(max(p.chance_bound for p in pairs))}")
    note = STABILITY_RULE.note(f"{len(above)} of {len(pairs)} (SAE, other seed) above chance",
                               "isotropic random directions: a lenient floor")
    return Decision(Finding(ours, verdict, note), min(p.gap for p in pairs))


def stability_inputs(pairs: Sequence[PairStability], seeds: Sequence[int]) -> dict[int, list[PairStability]]:
    """The pairs by the seed whose features they match, in ``seeds``' order (the notebook's own seed first), for
    :func:`~sae_paper.report.seeds.decide_at_seeds`."""
    return {seed: [p for p in pairs if p.seed == seed] for seed in seeds}


def decisions(pairs: Sequence[PairStability]) -> dict[str, Decision]:
    """The control's decision at one seed (``pairs``: that seed's, :func:`stability_inputs`)."""
    return {CLAIM: seed_stability_finding(pairs)}
