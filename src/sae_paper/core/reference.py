"""The reference scorer's conventions, as pure functions: OpenAI's ``neuron_explainer``.

The paper scores features with OpenAI's automated-interpretability method (Bills et al. 2023),
whose code is ``openai/automated-interpretability`` (read at commit e4aa21b), package
``neuron-explainer/neuron_explainer``. These functions state the reference's conventions exactly,
and the book's scorer follows them (:mod:`sae_paper.analysis.autointerp.scoring` and
:mod:`~sae_paper.analysis.autointerp.fragments`, issue 30):

- :func:`correlation_or_undefined`: the score is ``np.corrcoef(real, predicted)[0, 1]``
  (``explanations/scoring.py:correlation_score``), which is NaN, i.e. undefined, when a side
  is constant. Here an undefined score says why: which side was constant, or that the inputs
  vary but float64 cannot hold their variance (where ``np.corrcoef`` itself returns a wrong
  number: it clips the ``inf`` of ``c01 / 0`` to 1).
- :func:`floor_scale`: the explainer sees activations on a 0–10 integer scale,
  ``min(10, floor(10 · relu(x) / max))``, all 0 when ``max ≤ 0``
  (``activations/activation_records.py:normalize_activations``), with ``max`` the largest
  ``relu`` activation over the records being explained (:func:`explainer_max`, that file's
  ``calculate_max_activation``, which ``explanations/explainer.py`` calls on the explainer's
  own records).
- :func:`interleaved_split`: the top records are split by fixed interleaved ranks, not at
  random (``activations/activations.py:get_slices_for_splits`` with splits train, calibration,
  valid, test): the explainer reads the *train* split, ranks 0, 4, 8, …, and the simulation is
  scored on the *valid* split, ranks 2, 6, 10, … of the top records with ranks 1, 4, 7, … of
  the random sample (splits calibration, valid, test), as ``demos/generate_and_score_explanation.ipynb``
  does with ``n_examples_per_split=5``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from sae_paper.errors import SaePaperError

Undefined = Literal["constant simulation", "constant truth", "both constant", "not representable"]


@dataclass(frozen=True)
class Correlation:
    """A Pearson correlation, or why there is none (``value`` None exactly when ``undefined`` says why)."""

    value: float | None
    undefined: Undefined | None = None


def _vector(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise SaePaperError(f"the {what} is empty")
    if not np.isfinite(array).all():
        raise SaePaperError(f"the {what} has non-finite values")
    return array


def correlation_or_undefined(simulation, truth) -> Correlation:
    """Pearson's r of the simulated and the true activations (equal to ``np.corrcoef`` wherever that is right), or
    undefined: a constant side (which one), or sides that vary but whose centred sums of squares or products float64
    cannot hold (under 5e-324: values ~1e-200 apart; past 1.8e308: values of ~1e308)."""
    x, y = _vector(simulation, "simulation"), _vector(truth, "truth")
    if x.shape != y.shape:
        raise SaePaperError(f"simulation and truth differ in length: {x.size} and {y.size}")
    constant_x, constant_y = bool(np.all(x == x[0])), bool(np.all(y == y[0]))
    if constant_x or constant_y:
        return Correlation(None, "both constant" if constant_x and constant_y else
                           "constant simulation" if constant_x else "constant truth")
    with np.errstate(all="ignore"):
        dx, dy = x - x.mean(), y - y.mean()
        sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
        finite = all(math.isfinite(v) for v in (sxx, syy, sxy)) and np.isfinite(dx).all() and np.isfinite(dy).all()
        if not finite or sxx == 0 or syy == 0:  # varying sides whose variance under- or overflowed
            return Correlation(None, "not representable")
        r = sxy / (math.sqrt(sxx) * math.sqrt(syy))
    if not math.isfinite(r):
        return Correlation(None, "not representable")
    return Correlation(min(1.0, max(-1.0, r)))  # rounding may put |r| a hair past 1, as np.corrcoef clips


def explainer_max(records: Sequence[Sequence[float]]) -> float:
    """The largest ``relu`` activation over the explainer's records (the reference's ``calculate_max_activation``)."""
    if len(records) == 0 or any(len(record) == 0 for record in records):
        raise SaePaperError("explainer_max needs at least one record, each with at least one activation")
    values = [_vector(record, "record") for record in records]
    return max(float(np.maximum(v, 0.0).max()) for v in values)


def floor_scale(activations: Sequence[float], max_activation: float) -> tuple[int, ...]:
    """The explainer's 0–10 scale: ``min(10, floor(10 · relu(x) / max_activation))``, all 0 when
    ``max_activation ≤ 0`` (the reference's ``normalize_activations``, the same float64 operations in its order)."""
    if not math.isfinite(max_activation):
        raise SaePaperError(f"max_activation must be finite, got {max_activation}")
    values = _vector(activations, "activations") if len(activations) else np.zeros(0)
    if max_activation <= 0:
        return tuple(0 for _ in values)
    return tuple(min(10, math.floor(10 * max(0.0, float(x)) / max_activation)) for x in values)


class ReferenceSplit(NamedTuple):
    """Ranks (0 = the most activating) of the top records and indices of the random sample, per use."""

    explain: tuple[int, ...]
    """Top-record ranks the explainer reads (the reference's train split)."""
    simulate: tuple[int, ...]
    """Top-record ranks the simulation is scored on (its valid split)."""
    simulate_random: tuple[int, ...]
    """Random-sample indices scored with them (the random sample's valid split)."""


def interleaved_split(n_top: int = 20) -> ReferenceSplit:
    """The reference's fixed split of ``n_top`` top records into 4 interleaved splits of ``n_top // 4`` (explain the
    first, score the third) and of ``3 · (n_top // 4)`` random records into 3 (score the second). For the default
    20: explain 0, 4, 8, 12, 16; simulate 2, 6, 10, 14, 18 and random 1, 4, 7, 10, 13."""
    if isinstance(n_top, bool) or not isinstance(n_top, int) or n_top < 4:
        raise SaePaperError(f"the reference splits at least 4 top records (one per split), got {n_top!r}")
    per_split = n_top // 4  # the reference leaves a remainder unused (get_slices_for_splits covers 4 × per_split)
    return ReferenceSplit(tuple(range(0, 4 * per_split, 4)), tuple(range(2, 4 * per_split, 4)),
                          tuple(range(1, 3 * per_split, 3)))
