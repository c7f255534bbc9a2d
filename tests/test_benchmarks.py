"""The benchmarks still run (tiny shapes; the numbers themselves are not checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.usefixtures("one_thread")


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_throughput_prints_every_density_and_a_crossover(capsys):
    load("train_throughput").main(["--batch", "64", "--d-in", "8", "--d-sae", "32", "--densities", "0.05", "0.5",
                                   "--steps", "1", "--repeats", "1", "--warmup", "0", "--skip-book"])
    out = capsys.readouterr().out
    assert "5.0%" in out and "50.0%" in out and "crossover" in out


def test_sparse_kernels_candidates_agree(capsys):
    load("sparse_kernels").main(["--batch", "16", "--d-in", "4", "--d-sae", "24", "--densities", "0.2",
                                 "--repeats", "1", "--check"])
    out = capsys.readouterr().out
    assert "decode" in out and "mismatch" not in out


def test_peer_throughput_runs_ours_and_skips_what_is_not_installed(capsys):
    load("peer_throughput").main(["--d-in", "8", "--d-sae", "32", "--batch", "16", "--steps", "1"])
    lines = capsys.readouterr().out.splitlines()
    ours = next(line for line in lines if line.startswith("sae_paper"))
    assert "skipped" not in ours
    for peer in ("SAELens", "dictionary_learning", "sparsify"):
        assert any(line.startswith(peer) for line in lines), peer


def test_book_costs_prints_each_step_beside_its_limit(capsys):
    load("book_costs").main(["--model", "pythia-70m-deduped-random", "--depths", "2", "6", "--batch", "2", "--context", "16",
                             "--batches", "1", "--train-shape", "16", "8", "32", "--train-l0", "4", "--train-steps", "1",
                             "--fragments", "40", "--features", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "matmul limit" in out and "2 blocks" in out and "6 blocks + unembed" in out
    assert "dense limit" in out and all(f"{path} step" in out for path in ("dense", "sparse", "auto"))
    assert "encode limit" in out and "token-list, vectorised" in out and "token-list, per call" in out


def test_lanes_throughput_compares_lanes_with_one_process(capsys, monkeypatch):
    import sys

    module = load("lanes_throughput")
    monkeypatch.setitem(sys.modules, "lanes_throughput", module)  # the spawned workers import it by name
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module.main(["--work", "sae-step", "--iterations", "2", "--threads", "2", "--sae", "16", "8", "32", "--sae-l0", "4"])
    out = capsys.readouterr().out
    assert "2 thread(s) alone against 2 lane(s) of 1 thread" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("sae-step"))
    assert float(row.split()[-1]) > 0  # lanes ÷ alone


def test_gpu_check_without_cuda_stops_at_once_with_one_line():
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would measure it")
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing measured "
        "(--device cpu --dry checks the script)"]


def test_gpu_check_figures_on_cpu_at_tiny_sizes(tmp_path, capsys):
    status = load("gpu_check").main(["--device", "cpu", "--dry", "--json", str(tmp_path / "figures.json")])
    out = capsys.readouterr().out
    figures = json.loads((tmp_path / "figures.json").read_text())
    for dtype in ("float32", "bfloat16"):
        assert f"matmul limit {dtype}" in out and figures[f"matmul {dtype}"] > 0
    for path in ("dense", "sparse", "auto"):
        assert figures[f"sae step float32 {path}"]["activations_per_s"] > 0
    assert figures["sae step bfloat16 dense"]["activations_per_s"] > 0
    assert figures["harvest pythia-70m-deduped-random"]["harvest_tokens_per_s"] > 0
    assert "of the float32 matmul limit" in out and "tokens/s (bare forward" in out
    # known: the sparse kernel's embedding_bag refuses bfloat16 under autocast; reported as one line per part
    assert set(figures["failed"]) <= {"sae step bfloat16 sparse", "sae step bfloat16 auto"}
    assert status == (1 if figures["failed"] else 0)
    assert all(line.count("FAILED") <= 1 for line in out.splitlines())


@pytest.mark.slow
def test_gpu_check_script_runs_dry_on_cpu_and_writes_its_figures_under_out(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "OUT": str(tmp_path / "out"), "SAE_PAPER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--device", "cpu", "--dry"], capture_output=True,
                          text=True, timeout=600, env=env)
    report = (tmp_path / "out" / "gpu_check.txt").read_text()
    assert "rehearsal of the paper profile: planned (--dry)" in report, done.stdout[-2000:] + done.stderr[-2000:]
    assert "03_ioi:" in report and "estimated hours" in report and "matmul limit float32" in report
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["dry"] is True
    assert f"status {done.returncode}" in report
