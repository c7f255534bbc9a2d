"""The benchmarks still run (tiny shapes; the numbers themselves are not checked)."""

from __future__ import annotations

import importlib.util
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
