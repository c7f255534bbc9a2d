"""SAE training throughput of this project next to SAELens, dictionary_learning and sparsify.

Each trainer runs the same number of steps of Adam on the same activations (seeded
Gaussian rows, or ``--activations FILE`` holding an ``activations`` tensor [n, d_in]
in safetensors), one after another in one process, with the dense matmul limit of
``benchmarks/train_throughput.py`` measured between them as a common ruler:

- ``sae_paper``: :func:`sae_paper.core.train.train_step` on a tied SAE (``path="auto"``);
- ``SAELens``: ``StandardTrainingSAE.training_forward_pass`` (ReLU + L1), backward, Adam;
- ``dictionary_learning``: ``StandardTrainer.update`` (ReLU + L1 with its own Adam);
- ``sparsify``: ``SparseCoder`` TopK (``--k``), backward of the FVU, Adam, as its trainer.

The peers cannot share this project's environment (SAELens needs transformer-lens < 4),
so install them into a side environment and run this script with that environment's
python; a library that does not import is reported as skipped, with the reason:

    python -m venv /tmp/peers && /tmp/peers/bin/pip install sae-lens dictionary-learning eai-sparsify
    /tmp/peers/bin/python benchmarks/peer_throughput.py [--d-in 512] [--d-sae 4096] [--batch 4096]
        [--steps 16] [--alpha 8.6e-4] [--k 8] [--activations FILE] [--only NAME ...]

``sae_paper`` is imported from this checkout's ``src/`` when the running environment
lacks it (its own dependencies, jaxtyping, safetensors and tqdm, must be there).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

Step = Callable[[torch.Tensor], None]


def ours(d_in: int, d_sae: int, alpha: float, args) -> Step:
    try:
        import sae_paper  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from sae_paper.core.sae import make_sae
    from sae_paper.core.train import make_optimizer, train_step

    sae = make_sae("tied", d_in, d_sae, alpha=alpha, seed=0)
    optimizer = make_optimizer(sae, lr=1e-3)
    fire_counts = torch.zeros(d_sae, dtype=torch.int64)
    return lambda x: train_step(sae, optimizer, x, fire_counts)


def saelens(d_in: int, d_sae: int, alpha: float, args) -> Step:
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=alpha, device="cpu"))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)

    def step(x: torch.Tensor) -> None:
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={"l1": alpha}, dead_neuron_mask=None,
                                                       n_training_steps=0, is_logging_step=False))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    return step


def dictionary_learning(d_in: int, d_sae: int, alpha: float, args) -> Step:
    from dictionary_learning.trainers.standard import StandardTrainer

    trainer = StandardTrainer(steps=10**9, activation_dim=d_in, dict_size=d_sae, lr=1e-3, l1_penalty=alpha,
                              warmup_steps=0, sparsity_warmup_steps=None, resample_steps=None, seed=0, device="cpu",
                              layer=0, lm_name="synthetic")
    counter = iter(range(10**9))
    return lambda x: trainer.update(next(counter), x)


def sparsify(d_in: int, d_sae: int, alpha: float, args) -> Step:
    import os

    if not torch.cuda.is_available():  # its Triton decoder needs a GPU; on CPU it uses embedding_bag
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=args.k), device="cpu")
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)

    def step(x: torch.Tensor) -> None:
        out = sae(x)
        optimizer.zero_grad(set_to_none=True)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        sae.set_decoder_norm_to_unit_norm()

    return step


TRAINERS: dict[str, Callable[..., Step]] = {
    "sae_paper": ours, "SAELens": saelens, "dictionary_learning": dictionary_learning, "sparsify": sparsify,
}


def dense_limit(batch: int, d_in: int, d_sae: int) -> Callable[[], None]:
    """The five dense matmuls of one ReLU-SAE step (as ``train_throughput.bare_matmuls``)."""
    g = torch.Generator().manual_seed(1)
    x, m = torch.randn(batch, d_in, generator=g), torch.randn(d_sae, d_in, generator=g)
    c, gx, gp = (torch.randn(batch, d_sae, generator=g).relu_(), torch.randn(batch, d_in, generator=g),
                 torch.randn(batch, d_sae, generator=g))

    def run() -> None:
        x @ m.t(), c @ m, gx @ m.t(), c.t() @ gx, gp.t() @ x

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=16, help="timed steps per trainer (after 2 untimed)")
    parser.add_argument("--alpha", type=float, default=8.6e-4, help="L1 coefficient of the ReLU trainers")
    parser.add_argument("--k", type=int, default=8, help="sparsify's TopK k")
    parser.add_argument("--activations", type=Path, default=None, help="safetensors file with 'activations' [n, d_in]")
    parser.add_argument("--only", nargs="+", choices=list(TRAINERS), default=list(TRAINERS))
    args = parser.parse_args(argv)
    if args.activations is not None:
        from safetensors.torch import load_file

        rows = load_file(str(args.activations))["activations"].float()
        args.d_in = rows.shape[1]
    else:
        rows = torch.randn(args.batch * 4, args.d_in, generator=torch.Generator().manual_seed(0))
    batches = [rows[i:i + args.batch] for i in range(0, len(rows) - args.batch + 1, args.batch)]
    if not batches:
        raise SystemExit(f"error: fewer than one batch ({args.batch}) of activations")
    limit = dense_limit(args.batch, args.d_in, args.d_sae)
    print(f"d_in {args.d_in}, d_sae {args.d_sae}, batch {args.batch}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'trainer':22s} {'act/s':>10s} {'÷ dense limit':>14s}")
    for name in args.only:
        try:
            step = TRAINERS[name](args.d_in, args.d_sae, args.alpha, args)
            for i in range(2):
                step(batches[i % len(batches)])
        except Exception as error:  # not installed, or an API this script does not know: skip, say why
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:100]
            print(f"{name:22s} skipped ({reason})")
            if not isinstance(error, ImportError):
                traceback.print_exc(limit=-1, file=sys.stderr)
            continue
        trained = limited = 0.0
        for i in range(args.steps):  # alternate with the ruler so load from other processes falls on both
            start = time.perf_counter()
            limit()
            middle = time.perf_counter()
            step(batches[i % len(batches)])
            trained += time.perf_counter() - middle
            limited += middle - start
        print(f"{name:22s} {args.batch * args.steps / trained:10,.0f} {limited / trained:14.2f}")


if __name__ == "__main__":
    main()
