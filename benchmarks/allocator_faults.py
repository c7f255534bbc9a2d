"""glibc's allocator as it comes against the book's setting (:mod:`sae_paper.book.allocator`): page faults, system
time and throughput of the book's work, measured in the same run.

    python benchmarks/allocator_faults.py [--iterations 60] [--threads 1] [--work sae-step forward-ioi forward-fragments]

Each kind of work (``benchmarks/lanes_throughput.py`` defines them: a training step of the default profile's main
SAE, an IOI patching point, a batch of the fragment pass) runs ``--iterations`` times in a fresh process, once
with ``GLIBC_TUNABLES`` unset (**as it comes**: the baseline) and once with the tunables the book's runner sets
(**kept**). For each it prints the units per second, the minor page faults and the system seconds per 100 units, and
the ratio of throughputs, kept ÷ as it comes (above 1: the setting pays).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lanes_throughput import WORK, make_work  # noqa: E402


def worker(kind, model_name, shape, threads, iterations, results) -> None:
    import torch

    torch.set_num_threads(threads)
    run = make_work(kind, model_name, shape)
    run()  # warm up: first-call allocations, kernel selection
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(iterations):
        run()
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    results[:] = [seconds, after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime]


def measured(kind, model_name, shape, threads, iterations, tunables: str | None) -> tuple[float, float, float]:
    """(seconds, minor faults, system seconds) of ``iterations`` units in a fresh process under ``tunables``."""
    saved = os.environ.pop("GLIBC_TUNABLES", None)
    if tunables:
        os.environ["GLIBC_TUNABLES"] = tunables
    try:
        context = mp.get_context("spawn")  # a fresh process reads GLIBC_TUNABLES as it starts
        results = context.Array("d", 3)
        process = context.Process(target=worker, args=(kind, model_name, shape, threads, iterations, results))
        process.start()
        process.join()
    finally:
        os.environ.pop("GLIBC_TUNABLES", None)
        if saved is not None:
            os.environ["GLIBC_TUNABLES"] = saved
    if process.exitcode != 0:
        raise SystemExit(f"{kind}: the worker failed (exit {process.exitcode})")
    return tuple(results)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--work", nargs="+", default=list(WORK), choices=WORK)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a lane's)")
    args = parser.parse_args(argv)
    from sae_paper.book.allocator import TUNABLES

    kept = ":".join(f"{name}={size}" for name, (size, _) in TUNABLES.items())
    shape = {"sae": (128, 576, 1152), "sae_l0": 30.0, "ioi": (12, 200, 20), "fragments": (14, 32, 64)}
    print(f"{args.iterations} units per run, {args.threads} thread(s); kept: GLIBC_TUNABLES={kept}")
    print(f"{'work':>18} {'setting':>12} {'units/s':>9} {'faults/100':>11} {'sys s/100':>10} {'kept ÷ as it comes':>19}")
    for kind in args.work:
        rows = {}
        for label, tunables in (("as it comes", None), ("kept", kept)):
            seconds, faults, system = measured(kind, args.model, shape, args.threads, args.iterations, tunables)
            rows[label] = args.iterations / seconds
            ratio = f"{rows['kept'] / rows['as it comes']:19.2f}" if label == "kept" else ""
            print(f"{kind:>18} {label:>12} {rows[label]:9.1f} {100 * faults / args.iterations:11.0f} "
                  f"{100 * system / args.iterations:10.2f} {ratio}")


if __name__ == "__main__":
    main()
