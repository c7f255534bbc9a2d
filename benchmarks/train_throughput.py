"""SAE training throughput: the dense and sparse steps next to the dense matmul limit, in one run.

A tied training step on a batch x [batch, d_in] with dictionary M̂ [d_sae, d_in] must do
five dense matmuls if it treats the codes as dense, and everything else it does
(normalising M, bias, ReLU, the loss terms, Adam) is linear in the size of its
operands, not their product:

    forward    pre      = x      @ M̂ᵀ   [batch, d_in]  x [d_in, d_sae]   → [batch, d_sae]
               x̂        = c      @ M̂    [batch, d_sae] x [d_sae, d_in]   → [batch, d_in]
    backward   ∂c       = ∂x̂     @ M̂ᵀ   [batch, d_in]  x [d_in, d_sae]   → [batch, d_sae]
               ∂M̂ (dec) = cᵀ     @ ∂x̂   [d_sae, batch] x [batch, d_in]   → [d_sae, d_in]
               ∂M̂ (enc) = ∂preᵀ  @ x    [d_sae, batch] x [batch, d_in]   → [d_sae, d_in]

(∂x is not needed: the activations are data.) The untied step does the same five with
M_e in the encoder places. The "dense limit" is those five matmuls alone, with the same
memory layouts (transposes as strided views, as the step uses) into preallocated outputs,
on random data: an upper bound for any step that computes them densely. The sparse step
(:mod:`sae_paper.core.kernels`) keeps only the first dense and does the other four over
the active codes, so it can pass that limit when the codes are sparse.

Each row times :func:`sae_paper.core.train.train_step` (the function the training loop calls,
real Adam, firing counts on) with ``path="dense"`` and ``path="sparse"`` on SAEs whose
bias is set so that a chosen fraction of the codes fire on Gaussian inputs (the measured
density over the timed steps is printed too); "auto" is what training runs. The steps and
the bare matmuls are timed alternately, step by step, so that a noisy machine slows all
alike; each repeat of ``--steps`` steps gives a ratio to the limit and medians are printed.
The crossover is where sparse and dense take equally long (interpolated in log density);
:data:`sae_paper.core.kernels.SPARSE_CROSSOVER` records it. The last block is the book's own shape: the
default profile's main SAE (batch 128, d_in 576, d_sae 1,152) at its L0 of ~30.

    python benchmarks/train_throughput.py [--batch 4096] [--d-in 512] [--d-sae 4096]
        [--densities 0.01 0.03 0.1 0.3] [--book-l0 30] [--steps 4] [--repeats 3]
        [--kind tied|untied] [--threads N] [--clock wall|cpu] [--skip-large | --skip-book]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from sae_paper.core.sae import make_sae
from sae_paper.core.train import make_optimizer, train_step

BOOK_SHAPE = (128, 576, 1152)
"""(batch, d_in, d_sae) of the default profile's main SAE (SmolLM2-135M, R = 2)."""


def bare_matmuls(batch: int, d_in: int, d_sae: int, generator: torch.Generator) -> Callable[[], float]:
    """A function doing exactly the five dense matmuls of one training step, into preallocated outputs."""
    x = torch.randn(batch, d_in, generator=generator)
    m_hat = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1)
    codes = torch.randn(batch, d_sae, generator=generator).relu_()
    grad_x_hat = torch.randn(batch, d_in, generator=generator)
    grad_pre = torch.randn(batch, d_sae, generator=generator)
    pre, x_hat, grad_c = torch.empty(batch, d_sae), torch.empty(batch, d_in), torch.empty(batch, d_sae)
    grad_dec, grad_enc = torch.empty(d_sae, d_in), torch.empty(d_sae, d_in)

    def run() -> float:
        torch.mm(x, m_hat.t(), out=pre)
        torch.mm(codes, m_hat, out=x_hat)
        torch.mm(grad_x_hat, m_hat.t(), out=grad_c)
        torch.mm(codes.t(), grad_x_hat, out=grad_dec)
        torch.mm(grad_pre.t(), x, out=grad_enc)
        return math.nan

    return run


def real_steps(kind: str, batch: int, d_in: int, d_sae: int, density: float, path: str,
               generator: torch.Generator) -> Callable[[], float]:
    """A function doing one real training step by ``path``; it returns that step's code density.

    Encoder rows are unit vectors and x is standard normal, so each pre-activation is
    N(0, 1) plus the bias: a bias of Φ⁻¹(density) makes that fraction of codes fire. Adam's
    learning rate is 1e-6 so that the density stays there while the steps are timed.
    """
    sae = make_sae(kind, d_in, d_sae, alpha=8.6e-4, seed=0)
    with torch.no_grad():
        sae.b.fill_(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(density)).item())
    optimizer = make_optimizer(sae, lr=1e-6)  # the step's cost does not depend on lr; a small one keeps the density
    fire_counts = torch.zeros(d_sae, dtype=torch.int64)
    x = torch.randn(batch, d_in, generator=generator)
    outputs = []

    def run() -> float:
        outputs[:] = [train_step(sae, optimizer, x, fire_counts, path)]
        return math.nan

    def density_of_last() -> float:
        return (outputs[0].codes > 0).float().mean().item()

    run.density_of_last = density_of_last  # type: ignore[attr-defined]
    return run


def measure(fns: dict[str, Callable[[], float]], steps: int, clock: Callable[[], float]) -> dict[str, float]:
    """Seconds for ``steps`` calls of each, alternating call by call so that load from other
    processes falls on all alike."""
    seconds = dict.fromkeys(fns, 0.0)
    for _ in range(steps):
        for name, fn in fns.items():
            start = clock()
            fn()
            seconds[name] += clock() - start
    return seconds


def compare(fns: dict[str, Callable[[], float]], batch: int, args, clock) -> dict[str, dict[str, float]]:
    """Median activations/s of each, its median ratio to "limit", and the mean code density of each step fn."""
    measure(fns, args.warmup, clock)
    rates: dict[str, list[float]] = {name: [] for name in fns}
    ratios: dict[str, list[float]] = {name: [] for name in fns}
    densities: dict[str, list[float]] = {name: [] for name in fns if hasattr(fns[name], "density_of_last")}
    for _ in range(args.repeats):
        seconds = measure(fns, args.steps, clock)
        for name in fns:
            rates[name].append(batch * args.steps / seconds[name])
            ratios[name].append(seconds["limit"] / seconds[name])
        for name in densities:
            densities[name].append(fns[name].density_of_last())
    return {name: {"rate": statistics.median(rates[name]), "ratio": statistics.median(ratios[name]),
                   "density": statistics.mean(densities[name]) if name in densities else math.nan}
            for name in fns}


def crossover(rows: list[tuple[float, float]]) -> str:
    """Density where sparse/dense crosses 1, interpolated in log density between measured rows."""
    for (d0, r0), (d1, r1) in zip(rows, rows[1:]):
        if (r0 - 1) * (r1 - 1) <= 0 and r0 != r1:
            t = math.log(r0) / (math.log(r0) - math.log(r1))
            return f"{math.exp(math.log(d0) + t * (math.log(d1) - math.log(d0))):.1%}"
    return "not within the measured densities " + ("(sparse faster at all)" if rows[-1][1] > 1 else
                                                   "(dense faster at all)")


def sweep(label: str, shape: tuple[int, int, int], densities: list[float], paths: tuple[str, ...], args,
          clock, generator: torch.Generator) -> dict[str, Callable[[], float]]:
    """Print one row per density: each path's act/s (÷ the dense limit timed beside it), then the crossover."""
    batch, d_in, d_sae = shape
    print(f"\n{label}: batch {batch}, d_in {d_in}, d_sae {d_sae} ({args.steps} steps per repeat); "
          "act/s (÷ dense limit)")
    print(f"{'density':>8} {'measured':>9} {'dense limit':>12}" + "".join(f"{path + ' step':>18}" for path in paths)
          + f" {'sparse/dense':>13}")
    speedups = []
    for density in densities:
        fns = {"limit": bare_matmuls(batch, d_in, d_sae, generator)}
        fns.update({path: real_steps(args.kind, batch, d_in, d_sae, density, path, generator) for path in paths})
        result = compare(fns, batch, args, clock)
        speedup = result["sparse"]["rate"] / result["dense"]["rate"]
        speedups.append((result["sparse"]["density"], speedup))
        print(f"{density:8.1%} {result['sparse']['density']:9.1%} {result['limit']['rate']:12,.0f}"
              + "".join(f"{result[path]['rate']:11,.0f} ({result[path]['ratio']:.2f})" for path in paths)
              + f" {speedup:13.2f}")
    print(f"crossover (sparse step = dense step): {crossover(speedups)}")
    return fns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4096, help="activation vectors per step (large shape)")
    parser.add_argument("--d-in", type=int, default=512, help="activation width (large shape)")
    parser.add_argument("--d-sae", type=int, default=4096, help="dictionary size (large shape)")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3],
                        help="code densities (fraction of codes > 0) to time the large shape at")
    parser.add_argument("--book-l0", type=float, nargs="+", default=[30.0],
                        help="codes per activation to time the book's shape at (the main SAE's: ~30)")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed repeat (large shape)")
    parser.add_argument("--book-steps", type=int, default=50, help="steps per timed repeat (the book's shape)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (medians are printed)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each before timing")
    parser.add_argument("--kind", choices=("tied", "untied"), default="tied")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, robust to other processes on the cores "
                             "(meaningful with --threads 1 only: idle threads spin)")
    parser.add_argument("--profile", action="store_true",
                        help="also print torch.profiler tables of the book's shape (last L0), dense and auto steps")
    parser.add_argument("--skip-large", action="store_true", help="only the book's shape")
    parser.add_argument("--skip-book", action="store_true", help="only the large shape")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    generator = torch.Generator().manual_seed(0)
    print(f"{args.kind} SAE, {torch.get_num_threads()} threads, {args.clock} clock, torch {torch.__version__}; "
          f"medians of {args.repeats} repeats, steps timed alternately with the dense limit")
    if not args.skip_large:
        sweep("large", (args.batch, args.d_in, args.d_sae), args.densities, ("dense", "sparse"), args, clock,
              generator)
    if not args.skip_book:
        batch, d_in, d_sae = BOOK_SHAPE
        book_args = argparse.Namespace(**{**vars(args), "steps": args.book_steps, "warmup": 10})
        fns = sweep(f"the book's main SAE (L0 {', '.join(f'{l0:g}' for l0 in args.book_l0)})", BOOK_SHAPE,
                    [l0 / d_sae for l0 in args.book_l0], ("dense", "sparse", "auto"), book_args, clock, generator)
        if args.profile:
            for path in ("dense", "auto"):
                profile(fns[path], f"{path} step", args.book_steps)


def profile(step: Callable[[], float], label: str, steps: int) -> None:
    """Print where ``steps`` calls of ``step`` spend their time, by op (self CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(f"\nprofile of {steps} {label}s of the book's shape (self CPU time by op)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=44))


if __name__ == "__main__":
    main()
