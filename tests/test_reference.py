"""The reference scorer's conventions (core/reference.py) against answers worked by hand from
openai/automated-interpretability's definitions (neuron_explainer at e4aa21b)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from sae_paper.core.reference import (
    Correlation,
    correlation_or_undefined,
    explainer_max,
    floor_scale,
    interleaved_split,
)
from sae_paper.errors import SaePaperError


def test_a_defined_correlation_is_the_hand_value_and_numpys():
    # x = 1, 2, 3; y = 2, 4, 7: dx = −1, 0, 1; dy = −7/3, −1/3, 8/3; Σdxdy = 5, Σdx² = 2, Σdy² = 114/9.
    assert correlation_or_undefined([1, 2, 3], [2, 4, 7]).value == pytest.approx(5 / math.sqrt(2 * 114 / 9), abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):
        sim, true = rng.normal(size=64), rng.exponential(size=64)
        assert correlation_or_undefined(sim, true).value == pytest.approx(np.corrcoef(true, sim)[0, 1], abs=1e-14)


@pytest.mark.parametrize("simulation,truth,why", [
    ([0.0, 0.0, 0.0], [0.0, 1.0, 2.0], "constant simulation"),  # e.g. the token list predicts nothing on a fragment
    ([0.0, 1.0, 2.0], [5.0, 5.0, 5.0], "constant truth"),
    ([3.0, 3.0], [0.0, 0.0], "both constant"),
    ([7.0], [1.0], "both constant"),
])
def test_a_constant_side_is_undefined_and_says_which(simulation, truth, why):
    assert correlation_or_undefined(simulation, truth) == Correlation(None, why)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(np.corrcoef(truth, simulation)[0, 1])  # the reference: NaN, undefined too


def test_a_variance_that_underflows_is_undefined_where_numpy_says_one():
    # 0, 1e-200, 3e-200 against 0, 1, 2: r = Σdxdy/√(ΣdxΣdy²) = 3/√(42/9 · 2) = 0.98198 for the values scaled by
    # 1e200, but Σdx² ≈ 4.7e-400 is below float64's least subnormal (4.9e-324) and rounds to 0.
    simulation = [0.0, 1e-200, 3e-200]
    assert correlation_or_undefined(simulation, [0, 1, 2]) == Correlation(None, "not representable")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.corrcoef([0, 1, 2], simulation)[0, 1] == 1.0  # the reference's number: c01 / 0 = inf, clipped to 1
    scaled = correlation_or_undefined([0.0, 1.0, 3.0], [0, 1, 2]).value
    assert scaled == pytest.approx(3 / math.sqrt(42 / 9 * 2), abs=1e-15)


@pytest.mark.parametrize("simulation", [[1e308, -1e308, 5e307],  # dx² ≈ 1e616 > 1.8e308: Σdx² is inf
                                        [1.5e308, 1.5e308, 0.0]])  # the sum 3e308 overflows: the mean is inf
def test_values_whose_squares_overflow_are_undefined(simulation):
    assert correlation_or_undefined(simulation, [0, 1, 2]) == Correlation(None, "not representable")


def test_bad_correlation_inputs_say_what_is_wrong():
    with pytest.raises(SaePaperError, match="differ in length"):
        correlation_or_undefined([1, 2], [1, 2, 3])
    with pytest.raises(SaePaperError, match="simulation has non-finite"):
        correlation_or_undefined([1, float("nan")], [1, 2])
    with pytest.raises(SaePaperError, match="truth is empty"):
        correlation_or_undefined([1], [])


def test_floor_scale_is_the_references_floor_not_a_round():
    # max 1: −1 → relu 0; 0.29 → 2.9 → 2; 0.3 → 3; 0.7 → 7; 0.99 → 9; 1.0 → 10; 1.5 → 15, capped at 10.
    assert floor_scale([-1, 0, 0.29, 0.3, 0.7, 0.99, 1.0, 1.5], 1.0) == (0, 0, 2, 3, 7, 9, 10, 10)
    # max 2.5: 2.5 → 10; 1.25 → 5; 0.24 → 0.96 → 0 (a round would give 1); 0.25 → 1; 2.4 → 9.6 → 9 (round: 10).
    assert floor_scale([2.5, 1.25, 0.24, 0.25, 2.4], 2.5) == (10, 5, 0, 1, 9)


def test_floor_scale_reads_its_max_over_the_explainers_records():
    records = [[-1.0, 0.5, 0.0], [2.0, -3.0, 1.0]]
    assert explainer_max(records) == 2.0
    assert [floor_scale(r, explainer_max(records)) for r in records] == [(0, 2, 0), (10, 0, 5)]
    silent = [[-1.0, -2.0], [0.0, -0.5]]  # nothing above zero: max 0, every activation 0 (the reference's rule)
    assert explainer_max(silent) == 0.0 and floor_scale(silent[0], 0.0) == (0, 0)
    with pytest.raises(SaePaperError, match="finite"):
        floor_scale([1.0], float("inf"))


def test_interleaved_split_is_the_references_fixed_ranks():
    split = interleaved_split(20)
    assert split.explain == (0, 4, 8, 12, 16)  # the train split: ranks 0, 4, 8, …
    assert split.simulate == (2, 6, 10, 14, 18)  # the valid split: ranks 2, 6, 10, …
    assert split.simulate_random == (1, 4, 7, 10, 13)  # the random sample's valid split (calibration, valid, test)
    assert interleaved_split(22) == split  # 22 // 4 = 5 per split; ranks 20 and 21 go unused, as in the reference
    assert interleaved_split(8) == ((0, 4), (2, 6), (1, 4))
    assert interleaved_split().explain[0] == 0  # the top record always reaches the explainer


@pytest.mark.parametrize("bad", [3, 0, -4, 20.0, True])
def test_interleaved_split_needs_one_record_per_split(bad):
    with pytest.raises(SaePaperError, match="at least 4 top records"):
        interleaved_split(bad)
