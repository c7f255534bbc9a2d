"""How close one SAE training step comes to the matmul limit.

A tied training step on a batch x [batch, d_in] with dictionary M̂ [d_sae, d_in] must do
five dense matmuls, and everything else it does (normalising M, bias, ReLU, the loss
terms, Adam) is linear in the size of its operands, not their product:

    forward    pre      = x      @ M̂ᵀ   [batch, d_in]  x [d_in, d_sae]   → [batch, d_sae]
               x̂        = c      @ M̂    [batch, d_sae] x [d_sae, d_in]   → [batch, d_in]
    backward   ∂c       = ∂x̂     @ M̂ᵀ   [batch, d_in]  x [d_in, d_sae]   → [batch, d_sae]
               ∂M̂ (dec) = cᵀ     @ ∂x̂   [d_sae, batch] x [batch, d_in]   → [d_sae, d_in]
               ∂M̂ (enc) = ∂preᵀ  @ x    [d_sae, batch] x [batch, d_in]   → [d_sae, d_in]

(∂x is not needed: the activations are data.) The untied step does the same five with
M_e in the encoder places. The "bare dense matmul limit" is those five matmuls alone,
with the same memory layouts (transposes as strided views, as the step uses) into
preallocated outputs, on random data; its throughput is an upper bound on the training
loop's. The "train_sae step" is :func:`sae_paper.train.train_step`, the function the
training loop calls, with a real Adam optimizer and firing counts on (as in the last
epoch). The two are timed alternately, step by step, so that a noisy machine slows both
alike; each repeat of ``--steps`` steps gives a ratio and the medians are printed (and
the ratio of the best repeats, the better estimate when other processes share the cores).

    python benchmarks/train_throughput.py [--d-in 576] [--ratio 2] [--batch 1024] [--steps 10]
                                          [--repeats 5] [--kind tied|untied] [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sae_paper.sae import make_sae
from sae_paper.train import make_optimizer, train_step


def bare_matmuls(batch: int, d_in: int, d_sae: int, generator: torch.Generator) -> Callable[[], None]:
    """A function doing exactly the five matmuls of one training step, into preallocated outputs."""
    x = torch.randn(batch, d_in, generator=generator)
    m_hat = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1)
    codes = torch.randn(batch, d_sae, generator=generator).relu_()
    grad_x_hat = torch.randn(batch, d_in, generator=generator)
    grad_pre = torch.randn(batch, d_sae, generator=generator)
    pre, x_hat, grad_c = torch.empty(batch, d_sae), torch.empty(batch, d_in), torch.empty(batch, d_sae)
    grad_dec, grad_enc = torch.empty(d_sae, d_in), torch.empty(d_sae, d_in)

    def run() -> None:
        torch.mm(x, m_hat.t(), out=pre)
        torch.mm(codes, m_hat, out=x_hat)
        torch.mm(grad_x_hat, m_hat.t(), out=grad_c)
        torch.mm(codes.t(), grad_x_hat, out=grad_dec)
        torch.mm(grad_pre.t(), x, out=grad_enc)

    return run


def real_steps(kind: str, batch: int, d_in: int, d_sae: int, generator: torch.Generator) -> Callable[[], None]:
    """A function doing one real training step (train_step with Adam and firing counts)."""
    sae = make_sae(kind, d_in, d_sae, alpha=8.6e-4, seed=0)
    optimizer = make_optimizer(sae, lr=1e-3)
    fire_counts = torch.zeros(d_sae, dtype=torch.int64)
    x = torch.randn(batch, d_in, generator=generator)

    def run() -> None:
        train_step(sae, optimizer, x, fire_counts)

    return run


def measure(
    bare: Callable[[], None], train: Callable[[], None], steps: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, float]:
    """Seconds for ``steps`` of each, alternating step by step so that load from other
    processes falls on both alike."""
    bare_seconds = train_seconds = 0.0
    for _ in range(steps):
        start = clock()
        bare()
        middle = clock()
        train()
        end = clock()
        bare_seconds += middle - start
        train_seconds += end - middle
    return bare_seconds, train_seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-in", type=int, default=576, help="activation width (576: SmolLM2-135M)")
    parser.add_argument("--ratio", type=float, default=2.0, help="dictionary ratio R = d_sae / d_in")
    parser.add_argument("--batch", type=int, default=1024, help="activation vectors per step")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (medians are printed)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each before timing")
    parser.add_argument("--kind", choices=("tied", "untied"), default="tied")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, robust to other processes on the cores "
                             "(meaningful with --threads 1 only: idle threads spin)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    d_sae = round(args.ratio * args.d_in)
    generator = torch.Generator().manual_seed(0)
    bare = bare_matmuls(args.batch, args.d_in, d_sae, generator)
    train = real_steps(args.kind, args.batch, args.d_in, d_sae, generator)
    print(f"{args.kind} SAE, batch {args.batch}, d_in {args.d_in}, d_sae {d_sae}, "
          f"{torch.get_num_threads()} threads, {args.clock} clock, torch {torch.__version__}")
    measure(bare, train, args.warmup, clock)
    bare_rates, train_rates, ratios = [], [], []
    for _ in range(args.repeats):
        bare_seconds, train_seconds = measure(bare, train, args.steps, clock)
        bare_rates.append(args.batch * args.steps / bare_seconds)
        train_rates.append(args.batch * args.steps / train_seconds)
        ratios.append(bare_seconds / train_seconds)
    print(f"bare matmul limit: {statistics.median(bare_rates):,.0f} act/s")
    print(f"train_sae step: {statistics.median(train_rates):,.0f} act/s")
    print(f"ratio: {statistics.median(ratios):.3f}  (per repeat: {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"best train / best bare: {max(train_rates) / max(bare_rates):.3f})")

if __name__ == "__main__":
    main()
