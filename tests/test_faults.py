"""Faults with real processes: SIGKILL in the middle of a harvest and of a training run, two
processes started together on one cache, and ``sae-paper run`` with no network.

Each test starts ``python -m sae_paper`` (the ``sae-paper`` command) on the random-weight
Pythia with tiny sizes, waits for the file that shows the process reached the point under
test (the first activation shard; the first training checkpoint), and sends SIGKILL there:
no handler runs, so what survives is what was on disk. Rerunning must then give the SAE an
uninterrupted run gives, byte for byte. The uninterrupted reference runs in a network
namespace with no interfaces (``unshare -n``, root only), which proves the run opens no
connection. Every process runs torch on one thread, so runs are bit-identical across
processes and two of them at once do not stall each other on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sae_paper.core.config import RunConfig

pytestmark = pytest.mark.slow

FIELDS = dict(model="pythia-70m-deduped-random", layer=1, context_length=16, n_tokens=8000, eval_tokens=100,
              harvest_batch_size=32, batch_size=64, epochs=2, checkpoint_every=20)
ARGS = [arg for name, value in FIELDS.items() for arg in ("--set", f"{name}={value}")]
EVALUATION_LINES = ("FVU", "mean L0", "alive features", "CE clean", "CE spliced", "CE zero-ablate", "CE recovered")


def network_free_prefix() -> list[str] | None:
    """``["unshare", "-n"]`` when this user may make a network namespace, else None."""
    if shutil.which("unshare") is None:
        return None
    try:
        done = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return ["unshare", "-n"] if done.returncode == 0 else None


NO_NETWORK = network_free_prefix()
NO_NETWORK_REASON = "needs `unshare -n` (util-linux, as root or with CAP_SYS_ADMIN); CI runs as root"


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "SAE_PAPER_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def start(cache: Path, command: str = "run", *, prefix: list[str] = ()) -> subprocess.Popen:
    """``sae-paper COMMAND`` on the tiny config, its output in files beside the cache (a pipe could fill and block it)."""
    cache.mkdir(parents=True, exist_ok=True)
    stamp = f"{command}-{time.monotonic_ns()}"
    out, err = open(cache.parent / f"{cache.name}-{stamp}.out", "w"), open(cache.parent / f"{cache.name}-{stamp}.err", "w")
    process = subprocess.Popen([*prefix, sys.executable, "-m", "sae_paper", command, *ARGS], stdout=out, stderr=err,
                               env=environment(cache))
    process.out_path, process.err_path = Path(out.name), Path(err.name)
    out.close()
    err.close()
    return process


def finish(process: subprocess.Popen, timeout: float = 900) -> tuple[str, str]:
    process.wait(timeout=timeout)
    out, err = process.out_path.read_text(), process.err_path.read_text()
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err[-3000:]}"
    return out, err


def kill_when(process: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    """SIGKILL ``process`` as soon as ``ready()``; fail if it exits or times out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}: "
                                 f"{process.err_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def run_paths(cache: Path, monkeypatch) -> tuple[Path, Path, Path]:
    """(train activation folder of the site, eval one, SAE folder) for the tiny config in ``cache``."""
    from sae_paper.core.pipeline import Run

    monkeypatch.setenv("SAE_PAPER_CACHE", str(cache))
    run = Run(RunConfig(**FIELDS), progress=False)
    site = str(run.site)
    return run.harvest_spec("train").folder() / site, run.harvest_spec("eval").folder() / site, run.sae_dir


def evaluation_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(EVALUATION_LINES)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted ``sae-paper run``, in a network namespace with no interfaces where possible."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    out, err = finish(start(cache, prefix=NO_NETWORK or []))
    return cache, out, err


@pytest.mark.skipif(NO_NETWORK is None, reason=NO_NETWORK_REASON)
def test_sae_paper_run_needs_no_network(reference):
    probe = subprocess.run([*NO_NETWORK, sys.executable, "-c",
                            "import socket; socket.create_connection(('1.1.1.1', 53), timeout=5)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "unreachable" in probe.stderr  # the namespace really has no route out
    cache, out, _ = reference
    assert len(evaluation_lines(out)) == len(EVALUATION_LINES)


def test_sigkill_in_harvest_then_in_training_and_the_rerun_gives_the_uninterrupted_sae(reference, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    train_folder, _, sae_dir = run_paths(cache, monkeypatch)
    ref_train, _, ref_sae = run_paths(reference[0], monkeypatch)

    def shards_listed() -> int:
        try:
            return len(json.loads((train_folder / "manifest.json").read_text())["shards"])
        except (OSError, ValueError):
            return 0

    # 1. killed in the harvest, right after its first shard (the text needs three)
    kill_when(start(cache), lambda: shards_listed() >= 1, "the first activation shard")
    manifest = json.loads((train_folder / "manifest.json").read_text())
    assert sum(shard["kept"] for shard in manifest["shards"]) < FIELDS["n_tokens"], "the harvest had already finished"

    # 2. killed in training, right after its first checkpoint
    kill_when(start(cache), lambda: (sae_dir / "checkpoint.pt").is_file(), "the first training checkpoint")
    assert not (sae_dir / "summary.json").exists(), "training had already finished"

    # 3. the rerun resumes both and ends where the uninterrupted run ended
    out, _ = finish(start(cache))
    assert (sae_dir / "sae.safetensors").read_bytes() == (ref_sae / "sae.safetensors").read_bytes()
    assert evaluation_lines(out) == evaluation_lines(reference[1])
    records = json.loads((train_folder / "manifest.json").read_text())["computed"]
    assert len(records) == 2 and records[0]["first_shard"] == 0 and records[1]["first_shard"] >= 1  # resumed, not redone
    assert [s["sha256"] for s in json.loads((train_folder / "manifest.json").read_text())["shards"]] == \
        [s["sha256"] for s in json.loads((ref_train / "manifest.json").read_text())["shards"]]


def test_two_processes_on_one_cache_harvest_and_train_once(reference, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    train_folder, eval_folder, sae_dir = run_paths(cache, monkeypatch)
    first, second = start(cache), start(cache)
    (out1, err1), (out2, err2) = finish(first), finish(second)
    for folder in (train_folder, eval_folder):  # one harvest of each text, one training run, by either process
        said = (err1 + err2).count(f"into {folder.parent}\n")
        assert said == 1, f"{said} harvests wrote {folder}"
        assert len(json.loads((folder / "manifest.json").read_text())["computed"]) == 1
    assert (err1 + err2).count(f"training the SAE in {sae_dir}\n") == 1
    waited = [err for err in (err1, err2) if "waiting for process" in err]
    assert waited, "the two processes never met at a lock (one finished before the other started?)"
    assert all("reusing what it wrote" in err for err in waited)
    trained_by = json.loads((sae_dir / "summary.json").read_text())["computed"]["pid"]
    assert trained_by in (first.pid, second.pid)
    assert (sae_dir / "sae.safetensors").read_bytes() == (run_paths(reference[0], monkeypatch)[2] / "sae.safetensors").read_bytes()
    assert evaluation_lines(out1) == evaluation_lines(out2) == evaluation_lines(reference[1])


# --------------------------------------------------------------------------------------
# The book: killed inside a notebook, rebuilt, and built with no network
# --------------------------------------------------------------------------------------

BOOK_ARGS = ["book", "--profile", "smoke", "--notebooks", "01_training"]
EXECUTE_AGAIN = ["--recompute", "reference-ce"]
"""Makes the runner execute an unchanged notebook instead of reinstating it (recomputing only the cheap clean CE)."""


def start_book(book: Path, cache: Path, scratch: Path, *, prefix: list[str] = (),
               extra: list[str] = ()) -> subprocess.Popen:
    """``sae-paper book --profile smoke --notebooks 01_training`` building into ``book`` (``SAE_PAPER_BOOK``), its
    staging folder under ``scratch/tmp`` and its kernels' connection files under ``scratch/runtime``."""
    for name in ("tmp", "runtime"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    env = {**environment(cache), "SAE_PAPER_BOOK": str(book), "TMPDIR": str(scratch / "tmp"),
           "JUPYTER_RUNTIME_DIR": str(scratch / "runtime")}
    log = open(scratch / f"book-{time.monotonic_ns()}.log", "w")
    process = subprocess.Popen([*prefix, sys.executable, "-m", "sae_paper", *BOOK_ARGS, *extra], stdout=log,
                               stderr=subprocess.STDOUT, env=env)
    process.out_path = process.err_path = Path(log.name)
    log.close()
    return process


def kernels_started_from(runtime: Path) -> list[int]:
    """The pids of kernels whose connection file is under ``runtime``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(runtime) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def executed_cells(scratch: Path) -> tuple[int, int]:
    """(code cells executed so far, code cells) of the notebook being built (papermill rewrites it after each cell)."""
    for path in (scratch / "tmp").glob("sae-paper-book-*/generated/01_training.ipynb"):
        try:
            cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
        except (OSError, ValueError, KeyError):
            return 0, 0
        return sum(1 for cell in cells if cell.get("execution_count")), len(cells)
    return 0, 0


def snapshot(book: Path) -> dict[str, bytes]:
    return {str(path.relative_to(book)): path.read_bytes()
            for folder in ("generated", "_build/html") for path in sorted((book / folder).rglob("*")) if path.is_file()}


def claims(book: Path) -> dict:
    return json.loads((book / "generated" / "claims" / "01_training.json").read_text())


def network_free_book_prefix() -> list[str] | None:
    """A network namespace with only the loopback up (Jupyter talks to its kernel over 127.0.0.1), or None."""
    if NO_NETWORK is None or shutil.which("ip") is None:
        return None
    return [*NO_NETWORK, "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


@pytest.fixture(scope="module")
def first_book(tmp_path_factory):
    """A complete smoke build of 01_training, in a network namespace with only the loopback up where possible."""
    from test_book import book_copy

    root = tmp_path_factory.mktemp("book")
    book, prefix = book_copy(root), network_free_book_prefix()
    out, _ = finish(start_book(book, root / "cache", root / "first", prefix=prefix or []))
    return book, root / "cache", out, prefix is not None


@pytest.mark.skipif(network_free_book_prefix() is None, reason=NO_NETWORK_REASON + " and iproute2's `ip`")
def test_the_smoke_book_builds_with_no_network(first_book):
    probe = subprocess.run([*network_free_book_prefix(), sys.executable, "-c",
                            "import socket; socket.create_connection(('1.1.1.1', 53), timeout=5)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "unreachable" in probe.stderr  # loopback only: no route out
    book, _, out, network_free = first_book
    assert network_free and "book built in" in out and claims(book)["records"]


def test_book_killed_inside_a_notebook_keeps_the_previous_book_and_the_rerun_gives_the_same_claims(first_book, tmp_path):
    book, cache, _, _ = first_book
    before, first_claims = snapshot(book), claims(book)
    assert first_claims["records"]

    # killed inside the notebook, after a few cells: the CLI and its kernel, with SIGKILL. The notebook is unchanged,
    # so the runner would reinstate its stored output; --recompute (of a cheap kind) makes it execute again.
    scratch = tmp_path / "killed"
    process = start_book(book, cache, scratch, extra=EXECUTE_AGAIN)
    seen = []  # the notebook's last complete state before the kill

    def ready() -> bool:
        done, total = executed_cells(scratch)
        if total:
            seen.append((done, total))
        return done >= 3

    kill_when(process, ready, "the notebook's third executed cell")
    done, total = executed_cells(scratch)
    if not total:  # the kill cut papermill's rewrite of the notebook short: judge by its last complete state
        done, total = seen[-1]
    assert done < total, "the notebook had finished before the kill"
    for pid in kernels_started_from(scratch / "runtime"):
        os.kill(pid, signal.SIGKILL)
    assert snapshot(book) == before, "the killed build changed the previous book"

    # the rerun, executing the notebook again, completes and records the same claims
    out, _ = finish(start_book(book, cache, tmp_path / "rerun", extra=EXECUTE_AGAIN))
    assert "01_training: reused" not in out
    assert "book built in" in out
    assert claims(book) == first_claims
