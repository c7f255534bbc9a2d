"""Two lanes of one thread against one process on every thread: the book's work, measured in the same run.

    python benchmarks/lanes_throughput.py [--model smollm2-135m] [--iterations 30] [--work sae-step forward-ioi ...]

Why: the runner executes independent notebooks side by side, one torch thread each
(:mod:`sae_paper.book.lanes`), instead of one after another on all threads. That pays when
torch's second thread adds less than a second process would. For each kind of work the book
spends its time on, this prints

- **alone**: one process, torch on ``--threads`` threads (default: the usable cores), doing
  ``--iterations`` of it: the baseline, what a notebook run one after another gets;
- **lanes**: as many processes as threads, one thread each, started together (a barrier),
  each doing ``--iterations``;

and the ratio of work done per second, lanes ÷ alone: above 1, lanes finish the same work sooner.

The kinds of work: ``sae-step``, one training step of the default profile's main SAE (batch
128, d_in 576, d_sae 1,152, ~30 of the codes firing: :func:`train_throughput.real_steps`);
``forward-ioi``, SmolLM2 from layer 12 on over 4 × 50 IOI-sized sequences (20 positions), as
each point of an IOI patching curve; ``forward-fragments``, SmolLM2 to layer 14 on a batch of
32 fragments of 64 tokens, as the autointerp fragment pass and the harvest.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

WORK = ("sae-step", "forward-ioi", "forward-fragments")


def make_work(kind: str, model_name: str, shape: dict):
    """A zero-argument function doing one unit of ``kind``."""
    import torch

    generator = torch.Generator().manual_seed(0)
    if kind == "sae-step":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from train_throughput import real_steps

        batch, d_in, d_sae = shape["sae"]
        return real_steps("tied", batch, d_in, d_sae, shape["sae_l0"] / d_sae, "auto", generator)
    from sae_paper.data.models import load_model

    model = load_model(model_name)
    hf = model.original_model
    base = hf.base_model
    if kind == "forward-ioi":
        layer, rows, positions = shape["ioi"]
        tail = torch.nn.ModuleList(list(base.layers)[layer + 1:])
        resid = torch.randn(rows, positions, hf.config.hidden_size, generator=generator)

        def run():
            layers = base.layers
            base.layers = tail
            try:
                with torch.no_grad():
                    hidden = base(inputs_embeds=resid, use_cache=False).last_hidden_state
                    hf.get_output_embeddings()(hidden[:, -1])
            finally:
                base.layers = layers
        return run
    if kind == "forward-fragments":
        layer, batch, length = shape["fragments"]
        tokens = torch.randint(0, hf.config.vocab_size, (batch, length), generator=generator)
        head = torch.nn.ModuleList(list(base.layers)[: layer + 1])

        def run():
            layers = base.layers
            base.layers = head
            try:
                with torch.no_grad():
                    base(input_ids=tokens, use_cache=False)
            finally:
                base.layers = layers
        return run
    raise SystemExit(f"unknown work {kind!r}; one of {', '.join(WORK)}")


def worker(kind, model_name, shape, threads, iterations, barrier, results, index):
    import torch

    torch.set_num_threads(threads)
    run = make_work(kind, model_name, shape)
    run()  # warm up: first-call allocations, kernel selection
    barrier.wait()
    started = time.perf_counter()
    for _ in range(iterations):
        run()
    results[index] = time.perf_counter() - started


def timed(kind, model_name, shape, threads, processes, iterations) -> float:
    """Wall seconds for ``processes`` processes on ``threads`` threads each, each doing ``iterations``, started together."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Array("d", processes)
    workers = [context.Process(target=worker, args=(kind, model_name, shape, threads, iterations, barrier, results, i))
               for i in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise SystemExit(f"{kind}: a worker failed (exit {w.exitcode})")
    return max(results)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--work", nargs="+", default=list(WORK), choices=WORK)
    parser.add_argument("--iterations", type=int, default=30, help="units of work per process")
    parser.add_argument("--threads", type=int, default=None, help="threads of the process alone (default: usable cores)")
    parser.add_argument("--sae", type=int, nargs=3, default=[128, 576, 1152], metavar=("BATCH", "D_IN", "D_SAE"))
    parser.add_argument("--sae-l0", type=float, default=30.0)
    parser.add_argument("--ioi", type=int, nargs=3, default=[12, 200, 20], metavar=("LAYER", "ROWS", "POSITIONS"))
    parser.add_argument("--fragments", type=int, nargs=3, default=[14, 32, 64], metavar=("LAYER", "BATCH", "LENGTH"))
    args = parser.parse_args(argv)
    from sae_paper.book.lanes import available_cores

    threads = args.threads or available_cores()
    shape = {"sae": tuple(args.sae), "sae_l0": args.sae_l0, "ioi": tuple(args.ioi), "fragments": tuple(args.fragments)}
    print(f"{threads} thread(s) alone against {threads} lane(s) of 1 thread, {args.iterations} units per process")
    print(f"{'work':>18} {'alone units/s':>14} {'lanes units/s':>14} {'lanes ÷ alone':>14}")
    for kind in args.work:
        alone = args.iterations / timed(kind, args.model, shape, threads, 1, args.iterations)
        lanes = threads * args.iterations / timed(kind, args.model, shape, 1, threads, args.iterations)
        ratio = lanes / alone if alone > 0 else math.nan
        print(f"{kind:>18} {alone:14.1f} {lanes:14.1f} {ratio:14.2f}")


if __name__ == "__main__":
    main()
