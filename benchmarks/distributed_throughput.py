"""The distributed stage against one process on the same cores: 2 ranks × 1 thread vs 1 process × 2 threads.

    python benchmarks/distributed_throughput.py [--tokens 48000] [--profile smoke --notebooks 01_training]

Two stages, each run cold (a fresh cache) both ways, in this one run, wall time of the whole
command included (interpreter start, model build, rendezvous):

- harvest: ``sae-paper harvest`` of the random-weight Pythia-70M (``--tokens`` rows at
  resid_post.1, 64-token contexts) against ``torchrun --nproc_per_node 2 -m sae_paper harvest``;
- book: ``sae-paper prepare`` (the book's harvest and every SAE its notebooks read) for the
  profile's notebooks against the same under torchrun.

overhead = t(2 ranks × 1 thread) / t(1 process × 2 threads) − 1, negative when the ranks win.
On a machine shared with other work the figures move by tens of percent; run it twice.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def timed(command: list[str], threads: int) -> float:
    env = {**os.environ, "SAE_PAPER_CACHE": tempfile.mkdtemp(prefix="dist-bench-"), "OMP_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48_000, help="rows to harvest in the harvest stage")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--notebooks", default="01_training")
    parser.add_argument("--stages", nargs="+", default=["harvest", "book"], choices=["harvest", "book"])
    args = parser.parse_args(argv)

    harvest = ["harvest", "--set", "model=pythia-70m-deduped-random", "--set", "layer=1", "--set", "context_length=64",
               "--set", f"n_tokens={args.tokens}", "--set", "eval_tokens=630", "--set", "harvest_batch_size=32"]
    book = ["prepare", "--profile", args.profile, "--notebooks", args.notebooks]
    single = [sys.executable, "-m", "sae_paper"]
    ranks = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sae_paper"]
    results = {}
    for stage, command in ((stage, {"harvest": harvest, "book": book}[stage]) for stage in args.stages):
        one = timed(single + command, threads=2)
        two = timed(ranks + command, threads=1)
        results[stage] = {"one_process_2_threads_s": round(one, 1), "two_ranks_1_thread_s": round(two, 1),
                          "overhead": round(two / one - 1, 3)}
        line = f"{stage:8s} 1 process x 2 threads {one:6.1f} s   2 ranks x 1 thread {two:6.1f} s   overhead {two / one - 1:+.1%}"
        if stage == "harvest":
            line += f"   ({args.tokens / one:,.0f} vs {args.tokens / two:,.0f} rows/s)"
        print(line, flush=True)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
