"""The one training loop: Adam on the SAE loss over shuffled activation batches, resumable.

Appendix B: Adam with lr 1e-3, batches of activation vectors, a few epochs. Each
epoch visits the activations in the order ``activations.batches(batch_size,
seed=config.seed, epoch=e)`` fixes, and the SAE's initialisation is fixed by
``config.seed``; a step draws no random numbers. A run is therefore a function of
(config, α, data), which is what makes resuming exact: a checkpoint stores the SAE and
Adam state, the position (epoch, batch within the epoch) and the firing counts, and a
resumed run skips the batches it has already seen and reaches bit-for-bit the weights
of an uninterrupted run. No RNG state needs saving.

Files in ``out_dir``:

- ``checkpoint.pt``: written every ``config.checkpoint_every`` steps and at the end,
  atomically and flushed to disk (:func:`sae_paper.data.cache.atomic_write`). It records what the run depends on
  (the training fields of the config, α, the data's shape); a checkpoint from a
  different run is refused, never silently overwritten. A finished run's checkpoint is
  kept, so calling :func:`train_sae` again only rewrites the outputs.
- ``sae.safetensors`` + ``sae.json``: the trained SAE (:meth:`SparseAutoencoder.save`).
- ``summary.json``: config, α, steps, time, throughput, last-batch loss/FVU/L0, the
  alive/dead feature counts, the sha256 of the two SAE files (``files``: what a complete
  entry promises, checked when :mod:`sae_paper.core.pipeline` loads it) and the record of the
  code that trained it (``computed``, :func:`sae_paper.data.cache.stamp`). Written last, so a
  folder with a summary has had its SAE saved.

Dead features: firing counts are accumulated over the last epoch, which sees every
activation vector once, and a feature is alive if it fired more than
``config.alive_threshold`` times (Figure 16's "fires > 10 times").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_paper.core.config import TRAIN_FIELDS, RunConfig
from sae_paper.core.kernels import TrainPath, fused_sae
from sae_paper.core.metrics import alive_dead, fvu
from sae_paper.core.sae import CONFIG_FILE, WEIGHTS_FILE, SaeOutput, SparseAutoencoder, make_sae
from sae_paper.data import cache
from sae_paper.data.activations import ActivationBatches
from sae_paper.data.device import fused_adam_runs_on, resolve_device, to_device
from sae_paper.errors import SaePaperError

CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FORMAT = 1
DISPLAY_EVERY = 10
"""Steps between progress-bar updates (each costs a few host syncs and one FVU pass)."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_sae` returns."""

    sae: SparseAutoencoder
    """The SAE after the last step run (trained, if ``finished``)."""
    summary: dict[str, Any]
    """What ``summary.json`` holds (also filled, but not written, when stopped early)."""
    fire_counts: Int[Tensor, " d_sae"]
    """Times each feature fired during the last epoch (so far, if not finished)."""
    out_dir: Path
    finished: bool
    """False when the run was stopped early (tests only; then only the checkpoints are on disk)."""


def make_optimizer(sae: SparseAutoencoder, lr: float) -> torch.optim.Adam:
    """Adam(lr) over the SAE's parameters, with the single-kernel (fused) update where available."""
    params = list(sae.parameters())
    fused = all(fused_adam_runs_on(p.device) and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused)


def train_step(
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    batch: Float[Tensor, "batch d_in"],
    fire_counts: Int[Tensor, " d_sae"] | None = None,
    path: TrainPath = "auto",
) -> SaeOutput:
    """One Adam step on one batch; adds each feature's firings to ``fire_counts`` if given.

    The training loop and ``benchmarks/train_throughput.py`` both call this, so the benchmark
    measures the real step. ``path``: see :func:`training_forward`.
    """
    out = training_forward(sae, batch, path, fire_counts)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return out


def training_forward(
    sae: SparseAutoencoder,
    batch: Float[Tensor, "batch d_in"],
    path: TrainPath = "auto",
    fire_counts: Int[Tensor, " d_sae"] | None = None,
) -> SaeOutput:
    """The SAE's forward as the training step runs it: by the fused kernel ``path`` names, counting firings.

    ``path="auto"`` runs the sparse kernel when the batch's codes are sparse enough for it to
    be faster on this device, else the dense one (:func:`sae_paper.core.kernels.choose_path`);
    "dense" and "sparse" force one; all three compute the same function. ``fire_counts``, if
    given, gets each feature's firings in this batch added (counted by the kernel from the
    active codes when it runs sparse, so at no extra dense pass).
    """
    sae.check_input(batch)
    return sae.output(*fused_sae(batch, *sae.fused_weights(), path, fire_counts))


def train_sae(
    activations: ActivationBatches,
    config: RunConfig,
    *,
    alpha: float,
    out_dir: str | Path,
    progress: bool = True,
    device: str | torch.device | None = None,
    _stop_after_steps: int | None = None,
) -> TrainResult:
    """Train a ``config.sae`` SAE with ``d_sae = round(config.ratio · d_in)`` on ``activations``.

    ``alpha`` is the resolved L1 coefficient (``config.alpha`` may be None). Resumes from
    ``out_dir/checkpoint.pt`` when it was written by the same run. ``device``: where to
    train (a ``RunConfig.device`` setting or a torch device; None: ``config.device``). ``_stop_after_steps`` is for
    the tests of resumption: stop as if killed right after this many steps of this call (and any
    checkpoint due at the last of them), leaving only the periodic checkpoints behind.
    """
    if _stop_after_steps is not None and (not isinstance(_stop_after_steps, int) or _stop_after_steps <= 0):
        raise SaePaperError(f"_stop_after_steps must be a positive integer or None, got {_stop_after_steps!r}")
    run = _Run.start(activations, config, alpha, Path(out_dir),
                     resolve_device(config.device if device is None else device))
    with _progress_bar(run, progress) as show:
        for steps, (epoch, index, batch) in enumerate(run.remaining_batches(activations), 1):
            out = train_step(run.sae, run.optimizer, batch, run.counts_for(epoch))
            run.advance(out, batch, epoch, index)
            show(out, batch)
            run.checkpoint_if_due()
            if steps == _stop_after_steps:
                return run.result(finished=False)
    return run.finish()


@contextmanager
def _progress_bar(run: "_Run", enabled: bool) -> Iterator[Callable[[SaeOutput, Tensor], None]]:
    """A tqdm bar over the run's activation vectors; yields what to call after each step."""
    bar = tqdm(total=run.config.epochs * run.n_rows, initial=run.rows_done(), unit="act", unit_scale=True,
               disable=not enabled, desc=f"train {run.config.sae} SAE")

    def show(out: SaeOutput, batch: Tensor) -> None:
        bar.update(batch.shape[0])
        if enabled and run.position.step % DISPLAY_EVERY == 0:
            stats = _batch_stats(out, batch)
            bar.set_postfix(loss=f"{stats['loss']:.4g}", fvu=f"{stats['fvu']:.3f}", L0=f"{stats['l0']:.1f}",
                            refresh=False)

    try:
        yield show
    finally:
        bar.close()


@dataclass
class _Position:
    """Where training stands: the next batch to run is batch ``batch`` of epoch ``epoch``."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    seconds: float = 0.0
    """Training time summed over all calls that contributed to this run."""
    last: dict[str, float] = field(default_factory=dict)
    """Statistics of the most recent batch (loss, mse, l1, fvu, l0)."""


@dataclass
class _Run:
    """A training run's state between steps: what a checkpoint saves and the summary reports."""

    config: RunConfig
    alpha: float
    out_dir: Path
    device: torch.device
    n_rows: int
    fingerprint: dict[str, Any]
    """What the result depends on; a checkpoint is only resumed when this matches exactly."""
    sae: SparseAutoencoder
    optimizer: torch.optim.Optimizer
    fire_counts: Tensor
    position: _Position
    resumed_from: int
    saved_step: int
    """Step of the checkpoint on disk (-1: none)."""
    started: float = field(default_factory=time.perf_counter)
    seconds_before: float = 0.0
    last_batch: tuple[SaeOutput, Tensor] | None = None

    @classmethod
    def start(cls, activations: ActivationBatches, config: RunConfig, alpha: float, out_dir: Path,
              device: torch.device) -> "_Run":
        """A fresh run, or the one whose checkpoint is in ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        d_in, n_rows = activations.d_in, activations.n_rows
        d_sae = max(1, round(config.ratio * d_in))
        fingerprint = {name: getattr(config, name) for name in TRAIN_FIELDS}
        fingerprint.update(alpha=float(alpha), d_in=d_in, n_rows=n_rows, d_sae=d_sae)
        metadata = {"model": config.model, "layer": config.layer, "site": config.site, "source": config.source,
                    "config": config.to_dict(), "n_rows": n_rows}
        sae = make_sae(config.sae, d_in, d_sae, alpha=alpha, seed=config.seed, metadata=metadata).to(device)
        optimizer = make_optimizer(sae, config.lr)
        fire_counts = torch.zeros(d_sae, dtype=torch.int64, device=device)
        path = out_dir / CHECKPOINT_FILE
        position = _load_checkpoint(path, fingerprint, sae, optimizer, fire_counts) if path.exists() else _Position()
        return cls(config=config, alpha=alpha, out_dir=out_dir, device=device, n_rows=n_rows, fingerprint=fingerprint,
                   sae=sae, optimizer=optimizer, fire_counts=fire_counts, position=position,
                   resumed_from=position.step, saved_step=position.step if path.exists() else -1,
                   seconds_before=position.seconds)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.n_rows / self.config.batch_size)

    def remaining_batches(self, activations: ActivationBatches) -> Iterator[tuple[int, int, Tensor]]:
        """(epoch, index within it from 1, batch on the run's device) of every batch not trained on yet.

        Each epoch visits ``activations.batches(batch_size, seed, epoch)`` in order; the batches
        before the checkpoint's position are skipped. One error line when a source yields another
        number of batches than its rows call for.
        """
        per_epoch, first_epoch, first_skip = self.batches_per_epoch, self.position.epoch, self.position.batch
        for epoch in range(first_epoch, self.config.epochs):
            skip, seen = first_skip if epoch == first_epoch else 0, 0
            for seen, batch in enumerate(activations.batches(self.config.batch_size, seed=self.config.seed,
                                                             epoch=epoch), 1):
                if seen <= skip:  # trained on before the checkpoint
                    continue
                if seen > per_epoch:
                    break
                yield epoch, seen, to_device(batch, self.device)
            if seen != per_epoch:
                raise SaePaperError(
                    f"activation source yielded {'more than ' if seen > per_epoch else ''}"
                    f"{min(seen, per_epoch)} batches in epoch {epoch}, expected {per_epoch} "
                    f"({self.n_rows} rows / batch size {self.config.batch_size})"
                )

    def counts_for(self, epoch: int) -> Tensor | None:
        """The firing counts to add a step of ``epoch`` to: they cover the last epoch only."""
        return self.fire_counts if epoch == self.config.epochs - 1 else None

    def advance(self, out: SaeOutput, batch: Tensor, epoch: int, index: int) -> None:
        """Record that batch ``index`` of ``epoch`` has been trained on."""
        self.last_batch = (out, batch)
        self.position.step += 1
        self.position.epoch, self.position.batch = (epoch + 1, 0) if index == self.batches_per_epoch else (epoch, index)

    def checkpoint_if_due(self) -> None:
        if self.config.checkpoint_every and self.position.step % self.config.checkpoint_every == 0:
            self.checkpoint()

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def rows_done(self) -> int:
        """Activation vectors trained on so far (each epoch's rows counted once)."""
        return self.position.epoch * self.n_rows + min(self.position.batch * self.config.batch_size, self.n_rows)

    def checkpoint(self) -> None:
        """Write ``checkpoint.pt`` atomically, flushed to disk (it must survive the machine going down)."""
        self.position.seconds = self.elapsed()
        if self.last_batch is not None:
            self.position.last = _batch_stats(*self.last_batch)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "sae": self.sae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "fire_counts": self.fire_counts,
            "position": asdict(self.position),
        }
        cache.atomic_write(self.out_dir / CHECKPOINT_FILE, lambda tmp: _save(payload, tmp), durable=True)
        self.saved_step = self.position.step

    def summary(self) -> dict[str, Any]:
        seconds = self.elapsed()
        alive, dead = alive_dead(self.fire_counts, self.config.alive_threshold)
        return {
            "config": self.config.to_dict(),
            "alpha": self.alpha,
            "kind": self.config.sae,
            "d_sae": self.sae.d_sae,
            "n_rows": self.n_rows,
            "steps": self.position.step,
            "total_steps": self.config.epochs * self.batches_per_epoch,
            "epochs": self.position.epoch,
            "resumed_from_step": self.resumed_from,
            "wall_time_s": seconds,
            "activations_per_s": self.rows_done() / seconds if seconds > 0 else None,
            "final": self.position.last,
            "alive": alive,
            "dead": dead,
            "alive_threshold": self.config.alive_threshold,
            "fire_counts_window": "last epoch",
        }

    def result(self, *, finished: bool) -> TrainResult:
        return TrainResult(sae=self.sae, summary=self.summary(), fire_counts=self.fire_counts.cpu(),
                           out_dir=self.out_dir, finished=finished)

    def finish(self) -> TrainResult:
        """Final checkpoint (so a later call finds the run finished), SAE and summary.json."""
        if self.saved_step != self.position.step:
            self.checkpoint()
        result = self.result(finished=True)
        self.sae.save(self.out_dir)
        result.summary["files"] = {name: cache.sha256_file(self.out_dir / name) for name in (WEIGHTS_FILE, CONFIG_FILE)}
        result.summary["computed"] = cache.stamp("sae", self.out_dir)
        text = json.dumps(result.summary, indent=2, sort_keys=True) + "\n"
        cache.atomic_write(self.out_dir / SUMMARY_FILE, lambda tmp: tmp.write_text(text))
        return result


def _save(payload: dict[str, Any], path: Path) -> None:
    # through a handle: torch.save given a path names the archive inside after the file, here a temporary one
    with open(path, "wb") as handle:
        torch.save(payload, handle)


@torch.no_grad()
def _batch_stats(out: SaeOutput, batch: Tensor) -> dict[str, float]:
    """Loss terms, FVU and L0 of one batch, as plain floats (costs a host sync)."""
    try:
        batch_fvu = fvu(batch, out.x_hat)
    except SaePaperError:  # one row, or no variance: undefined, and only for display
        batch_fvu = float("nan")
    return {
        "loss": out.loss.item(),
        "mse": out.mse.item(),
        "l1": out.l1.item(),
        "fvu": batch_fvu,
        "l0": (out.codes > 0).sum(dim=1).double().mean().item(),
    }


def _load_checkpoint(
    path: Path,
    fingerprint: dict[str, Any],
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    fire_counts: Tensor,
) -> _Position:
    """Restore ``sae``, ``optimizer`` and ``fire_counts`` in place from ``path``; return the position."""
    try:
        payload = torch.load(path, map_location=fire_counts.device, weights_only=True)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        saved = payload["fingerprint"]
    except Exception as error:  # any unreadable file: say which and why, in one line
        raise SaePaperError(f"cannot resume from {path}: {error!r}; delete it to start over") from None
    differences = [f"{name}: {saved.get(name)!r} there vs {value!r} now"
                   for name, value in fingerprint.items() if saved.get(name) != value]
    if differences:
        raise SaePaperError(f"{path} belongs to a different training run ({'; '.join(differences)}); "
                            "use another out_dir or delete the checkpoint")
    sae.load_state_dict(payload["sae"])
    optimizer.load_state_dict(payload["optimizer"])
    fire_counts.copy_(payload["fire_counts"])
    return _Position(**payload["position"])
