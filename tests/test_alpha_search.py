"""α by L0 (issue 30's controls): the bisection on a known monotone curve, the short training on real small
activations, the one-line refusals, and the cache that keeps a warm build from searching again."""

from __future__ import annotations

import math

import pytest
import torch

from sae_paper.core.alpha_search import SearchSettings, matched_alpha, search_alpha, short_l0
from sae_paper.core.config import RunConfig
from sae_paper.data.activations import InMemoryActivations
from sae_paper.errors import SaePaperError


def test_bisection_finds_a_known_curves_alpha_within_tolerance_and_lists_its_trials():
    calls = []

    def curve(alpha):  # L0 = 200 / (1 + 1000 α): at α = 0.01 it is 200/11
        calls.append(alpha)
        return 200 / (1 + 1000 * alpha)

    found = search_alpha(curve, 40.0, start=1e-4, settings=SearchSettings(steps=20, tolerance=0.01))
    assert found.converged and abs(found.l0 - 40) <= 0.4
    assert abs(found.alpha - 4e-3) / 4e-3 < 0.05  # 200 / (1 + 1000 α) = 40 at α = 4e-3
    assert [a for a, _ in found.trials] == calls and calls[:2] == [1e-4, 1e-3]  # a decade up while unbracketed
    assert found.target_l0 == 40.0


def test_a_target_out_of_reach_returns_the_closest_trial_not_converged():
    found = search_alpha(lambda a: 5.0, 40.0, start=1e-2, settings=SearchSettings(steps=4))
    assert not found.converged and found.l0 == 5.0 and len(found.trials) == 4
    assert [a for a, _ in found.trials] == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5])


@pytest.mark.parametrize("target", [0.0, -3.0, math.nan, math.inf, 1152.0, 5000.0])
def test_a_bad_target_is_refused_in_one_line(target):
    with pytest.raises(SaePaperError, match="target L0") as error:
        search_alpha(lambda a: 1.0, target, start=1e-2, max_l0=1152)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("bad", [dict(rows=1), dict(steps=0), dict(epochs=0), dict(tolerance=0.0), dict(tolerance=1.5),
                                 dict(factor=1.0)])
def test_bad_search_settings_are_refused_in_one_line(bad):
    with pytest.raises(SaePaperError, match="alpha search"):
        SearchSettings(**bad)


def _sparse_rows(n=1024, d=16, seed=0) -> torch.Tensor:
    """Rows that are sums of a few of 32 fixed directions at a large scale (a residual-like norm)."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(32, d, generator=g), dim=1)
    codes = torch.rand(n, 32, generator=g) * (torch.rand(n, 32, generator=g) < 0.1)
    return 30 * codes @ dictionary


def test_short_training_on_real_rows_lands_within_tolerance_of_a_target_l0(one_thread):
    rows = InMemoryActivations(_sparse_rows())
    config = RunConfig(model="pythia-70m-deduped-random", n_tokens=rows.n_rows, ratio=2.0, batch_size=64, seed=0)
    dense, sparse = short_l0(rows, config, 1e-5, epochs=2), short_l0(rows, config, 1.0, epochs=2)
    assert dense > sparse  # a larger α, a sparser code
    target = (dense + sparse) / 2
    settings = SearchSettings(epochs=2, steps=14, tolerance=0.1)
    found = search_alpha(lambda a: short_l0(rows, config, a, epochs=2), target, start=1e-2, max_l0=32, settings=settings)
    assert found.converged, found.trials
    assert abs(short_l0(rows, config, found.alpha, epochs=2) - target) <= 0.1 * target  # seeded: the same again


def test_a_short_training_is_the_training_loops_weights(one_thread, tmp_path):
    from sae_paper.core.alpha_search import short_trained
    from sae_paper.core.train import train_sae

    rows = InMemoryActivations(_sparse_rows(n=300))
    config = RunConfig(model="pythia-70m-deduped-random", n_tokens=300, ratio=2.0, batch_size=64, seed=3, epochs=2)
    loop = train_sae(rows, config, alpha=0.05, out_dir=tmp_path, progress=False).sae
    short = short_trained(rows, config, 0.05, epochs=2)
    assert all(torch.equal(a, b) for a, b in zip(loop.state_dict().values(), short.state_dict().values()))


def test_matched_alpha_is_cached_and_a_warm_call_trains_nothing(monkeypatch, one_thread):
    from sae_paper.core import alpha_search

    control = RunConfig(model="pythia-70m-deduped-random-seed1", layer=1, n_tokens=600, context_length=32, batch_size=64,
                        eval_tokens=62, harvest_batch_size=8, epochs=2)
    settings = SearchSettings(rows=600, steps=6, tolerance=0.1)
    first = matched_alpha(control, 200.0, start=1e-2, settings=settings)
    assert first.trials[0][0] == 1e-2 and len(first.trials) <= 6 and first.target_l0 == 200.0
    monkeypatch.setattr(alpha_search, "short_l0", lambda *a, **k: pytest.fail("a warm search trained again"))
    assert matched_alpha(control, 200.0, start=1e-2, settings=settings) == first
    assert matched_alpha(control.replace(alpha=5.0), 200.0, start=1e-2, settings=settings) == first  # α is not a key


def test_with_every_row_the_trial_is_the_full_training(one_thread):
    from sae_paper.core.pipeline import Run

    control = RunConfig(model="pythia-70m-deduped-random-seed1", layer=1, n_tokens=600, context_length=32, batch_size=64,
                        eval_tokens=62, harvest_batch_size=8, epochs=2)
    found = matched_alpha(control, 150.0, start=1e-2, settings=SearchSettings(rows=600, steps=10, tolerance=0.1))
    run = Run(control.replace(alpha=found.alpha), progress=False)
    assert run.evaluate(splice=False).mean_l0 == pytest.approx(found.l0)  # the trial's L0 is the SAE's held-out L0
