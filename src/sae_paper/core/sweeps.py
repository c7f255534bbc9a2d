"""Run a list of configs through :class:`~sae_paper.core.pipeline.Run` and collect one record each.

The figures of Appendices B and E are sweeps: many SAEs that differ in α, R, the number
of epochs or tied/untied weights, trained on a few activation caches. :func:`prefetch`
harvests every cache the configs need, all the sites of one text split in a single
forward pass, loading the model only if something is missing; :func:`run_sweep` then
trains (or loads, when cached) and evaluates each SAE without the splice CE (three full
forward passes each: only the main SAE pays for that) and returns a list of
:class:`SweepRecord`. Everything is cached by :class:`Run`, so rerunning a sweep with
one more α trains only that SAE.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sae_paper.core.config import RunConfig
from sae_paper.core.pipeline import Run
from sae_paper.core.train import SUMMARY_FILE
from sae_paper.data.activations import HarvestSpec
from sae_paper.data.device import harvest_dtype
from sae_paper.data.models import Site, load_model
from sae_paper.data.rank_harvest import harvest_all
from sae_paper.data.text import Split
from sae_paper.errors import SaePaperError


@dataclass(frozen=True)
class SweepRecord:
    """One trained SAE of a sweep: what it was, and how well it does."""

    model: str
    site: str
    """``resid_post.3``, ``mlp_post.0``, ..."""
    kind: str
    """tied or untied."""
    ratio: float
    alpha: float
    """The resolved L1 coefficient."""
    epochs: int
    n_tokens: int
    d_sae: int
    fvu: float
    """Fraction of variance unexplained on held-out activations."""
    mean_l0: float
    """Mean active features per held-out activation vector."""
    alive_eval: int
    """Features firing more than ``alive_threshold`` times on the held-out activations."""
    n_eval: int
    alive: int
    """Features firing more than ``alive_threshold`` times during the last training epoch
    (``n_tokens`` activation vectors): Figure 16's count."""
    alive_threshold: int
    train_seconds: float | None
    """Training wall time, summed over resumptions (None if the summary lacks it)."""
    activations_per_s: float | None

    @property
    def alive_fraction(self) -> float:
        return self.alive / self.d_sae

    @property
    def dead_fraction(self) -> float:
        return 1.0 - self.alive_fraction


def harvest_requests(configs: Iterable[RunConfig], splits: Sequence[Split] = ("train", "eval")) -> list[tuple[HarvestSpec, Site]]:
    """The (harvest spec, site) pairs the configs read, for :func:`sae_paper.data.rank_harvest.harvest_all`."""
    requests = []
    for config in configs:
        run = Run(config, progress=False)
        requests += [(run.harvest_spec(split), run.site) for split in splits]
    return requests


def prefetch(
    configs: Iterable[RunConfig],
    *,
    model: Callable[[], Any] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    splits: Sequence[Split] = ("train", "eval"),
) -> list[str]:
    """Harvest every activation cache ``configs`` need that is not complete yet.

    Sites reading the same text are harvested together, in one forward pass that stops at
    the deepest of them, up to the largest number of rows asked for
    (:func:`~sae_paper.data.rank_harvest.harvest_all`). ``model``: a zero-argument callable giving
    the loaded model (e.g. ``lambda: run.model``, to share one load with a :class:`Run`);
    called only if something must be harvested; default :func:`~sae_paper.data.models.load_model`.
    Returns one line per harvest done (empty when everything was cached).
    """
    configs = list(configs)
    if not configs:
        return []
    loaded: list[Any] = []

    def get_model():
        if not loaded:
            first = configs[0]
            loaded.append(model() if model is not None else
                          load_model(first.model, first.device, dtype=harvest_dtype(first.device, first.dtype)))
        return loaded[0]

    return harvest_all(harvest_requests(configs, splits), get_model,
                       batch_size=batch_size or configs[0].harvest_batch_size, progress=progress)


def evaluate_config(config: RunConfig, *, progress: bool = False) -> SweepRecord:
    """Train (or load) and evaluate one SAE without the splice CE, as a :class:`SweepRecord`."""
    run = Run(config, progress=progress)
    evaluation = run.evaluate(splice=False)
    summary_path = run.sae_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if "alive" not in summary:
        raise SaePaperError(f"{summary_path} has no alive count; delete {run.sae_dir} to retrain")
    return SweepRecord(
        model=config.model,
        site=str(run.site),
        kind=config.sae,
        ratio=config.ratio,
        alpha=run.alpha,
        epochs=config.epochs,
        n_tokens=config.n_tokens,
        d_sae=evaluation.d_sae,
        fvu=evaluation.fvu,
        mean_l0=evaluation.mean_l0,
        alive_eval=evaluation.alive,
        n_eval=evaluation.n_activations,
        alive=int(summary["alive"]),
        alive_threshold=config.alive_threshold,
        train_seconds=summary.get("wall_time_s"),
        activations_per_s=summary.get("activations_per_s"),
    )


def run_sweep(configs: Sequence[RunConfig], *, progress: bool = False) -> list[SweepRecord]:
    """:func:`prefetch` then :func:`evaluate_config` for each config, in order (duplicates run once)."""
    prefetch(configs, progress=progress)
    cache: dict[RunConfig, SweepRecord] = {}
    for config in configs:
        if config not in cache:
            cache[config] = evaluate_config(config, progress=progress)
    return [cache[config] for config in configs]


def run_by_site(sweeps: Iterable[Sequence[RunConfig]]) -> dict[str, RecordTable]:
    """Each non-empty sweep run with :func:`run_sweep`, in order, keyed by its SAEs' site: the shape
    Figures 6 and 16 draw (one line per site) and their verdicts read."""
    found: dict[str, RecordTable] = {}
    for configs in sweeps:
        if configs:
            records = RecordTable(run_sweep(configs))
            found[records[0].site] = records
    return found


def select(records: Iterable[SweepRecord], **criteria: Any) -> list[SweepRecord]:
    """The records whose fields equal every given value, e.g. ``select(rs, site="mlp_post.0", kind="tied")``."""
    unknown = set(criteria) - set(SweepRecord.__dataclass_fields__)
    if unknown:
        raise SaePaperError(f"unknown sweep record field(s): {', '.join(sorted(unknown))}")
    return [r for r in records if all(getattr(r, k) == v for k, v in criteria.items())]


def markdown_table(records: Iterable[SweepRecord]) -> str:
    """The records as a Markdown table (for a notebook cell's output)."""
    lines = ["| site | SAE | R | α | epochs | d_sae | FVU | mean L0 | alive (train) | alive (held-out) | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        seconds = f"{r.train_seconds:.0f}" if r.train_seconds is not None else "?"
        lines.append(f"| {r.site} | {r.kind} | {r.ratio:g} | {r.alpha:.3g} | {r.epochs} | {r.d_sae} | {r.fvu:.3f} | "
                     f"{r.mean_l0:.1f} | {r.alive} ({r.alive_fraction:.0%}) | {r.alive_eval} | {seconds} |")
    return "\n".join(lines) + "\n"


def collect(*groups: Mapping[str, Sequence[SweepRecord]] | Sequence[SweepRecord], site_kind: str) -> "RecordTable":
    """The distinct records at sites of ``site_kind`` (``resid_post`` or ``mlp_post``) from several
    sweeps, each a list of records or a mapping site → records; an SAE in two sweeps counts once."""
    found: dict[SweepRecord, None] = {}
    for group in groups:
        lists = group.values() if isinstance(group, Mapping) else [group]
        for records in lists:
            found.update((r, None) for r in records if r.site.split(".")[0] == site_kind)
    return RecordTable(found)


class RecordTable(list):
    """A list of :class:`SweepRecord` that shows itself as a Markdown table in a notebook."""

    def _repr_markdown_(self) -> str:
        return markdown_table(self)

    def where(self, **criteria: Any) -> "RecordTable":
        return RecordTable(select(self, **criteria))

    @classmethod
    def joined(cls, groups: Iterable[Iterable[SweepRecord]]) -> "RecordTable":
        """One table of several sweeps' records, in order (a notebook shows a figure's SAEs together)."""
        return cls(record for group in groups for record in group)

