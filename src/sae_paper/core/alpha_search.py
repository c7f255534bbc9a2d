"""α by L0: the L1 coefficient at which an SAE on one model is as sparse as a reference SAE on another.

Heap et al. 2025 (arXiv 2501.17727) train SAEs on randomly initialised transformers as the control of
an interpretability study. A random model's residual stream has another scale than the trained
model's, so the trained SAE's α would give the control SAE another sparsity, and its scores would
compare sparsities as much as features. So the control's α is chosen by a rule that reads only
training activations, never a score:

- **The target** is the reference (trained) SAE's mean L0 on its held-out tokens, the number the
  book reports beside each SAE. Each trial is a *short training* (:func:`short_trained`: the training
  loop's own initialisation, batch order and step, the same weights as
  :func:`~sae_paper.core.train.train_sae`) of the control's SAE on the first ``rows`` of its training
  activations, for the SAE's own epochs (``epochs`` None) with its ratio, batch size, learning rate and
  seed; its L0 is measured, as the target's, on the control's held-out tokens. With ``rows`` at least
  the SAE's training activations the trial is the full training itself, so the match is exact; with
  fewer it has fewer steps, so the chapter reports the full SAE's held-out L0 beside the target.
- **Bisection in log α** (:func:`search_alpha`). Start at the reference α; until a trial lies on each
  side of the target, multiply α by ``factor`` (L0 too high) or divide it (too low); then try the
  geometric mean of the closest trials either side. Stop when a trial's L0 is within ``tolerance``
  (relative) of the target or after ``steps`` trials; the answer is the trial closest to the target,
  ``converged`` saying whether it is within tolerance.

:func:`matched_alpha` caches a search as JSON under ``alpha-search/<model>/``, keyed by the control's
training fields, the target, the start and the search's settings, so a warm build never repeats it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from sae_paper.core.config import TRAIN_FIELDS, RunConfig
from sae_paper.core.pipeline import Run
from sae_paper.core.sae import make_sae
from sae_paper.core.train import make_optimizer, train_step
from sae_paper.data import cache
from sae_paper.data.activations import ActivationBatches, ActivationCache
from sae_paper.data.device import resolve_device, to_device
from sae_paper.data.paths import cache_dir
from sae_paper.errors import SaePaperError


@dataclass(frozen=True)
class SearchSettings:
    """How long and how precisely :func:`search_alpha` searches (part of the cache key)."""

    rows: int = 4_096
    """Training activations of each short training (the first ones; fewer when fewer were harvested)."""
    epochs: int | None = None
    """Epochs of each short training (None: the SAE's own)."""
    steps: int = 12
    """Trials at most (each one short training)."""
    tolerance: float = 0.05
    """Stop when a trial's mean L0 is within this fraction of the target."""
    factor: float = 10.0
    """α's step while the target is not yet bracketed."""

    def __post_init__(self) -> None:
        epochs_ok = self.epochs is None or (isinstance(self.epochs, int) and self.epochs >= 1)
        if not (isinstance(self.rows, int) and self.rows >= 2 and epochs_ok and isinstance(self.steps, int)
                and self.steps >= 1):
            raise SaePaperError(f"alpha search: rows >= 2, epochs >= 1 and steps >= 1 must be integers, got {self}")
        if not 0 < self.tolerance < 1 or not self.factor > 1:
            raise SaePaperError(f"alpha search: tolerance must be in (0, 1) and factor > 1, got {self}")


@dataclass(frozen=True)
class AlphaSearch:
    """A search's answer and its trials."""

    alpha: float
    """The trial α whose mean L0 came closest to the target."""
    l0: float
    """That trial's mean L0 (short training)."""
    target_l0: float
    converged: bool
    """Whether :attr:`l0` is within the tolerance of the target."""
    trials: tuple[tuple[float, float], ...]
    """(α, mean L0) of every trial, in the order tried."""


def search_alpha(measure: Callable[[float], float], target_l0: float, *, start: float, max_l0: float | None = None,
                 settings: SearchSettings = SearchSettings()) -> AlphaSearch:
    """The α at which ``measure(α)`` (a mean L0, falling as α grows) is closest to ``target_l0``: bisection in
    log α from ``start`` (see the module docstring). ``max_l0``: the dictionary size, which no L0 can reach."""
    if not (isinstance(target_l0, (int, float)) and math.isfinite(target_l0) and target_l0 > 0
            and (max_l0 is None or target_l0 < max_l0)):
        raise SaePaperError(f"alpha search: target L0 {target_l0!r} must be a positive number"
                            + (f" below the dictionary size {max_l0:g}" if max_l0 is not None else ""))
    if not (math.isfinite(start) and start > 0):
        raise SaePaperError(f"alpha search: the starting alpha must be positive, got {start!r}")
    trials: list[tuple[float, float]] = []
    low = high = None  # the largest α whose L0 is above the target, the smallest whose L0 is below it
    alpha = float(start)
    for _ in range(settings.steps):
        l0 = float(measure(alpha))
        trials.append((alpha, l0))
        if abs(l0 - target_l0) <= settings.tolerance * target_l0:
            break
        if l0 > target_l0:  # not sparse enough: a larger α
            low = alpha if low is None else max(low, alpha)
        else:
            high = alpha if high is None else min(high, alpha)
        if low is not None and high is not None:
            alpha = math.sqrt(low * high)
        else:
            alpha = alpha * settings.factor if high is None else alpha / settings.factor
    best_alpha, best_l0 = min(trials, key=lambda trial: abs(trial[1] - target_l0))
    return AlphaSearch(best_alpha, best_l0, float(target_l0),
                       abs(best_l0 - target_l0) <= settings.tolerance * target_l0, tuple(trials))


@torch.no_grad()
def _mean_l0(sae, activations: ActivationBatches) -> float:
    device = next(sae.parameters()).device
    counts = [(sae.encode(to_device(batch, device)) > 0).sum(1).double()
              for batch in activations.batches(4096, seed=0, epoch=0)]
    return float(torch.cat(counts).mean())


def short_trained(activations: ActivationBatches, config: RunConfig, alpha: float, *, epochs: int = 1):
    """``config``'s SAE after ``epochs`` over ``activations`` at ``alpha``: the training loop's own initialisation,
    batch order and step (:func:`~sae_paper.core.train.train_step`), with no checkpoint and no file (a trial is not
    an SAE of the cache). The same weights as :func:`~sae_paper.core.train.train_sae` for that many epochs."""
    device = resolve_device(config.device)
    d_sae = max(1, round(config.ratio * activations.d_in))
    sae = make_sae(config.sae, activations.d_in, d_sae, alpha=alpha, seed=config.seed).to(device)
    optimizer = make_optimizer(sae, config.lr)
    for epoch in range(epochs):
        for batch in activations.batches(config.batch_size, seed=config.seed, epoch=epoch):
            train_step(sae, optimizer, to_device(batch, device))
    return sae


def short_l0(activations: ActivationBatches, config: RunConfig, alpha: float, *, epochs: int = 1,
             on: ActivationBatches | None = None) -> float:
    """The mean L0 of :func:`short_trained`'s SAE on ``on`` (None: on ``activations``, its training rows)."""
    return _mean_l0(short_trained(activations, config, alpha, epochs=epochs), activations if on is None else on)


def _first_rows(config: RunConfig, rows: int) -> ActivationCache:
    train = Run(config, progress=False).activations("train")
    return ActivationCache(train.folder, n_rows=min(rows, train.n_rows))


def _cached(path) -> AlphaSearch | None:
    if not path.is_file():
        return None
    stored = cache.read_json(path, "cached alpha search")
    if not cache.reusable("alpha-search", path, stored.get("computed")):
        return None
    found = stored["search"]
    return AlphaSearch(**{**found, "trials": tuple(tuple(t) for t in found["trials"])})


def matched_alpha(control: RunConfig, target_l0: float, *, start: float,
                  settings: SearchSettings = SearchSettings()) -> AlphaSearch:
    """The α of ``control``'s SAE (its ``alpha`` ignored) at which a short training on ``control``'s training
    activations reaches ``target_l0`` (the rule of the module docstring), searched from ``start``; cached, so a warm
    build reads it."""
    depends = {"control": {n: getattr(control, n) for n in TRAIN_FIELDS if n != "alpha"}, "target_l0": float(target_l0),
               "start": float(start), "settings": asdict(settings), "computation": cache.version("alpha-search")}
    digest = hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("alpha-search", control.model) / f"{control.site}.{control.layer}-{digest}.json"
    if (found := _cached(path)) is not None:
        return found
    with cache.locked(path.parent, f"the alpha search {path.name}"):
        if (found := _cached(path)) is not None:  # another process searched while this one waited
            return found
        rows = _first_rows(control, settings.rows)
        held_out = Run(control, progress=False).activations("eval")
        epochs = control.epochs if settings.epochs is None else settings.epochs
        found = search_alpha(lambda a: short_l0(rows, control, a, epochs=epochs, on=held_out), target_l0, start=start,
                             max_l0=max(1, round(control.ratio * rows.d_in)), settings=settings)
        cache.write_json_atomic(path, {"search": asdict(found), "computed": cache.stamp("alpha-search", path)})
    return found
