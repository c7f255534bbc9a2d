"""Curves of KL against patched features and edit magnitude (Figure 3), ordered by ACDC (Appendix F).

The patching itself (one feature set, one exact forward pass) is :mod:`sae_paper.analysis.patching`.

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
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_paper.analysis.patching import FeaturePatching
from sae_paper.errors import SaePaperError

PAPER_THRESHOLDS: tuple[float, ...] = tuple(10 ** (-5 + 5 * i / 49) for i in range(50))
"""The authors' sweep: 50 thresholds log-spaced from 1e-5 to 1 (``np.logspace(-5, 0, 50)``)."""

Ordering = Literal["attribution", "acdc"]


def log_thresholds(n: int, low: float = 1e-5, high: float = 1.0) -> tuple[float, ...]:
    """``n`` thresholds log-spaced from ``low`` to ``high`` (the paper: 50 from 1e-5 to 1)."""
    if n < 2 or not 0 < low < high:
        raise SaePaperError(f"need n >= 2 thresholds and 0 < low < high, got n={n}, low={low}, high={high}")
    return tuple(math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (n - 1)) for i in range(n))



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
