"""The book's harvest and training spread over torchrun's ranks, before the notebooks run.

``sae-paper book --nproc N`` (or, on several machines, the torchrun line in
docs/distributed.md) first runs ``sae-paper prepare`` on N ranks: every activation the
notebooks read (:func:`sae_paper.book.harvest.book_harvest_requests`, its shards dealt over the
ranks by :mod:`sae_paper.data.rank_harvest`), then every SAE they read
(:func:`book_training_plan`), sorted largest first and dealt round-robin, each rank on its own
device (``cuda:LOCAL_RANK`` on a GPU box, the CPU otherwise). Training goes through
:meth:`sae_paper.core.pipeline.Run.sae`, which trains under the SAE folder's lock and resumes
from checkpoints, so a rerun after a dead rank loses nothing. The notebooks then run as
usual and only load from the cache. No scheduler beyond "sort, round-robin": the ranks meet
only at barriers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sae_paper.book.harvest import harvest_for_book
from sae_paper.book.profiles import load_profile, parse_overrides, profile_path, resolve_parameters, study_classes
from sae_paper.book.rehearsal import rehearsal_profile
from sae_paper.book.runner import BookLayout
from sae_paper.core.config import RunConfig
from sae_paper.core.pipeline import Run
from sae_paper.data.distributed import World, barrier
from sae_paper.data.models import Site, model_spec
from sae_paper.errors import SaePaperError

SEED_READS = {
    "AutointerpStudy": lambda s: [s.sae_config(layer) for layer in s.layers]
    + [s.sae_config(s.main_layer, ratio) for ratio in s.fig8_ratios],
    "IoiStudy": lambda s: s.layer_configs(s.layer),
    "CaseStudy": lambda s: [s.main_config()],
}
"""The SAEs a study reads at each of its other seeds (``chapters/*_seeds.py``), by study class; a study not listed
reads its ``all_configs()`` at every seed."""


def book_parameters(profile: str | Path, overrides: Sequence[str] = (), notebooks: Sequence[str] | None = None,
                    layout: BookLayout | None = None, *, rehearse: bool = False) -> dict[str, dict[str, Any]]:
    """The notebooks' resolved parameters, as :func:`sae_paper.book.runner.run_book` resolves them (``rehearse``:
    the profile's rehearsal, :func:`sae_paper.book.rehearsal.rehearsal_profile`, as ``book --rehearse`` runs it)."""
    layout = layout or BookLayout.default()
    selected = list(notebooks) if notebooks else layout.notebooks()
    entries = load_profile(profile_path(profile, layout.profiles_dir))
    if rehearse:
        entries = rehearsal_profile(entries)
    return resolve_parameters(entries, selected, parse_overrides(overrides))


def book_training_plan(parameters: Mapping[str, Mapping[str, Any]]) -> list[RunConfig]:
    """Every SAE the notebooks of ``parameters`` read, seeds and sweeps included, each once (first use first)."""
    studies, plan = study_classes(), {}
    for name, values in parameters.items():
        if name not in studies:
            continue
        study = studies[name].from_params(values)
        configs = list(study.all_configs())
        reads = SEED_READS.get(type(study).__name__, lambda s: s.all_configs())
        for seed in study.seeds()[1:]:
            configs += reads(study.reseeded(seed))
        for config in configs:
            plan.setdefault(Run(config, progress=False).sae_dir, config)
    return list(plan.values())


def training_cost(config: RunConfig) -> int:
    """Multiply-adds of training, up to a constant: rows seen × d_in × d_sae."""
    width = Site(config.site, config.layer).width(model_spec(config.model))
    return config.n_tokens * config.epochs * width * max(1, round(config.ratio * width))


def deal(configs: Sequence[RunConfig], here: World) -> list[RunConfig]:
    """This rank's share of ``configs``: sorted largest first (stable), then round-robin."""
    return here.mine(sorted(configs, key=training_cost, reverse=True))


def prepare_book(parameters: Mapping[str, Mapping[str, Any]], here: World, log=print) -> list[str]:
    """This rank's share of the book's harvest and training (every rank calls it with the same parameters)."""
    lines = [f"harvest: {line}" for line in harvest_for_book(parameters, here=here)]
    barrier("the end of the book's harvest")
    plan = book_training_plan(parameters)
    mine = deal(plan, here)
    for config in mine:
        run = Run(config, progress=False)
        trained = not run.sae_is_cached()
        run.sae()
        if trained:
            lines.append(f"rank {here.rank}: trained {run.sae_dir.name}")
    barrier("the end of the book's training")
    lines.append(f"rank {here.rank} of {here.size}: {len(mine)} of the plan's {len(plan)} SAEs")
    for line in lines:
        log(line)
    return lines


def torchrun_command(nproc: int, prepare_args: Sequence[str]) -> list[str]:
    """The one-machine torchrun line that runs ``sae-paper prepare`` on ``nproc`` ranks."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "sae_paper", "prepare", *prepare_args]


def launch_prepare(nproc: int, prepare_args: Sequence[str], log=print) -> None:
    """Run :func:`prepare_book` on ``nproc`` local ranks and wait; a rank that fails fails this with its error line."""
    if not isinstance(nproc, int) or nproc < 1:
        raise SaePaperError(f"--nproc {nproc!r}: must be a positive integer")
    command = torchrun_command(nproc, prepare_args)
    log("prepare: " + " ".join(command[1:]))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, check=False)
    sys.stderr.write(done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    if done.returncode:
        last = (errors or done.stderr.strip().splitlines() or ["no error line"])[0]
        raise SaePaperError(f"the {nproc}-rank harvest and training failed (exit {done.returncode}): "
                            f"{last.removeprefix('error: ')}")
