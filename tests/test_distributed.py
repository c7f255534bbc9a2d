"""Harvest and training spread over torchrun's ranks (gloo on the CPU) give what one process gives.

Each test launches real ``torchrun`` processes on 127.0.0.1 and bounds every launch with a
timeout. A cache is compared file by file: the shards' bytes and the manifest's list of
shards (files, contexts, rows, kept rows, checksums) for a harvest; the weights and the SAE's
config for training (the summaries hold wall times, which differ).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sae_paper.book.distributed import deal
from sae_paper.core.config import RunConfig
from sae_paper.data.distributed import World

LAUNCH_TIMEOUT = 240
HARVEST = ["--set", "model=pythia-70m-deduped-random", "--set", "layer=1", "--set", "context_length=16",
           "--set", "n_tokens=12000", "--set", "eval_tokens=600", "--set", "harvest_batch_size=64"]
"""About four 256-context shards of training text and one of held-out text."""


def launch(command: list[str], cache: Path, *, wait: bool = True, timeout: float = LAUNCH_TIMEOUT):
    env = {**os.environ, "SAE_PAPER_CACHE": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "SAE_PAPER_DIST_TIMEOUT": "120"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return process
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single(*args: str) -> list[str]:
    return [sys.executable, "-m", "sae_paper", *args]


def harvested(cache: Path) -> dict[str, object]:
    """Every activation shard's bytes and every manifest's shard list, by path under the cache."""
    found: dict[str, object] = {}
    for path in sorted((cache / "activations").rglob("*")):
        name = str(path.relative_to(cache))
        if path.suffix == ".safetensors":
            found[name] = path.read_bytes()
        elif path.name == "manifest.json":
            found[name] = json.loads(path.read_text())["shards"]
        elif path.suffix == ".json" and path.name.startswith("shard_"):
            found[name] = "a side file left behind"
    return found


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, object]:
    cache = tmp_path_factory.mktemp("one") / "cache"
    done = launch(single("harvest", *HARVEST), cache)
    assert done.returncode == 0, done.stderr
    found = harvested(cache)
    assert sum(name.endswith(".safetensors") for name in found) >= 5
    return found


@pytest.mark.slow
def test_two_rank_harvest_is_byte_identical_to_one_process(one_process, tmp_path):
    done = launch(torchrun("--standalone", "--nproc_per_node=2", "-m", "sae_paper", "harvest", *HARVEST),
                  tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert harvested(tmp_path / "cache") == one_process
    assert done.stdout.count("train: ") == 1  # rank 0 reports, once


@pytest.mark.slow
def test_two_nodes_on_one_host_with_c10d_rendezvous(one_process, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [launch(torchrun("--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}", "--rdzv-backend=c10d",
                             f"--rdzv-endpoint={endpoint}", "--rdzv-id=i31", "-m", "sae_paper", "harvest", *HARVEST),
                    tmp_path / "cache", wait=False) for rank in (0, 1)]
    results = [node.communicate(timeout=LAUNCH_TIMEOUT) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err for _, err in results]
    assert harvested(tmp_path / "cache") == one_process


def _rank_process(launcher: psutil.Process, rank: int) -> psutil.Process | None:
    for child in launcher.children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "sae_paper" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_a_rank_killed_mid_harvest_loses_nothing_on_rerun(one_process, tmp_path):
    cache = tmp_path / "cache"
    command = torchrun("--standalone", "--nproc_per_node=2", "-m", "sae_paper", "harvest", *HARVEST)
    first = launch(command, cache, wait=False)
    launcher, victim, deadline = psutil.Process(first.pid), None, time.monotonic() + LAUNCH_TIMEOUT
    while time.monotonic() < deadline and first.poll() is None:  # kill rank 1 once a first shard is written
        if list((cache / "activations").rglob("shard_*.safetensors")):
            victim = _rank_process(launcher, 1)
            if victim is not None:
                victim.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    _, err = first.communicate(timeout=LAUNCH_TIMEOUT)
    assert victim is not None and first.returncode != 0, err
    kept = {path: path.stat().st_mtime_ns for path in (cache / "activations").rglob("shard_*.safetensors")}
    assert kept
    again = launch(command, cache)
    assert again.returncode == 0, again.stderr
    assert harvested(cache) == one_process
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())  # not harvested again


def test_a_rank_that_fails_fails_the_launch_with_its_error_line(tmp_path):
    done = launch(torchrun("--standalone", "--nproc_per_node=2", "-m", "sae_paper", "harvest", *HARVEST,
                           "--set", "device=cuda:7"), tmp_path / "cache", timeout=120)
    assert done.returncode != 0
    assert "error: rank 0: device 'cuda:7' asked for, but torch sees no CUDA GPU here" in done.stderr \
        or "error: rank 0: device cuda:7 asked for" in done.stderr


def sae_files(cache: Path) -> dict[str, bytes]:
    return {str(path.relative_to(cache)): path.read_bytes() for path in sorted((cache / "saes").rglob("sae.*"))}


@pytest.mark.slow
def test_two_rank_book_training_is_byte_identical_to_one_process(tmp_path):
    prepare = ["prepare", "--profile", "smoke", "--notebooks", "01_training"]
    one = launch(single(*prepare), tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = launch(torchrun("--standalone", "--nproc_per_node=2", "-m", "sae_paper", *prepare), tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert "rank 0 of 2" in two.stdout and "rank 1 of 2" in two.stdout
    reference = sae_files(tmp_path / "one")
    assert len(reference) >= 2 * 8 and sae_files(tmp_path / "two") == reference
    assert harvested(tmp_path / "two") == harvested(tmp_path / "one")


def test_the_plan_is_dealt_largest_first_round_robin():
    configs = [RunConfig(model="pythia-70m-deduped-random", n_tokens=n) for n in (100, 400, 200, 300, 500)]
    def sizes(share):
        return [c.n_tokens for c in share]
    assert sizes(deal(configs, World(0, 2))) == [500, 300, 100]
    assert sizes(deal(configs, World(1, 2))) == [400, 200]
    assert sizes(deal(configs, World(0, 1))) == [500, 400, 300, 200, 100]


def test_a_rerun_keeps_shards_written_past_a_gap_and_fills_the_gap(pythia_random, scratch_cache):
    """What a killed launch can leave: shard 0 merged, shard 1 never written (its rank died), shard 2 written by
    another rank but not merged (a side file past the gap). One rank then finishes it as one process would."""
    from sae_paper.data import cache
    from sae_paper.data.activations import MANIFEST, HarvestSpec, harvest
    from sae_paper.data.models import Site
    from sae_paper.data.rank_harvest import _side_file, harvest_ranked

    site = Site("resid_post", 1)
    spec = HarvestSpec(model="pythia-70m-deduped-random", source="pile-openings", split="train", n_tokens=250,
                       context_length=16, dtype="float32", seed=3)
    folder = harvest(pythia_random, spec, [site], batch_size=4, shard_contexts=4, progress=False)[site].folder
    reference = json.loads((folder / MANIFEST).read_text())["shards"]
    assert len(reference) >= 4
    rows = {shard["file"]: (folder / shard["file"]).read_bytes() for shard in reference}
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["shards"] = reference[:1]
    cache.write_json_atomic(folder / MANIFEST, manifest)
    cache.write_json_atomic(_side_file(folder, 2), reference[2])
    for shard in reference[1:2] + reference[3:]:
        (folder / shard["file"]).unlink()
    kept = {name: (folder / name).stat().st_mtime_ns for name in (reference[0]["file"], reference[2]["file"])}

    written = harvest_ranked(lambda: pythia_random, spec, {site: spec.n_tokens}, World(0, 1), batch_size=4)
    assert f"{site}/{reference[2]['file']}" not in written and f"{site}/{reference[1]['file']}" in written
    assert json.loads((folder / MANIFEST).read_text())["shards"] == reference
    assert {shard["file"]: (folder / shard["file"]).read_bytes() for shard in reference} == rows
    assert {name: (folder / name).stat().st_mtime_ns for name in kept} == kept
    assert not list(folder.glob("shard_*.json"))


def test_book_nproc_builds_the_torchrun_line_and_rejects_a_bad_count():
    from sae_paper.book.distributed import launch_prepare, torchrun_command
    from sae_paper.cli import _prepare_args, build_parser
    from sae_paper.errors import SaePaperError

    args = build_parser().parse_args(["book", "--profile", "smoke", "--nproc", "2", "-p", "seed=1",
                                      "--notebooks", "01_training"])
    assert args.nproc == 2
    command = torchrun_command(args.nproc, _prepare_args(args))
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sae_paper",
                           "prepare", "--profile", "smoke", "--param=seed=1", "--notebooks=01_training"]
    assert build_parser().parse_args(command[command.index("prepare"):]).notebooks == ["01_training"]
    with pytest.raises(SaePaperError, match=r"^--nproc 0: must be a positive integer$"):
        launch_prepare(0, [])
    rehearsal = build_parser().parse_args(["book", "--profile", "paper", "--rehearse", "--nproc", "2"])
    prepare = build_parser().parse_args(["prepare", *_prepare_args(rehearsal)])
    assert prepare.rehearse and prepare.profile == "paper"  # the ranks prepare the rehearsal, not the paper's budgets
    planned = build_parser().parse_args(["book", "--plan", "--nproc", "4", "--plan-gpus", "2", "--plan-gpus", "8"])
    assert planned.nproc == 4 and planned.plan_gpus == [2, 8]


def test_the_rehearsals_training_plan_is_the_rehearsal_profiles():
    """`prepare --rehearse` trains what `book --rehearse` reads: the random-weight models at the rehearsal's sizes."""
    from sae_paper.book.distributed import book_parameters, book_training_plan

    rehearsal = book_training_plan(book_parameters("paper", rehearse=True))
    paper = book_training_plan(book_parameters("paper"))
    assert rehearsal and all(config.model.endswith("-random") for config in rehearsal)
    assert max(c.n_tokens for c in rehearsal) < min(c.n_tokens for c in paper)
