"""Feature stability across seeds (core/stability.py): hand cases, properties, the random reference."""

from __future__ import annotations

import math

import pytest
import torch

from sae_paper.core.sae import make_sae
from sae_paper.core.stability import (
    best_match_cosines,
    feature_stability,
    random_direction_stability,
    random_unit_directions,
    stability_both_ways,
)
from sae_paper.errors import SaePaperError


def _at(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in degrees])


def test_hand_case_in_two_dimensions():
    # a at 0° and 90°; b at 30° and 200° (b's second row 3x longer: only directions count).
    a, b = _at(0, 90), _at(30, 200) * torch.tensor([[1.0], [3.0]])
    result = feature_stability(a, b, threshold=0.7, bin_edges=[0, 0.25, 0.5, 0.75, 1])
    # 0°: cos 30° = 0.866 beats cos 200° = −0.940 (plain cosine: |cos| would pick 0.940).
    # 90°: cos 60° = 0.5 beats cos 110° = −0.342.
    torch.testing.assert_close(result.best, torch.tensor([math.cos(math.radians(30)), 0.5]))
    assert result.fraction_shared == 0.5
    assert result.counts.tolist() == [0, 0, 1, 1]  # 0.5 in [0.5, 0.75), 0.866 in [0.75, 1]


def test_the_opposite_direction_is_not_a_match():
    a = _at(10, 100)
    assert feature_stability(a, -a).fraction_shared == 0.0
    torch.testing.assert_close(feature_stability(a, -a).best, torch.full((2,), -math.cos(math.radians(90))), atol=1e-6, rtol=0)


def test_a_dictionary_against_itself_and_a_permuted_copy_is_one():
    directions = make_sae("untied", 576, 2048, seed=3).feature_directions()
    for other in (directions, directions[torch.randperm(2048)] * 2.5):
        result = feature_stability(directions, other, chunk=300)  # chunks that do not divide 2048
        torch.testing.assert_close(result.best, torch.ones(2048), atol=1e-6, rtol=0)
        assert result.fraction_shared == 1.0
        assert int(result.counts.sum()) == 2048 and int(result.counts[-1]) == 2048  # the last bin is closed


def test_chunks_do_not_change_the_answer():
    a, b = random_unit_directions(700, 32, seed=0), random_unit_directions(900, 32, seed=1)
    torch.testing.assert_close(best_match_cosines(a, b, chunk=1), best_match_cosines(a, b, chunk=700), atol=1e-6, rtol=0)
    assert torch.allclose(best_match_cosines(a, b, chunk=64), (a @ b.T).amax(dim=1), atol=1e-6)


def test_both_ways_in_one_pass_agree_with_two_calls():
    # 128 dimensions: a chance cosine of 0.7 is 8 standard deviations out, so only the planted 50 are shared
    a, b = random_unit_directions(700, 128, seed=0) * 3.0, random_unit_directions(900, 128, seed=1)
    a[:50] = b[100:150] + 0.01 * torch.randn(50, 128)
    there, back = stability_both_ways(a, b, chunk=64)  # chunks that do not divide 700
    for both, single in ((there, feature_stability(a, b)), (back, feature_stability(b, a))):
        torch.testing.assert_close(both.best, single.best, atol=1e-6, rtol=0)
        assert both.fraction_shared == single.fraction_shared and torch.equal(both.counts, single.counts)
    assert there.fraction_shared == pytest.approx(50 / 700) and back.fraction_shared == pytest.approx(50 / 900)
    with pytest.raises(SaePaperError, match="different widths"):
        stability_both_ways(torch.ones(3, 4), torch.ones(3, 5))


def test_two_unrelated_dictionaries_are_near_the_random_direction_figure():
    # Two SAE initialisations (Xavier-uniform rows) share nothing. At the book's width, 576, the best match of 2,048
    # unrelated directions concentrates at 0.143 (its mean over 2,048 features varies by ~3e-4 between seeds, measured
    # over 6 seed pairs): a tolerance of 0.003 is 10 of those, and 2 % of the value. None reach 0.7 (P ≈ 1e-60).
    reference = random_direction_stability(2048, 576)
    unrelated = feature_stability(make_sae("untied", 576, 2048, seed=1).feature_directions(),
                                  make_sae("untied", 576, 2048, seed=2).feature_directions())
    assert 0.13 < float(reference.best.mean()) < 0.16
    assert abs(float(unrelated.best.mean()) - float(reference.best.mean())) < 3e-3
    assert unrelated.fraction_shared == reference.fraction_shared == 0.0


def test_planted_shared_features_are_counted():
    # 10 % of a's features are b's rows with a little noise (cos ~0.99); the rest are unrelated.
    b = random_unit_directions(1000, 576, seed=5)
    a = random_unit_directions(1000, 576, seed=6)
    a[:100] = b[200:300] + 0.005 * torch.randn(100, 576)
    assert feature_stability(a, b).fraction_shared == pytest.approx(0.1)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(SaePaperError, match="different widths"):
        feature_stability(torch.ones(3, 4), torch.ones(3, 5))
    with pytest.raises(SaePaperError, match="zero row"):
        feature_stability(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.ones(2, 2))
    with pytest.raises(SaePaperError, match="bin_edges"):
        feature_stability(torch.ones(2, 2), torch.ones(2, 2), bin_edges=[0.5, 0.1])
    with pytest.raises(SaePaperError, match="two seeds"):
        random_direction_stability(4, 4, seeds=(1, 1))
