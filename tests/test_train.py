"""The training loop (sae_paper.core.train): it learns, it resumes exactly, it refuses foreign checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from sae_paper.core.config import RunConfig
from sae_paper.core.sae import load_sae, make_sae
from sae_paper.core.train import CHECKPOINT_FILE, SUMMARY_FILE, make_optimizer, train_sae, train_step
from sae_paper.data.activations import InMemoryActivations
from sae_paper.errors import SaePaperError

pytestmark = pytest.mark.usefixtures("one_thread")


def planted_dictionary(n_rows: int, d_in: int = 32, n_features: int = 64, active: float = 3.0, seed: int = 0):
    """Rows ``x = c · F`` of a known unit-norm dictionary F [n_features, d_in] with sparse codes
    (each feature on with probability active / n_features, magnitude uniform in [0.5, 1.5])."""
    generator = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(n_features, d_in, generator=generator), dim=1)
    on = torch.rand(n_rows, n_features, generator=generator) < active / n_features
    magnitudes = 0.5 + torch.rand(n_rows, n_features, generator=generator)
    return (on * magnitudes) @ features, features


def mean_max_cosine(true_features, learned_features) -> float:
    """For each true feature, the best cosine similarity with any learned one; averaged."""
    cosines = F.normalize(true_features, dim=1) @ F.normalize(learned_features, dim=1).T
    return cosines.max(dim=1).values.mean().item()


def small_config(**changes) -> RunConfig:
    base = dict(ratio=2.0, batch_size=64, epochs=3, lr=3e-3, seed=0, checkpoint_every=5, alive_threshold=2)
    return RunConfig(**{**base, **changes})


@pytest.fixture
def small_data():
    x, _ = planted_dictionary(1000, d_in=8, n_features=12)
    return InMemoryActivations(x)


def test_recovers_a_planted_sparse_dictionary(tmp_path):
    """d_in = 32, 64 true directions, ~3 active per row; a tied R = 2 SAE finds them (MMCS ≥ 0.9).

    α = 0.01 balances the per-dimension MSE (x has per-dimension variance ~0.1) against ~3
    units of L1 per row; across data seeds the result is 0.955 to 0.965, and an untrained SAE scores ~0.45.
    """
    x, true_features = planted_dictionary(20_000)
    config = RunConfig(ratio=2.0, batch_size=128, epochs=20, lr=3e-3, seed=0, checkpoint_every=0)
    untrained = make_sae("tied", 32, 64, seed=0).feature_directions().detach()
    result = train_sae(InMemoryActivations(x), config, alpha=0.01, out_dir=tmp_path, progress=False, device="cpu")
    learned = result.sae.feature_directions().detach()
    assert mean_max_cosine(true_features, untrained) < 0.6
    assert mean_max_cosine(true_features, learned) >= 0.9
    assert result.summary["alive"] == 64 and 1.0 < result.summary["final"]["l0"] < 12.0


def test_outputs_on_disk_describe_the_run(tmp_path, small_data):
    config = small_config(sae="untied", ratio=1.5)
    result = train_sae(small_data, config, alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu")
    assert result.finished and result.sae.d_sae == 12 and result.sae.kind == "untied"
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary == json.loads(json.dumps(result.summary))
    steps_per_epoch = 16  # ceil(1000 / 64)
    assert (summary["steps"], summary["total_steps"], summary["epochs"]) == (3 * steps_per_epoch, 48, 3)
    assert summary["config"] == config.to_dict() and summary["alpha"] == 1e-3
    assert summary["alive"] + summary["dead"] == 12
    assert summary["alive"] == int((result.fire_counts > 2).sum())
    assert summary["activations_per_s"] > 0 and set(summary["final"]) == {"loss", "mse", "l1", "fvu", "l0"}
    assert 0 < int(result.fire_counts.max()) <= 1000  # counted over one epoch of 1000 rows
    loaded = load_sae(tmp_path)
    assert loaded.alpha == 1e-3 and loaded.metadata["config"]["sae"] == "untied"
    for a, b in zip(result.sae.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_untied_trains_with_separate_encoder_and_decoder(tmp_path, small_data):
    config = small_config(sae="untied", epochs=4)
    start = make_sae("untied", 8, 16, seed=0)
    x = small_data.rows
    initial_loss = start(x).mse.item() + 1e-3 * start(x).l1.item()
    result = train_sae(small_data, config, alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu")
    sae = result.sae
    assert sae(x).loss.item() < 0.5 * initial_loss
    # the two matrices moved independently away from their shared start
    assert not torch.allclose(sae.M_e, sae.feature_directions(), atol=1e-3)
    assert not torch.allclose(sae.M_e, start.M_e, atol=1e-3) and not torch.allclose(sae.M_d, start.M_d, atol=1e-3)


def test_train_step_takes_one_adam_step_and_counts_firings():
    sae = make_sae("tied", 8, 16, alpha=1e-3)
    optimizer = make_optimizer(sae, lr=1e-3)
    x = torch.randn(32, 8)
    fire_counts = torch.zeros(16, dtype=torch.int64)
    before = sae.M.detach().clone()
    out = train_step(sae, optimizer, x, fire_counts)
    assert torch.equal(fire_counts, (out.codes > 0).sum(dim=0))
    assert not torch.equal(sae.M, before)
    # Adam's first step moves every coordinate with a non-zero gradient by lr (up to its epsilon)
    moved = (sae.M.detach() - before).abs()
    assert moved.max().item() == pytest.approx(1e-3, rel=1e-3)


def test_loop_equals_a_hand_written_loop(tmp_path, small_data):
    """The loop is: seeded init, Adam, batches in (seed, epoch) order, firings counted in the last epoch."""
    config = small_config(sae="untied", epochs=2)
    result = train_sae(small_data, config, alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu")
    sae = make_sae("untied", 8, 16, alpha=1e-3, seed=config.seed)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
    fire_counts = torch.zeros(16, dtype=torch.int64)
    for epoch in range(config.epochs):
        for batch in small_data.batches(config.batch_size, seed=config.seed, epoch=epoch):
            out = sae(batch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if epoch == config.epochs - 1:
                fire_counts += (out.codes > 0).sum(dim=0)
    assert torch.equal(result.fire_counts, fire_counts)
    for name, value in sae.state_dict().items():  # fused and plain Adam may round differently
        torch.testing.assert_close(result.sae.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)


def final_state(result):
    return {name: value.clone() for name, value in result.sae.state_dict().items()}


@pytest.mark.parametrize(
    ("checkpoint_every", "stops", "resumed_from"),
    [
        (5, [23, 10], 30),  # killed mid-epoch 1 (restart from step 20), then mid-epoch 2, the counting epoch
        (16, [16, 9], 16),  # checkpoints fall on epoch ends; killed right after one, then before the next
        (7, [3], 0),  # killed before the first checkpoint: the resumed run starts over
    ],
)
def test_resumed_run_equals_uninterrupted_run(tmp_path, small_data, checkpoint_every, stops, resumed_from):
    """16 batches per epoch, 3 epochs; stopped runs restart from their last checkpoint."""
    config = small_config(checkpoint_every=checkpoint_every)
    straight = train_sae(small_data, config, alpha=1e-3, out_dir=tmp_path / "straight", progress=False, device="cpu")
    out_dir = tmp_path / "interrupted"
    for stop in stops:
        partial = train_sae(small_data, config, alpha=1e-3, out_dir=out_dir, progress=False, device="cpu",
                            _stop_after_steps=stop)
        assert not partial.finished and not (out_dir / SUMMARY_FILE).exists()
    resumed = train_sae(small_data, config, alpha=1e-3, out_dir=out_dir, progress=False, device="cpu")
    assert resumed.finished and resumed.summary["resumed_from_step"] == resumed_from
    straight_state, resumed_state = final_state(straight), final_state(resumed)
    for name in straight_state:
        assert torch.equal(straight_state[name], resumed_state[name]), name
    assert torch.equal(straight.fire_counts, resumed.fire_counts)
    assert resumed.summary["steps"] == straight.summary["steps"] == 48
    assert resumed.summary["final"] == straight.summary["final"]


def test_a_finished_run_is_not_trained_again(tmp_path, small_data):
    config = small_config()
    first = train_sae(small_data, config, alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu")
    again = train_sae(small_data, config, alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu")
    assert again.summary["resumed_from_step"] == again.summary["steps"] == first.summary["steps"]
    for a, b in zip(first.sae.state_dict().values(), again.sae.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("changes", "alpha", "named"),
    [
        ({}, 2e-3, "alpha"),
        ({"lr": 1e-2}, 1e-3, "lr"),
        ({"sae": "untied"}, 1e-3, "sae"),
        ({"ratio": 3.0}, 1e-3, "ratio"),
    ],
)
def test_a_checkpoint_from_a_different_run_is_refused(tmp_path, small_data, changes, alpha, named):
    train_sae(small_data, small_config(), alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu",
              _stop_after_steps=6)
    checkpoint = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(SaePaperError, match=f"different training run.*{named}"):
        train_sae(small_data, small_config(**changes), alpha=alpha, out_dir=tmp_path, progress=False, device="cpu")
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == checkpoint


def test_a_checkpoint_with_only_a_different_checkpoint_interval_is_resumed(tmp_path, small_data):
    train_sae(small_data, small_config(), alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu",
              _stop_after_steps=6)
    result = train_sae(small_data, small_config(checkpoint_every=3), alpha=1e-3, out_dir=tmp_path, progress=False,
                       device="cpu")
    assert result.summary["resumed_from_step"] == 5


def test_a_corrupt_checkpoint_is_reported(tmp_path, small_data):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(SaePaperError, match="cannot resume from"):
        train_sae(small_data, small_config(), alpha=1e-3, out_dir=tmp_path, progress=False, device="cpu")


class ShortSource(InMemoryActivations):
    """Yields one batch fewer than its n_rows promise."""

    def batches(self, batch_size, *, seed, epoch):
        return list(super().batches(batch_size, seed=seed, epoch=epoch))[:-1]


def test_a_source_that_yields_too_few_batches_is_reported(tmp_path):
    with pytest.raises(SaePaperError, match="yielded 15 batches in epoch 0, expected 16"):
        train_sae(ShortSource(torch.randn(1000, 8)), small_config(), alpha=1e-3, out_dir=tmp_path, progress=False,
                  device="cpu")


@pytest.mark.parametrize("stop", [0, -3, 2.5])
def test_stop_after_steps_must_be_positive(tmp_path, small_data, stop):
    with pytest.raises(SaePaperError, match="_stop_after_steps"):
        train_sae(small_data, small_config(), alpha=1e-3, out_dir=tmp_path, progress=False, _stop_after_steps=stop)


def test_progress_bar_shows_loss_fvu_and_l0(tmp_path, small_data, capsys):
    train_sae(small_data, small_config(epochs=1), alpha=1e-3, out_dir=tmp_path, progress=True, device="cpu")
    shown = capsys.readouterr().err
    assert "train tied SAE" in shown and "act/s" in shown
    assert all(f"{name}=" in shown for name in ("loss", "fvu", "L0"))


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_training_gives_the_same_bytes_on_one_thread_as_on_two(tmp_path, kind):
    """The book runs notebooks side by side on one thread each (sae_paper.book.lanes), ``sae-paper run`` on every
    core: the SAE must not depend on it. At the book's shape (batch 128, d_in 576, R = 2, ~5 % of codes firing),
    large enough for torch to split its kernels over threads, and through both the dense and the sparse step."""
    x, _ = planted_dictionary(1024, d_in=576, n_features=1152, active=60.0, seed=1)
    config = small_config(batch_size=128, epochs=2, sae=kind, checkpoint_every=0)
    weights = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out = tmp_path / f"threads-{threads}"
        train_sae(InMemoryActivations(x), config, alpha=0.003, out_dir=out, progress=False, device="cpu")
        weights.append((out / "sae.safetensors").read_bytes())
    assert weights[0] == weights[1]
