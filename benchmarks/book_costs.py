"""What the book's steps cost beside what they could cost: each step's time next to its limit, in one run.

    python benchmarks/book_costs.py [--model smollm2-135m] [--depths 4 15 30] [--batch 32] [--context 128]
        [--batches 2] [--fragments 500] [--features 50] [--repeats 3]

Three kinds of work take the book's CPU time (issue 21 lists where it went), and each has a
limit measured here, on this machine, alternating with the step so that other load falls on both:

- **forward passes** (harvest, the fragment pass, IOI patching, the case studies): the model run
  through its first ``depth`` blocks on batches of ``batch x context`` tokens (the unembedding too
  when ``depth`` is every block), against the **matmul limit**: the same linear layers
  (attention Q, K, V, O; the MLP's in, gate and out; the unembedding) as bare ``F.linear`` calls on
  random inputs of the same shapes. The ratio is the share of the forward pass's time that its
  linear layers would need alone (1.0: nothing but matmuls);
- **training** (notebooks 01 to 05): :func:`~sae_paper.core.train.train_step` at the default
  profile's main SAE shape and L0, against the **dense limit** (its five matmuls alone;
  ``benchmarks/train_throughput.py`` explains them and sweeps densities);
- **scoring** (notebook 02): seconds per feature of
  :func:`~sae_paper.analysis.autointerp.scoring.score_decomposition` with the token-list stand-in
  (the default profile's scorer), against the **encode limit**: the one encoding of every fragment
  token that scoring needs, as a bare ``addmm``, divided over the features scored.

The machine's CPU model and vector extensions are printed first (:func:`sae_paper.report.provenance.hardware`),
since the same command takes twice as long on AVX2 as on AVX-512.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import BOOK_SHAPE, bare_matmuls, real_steps  # noqa: E402  the same steps and limit


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` after one untimed call each (allocations, lazy set-up),
    calls alternating so that load falls on all alike."""
    for fn in fns.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def linear_shapes(cfg, depth: int) -> list[tuple[int, int]]:
    """(in, out) of every linear layer a forward pass through ``depth`` blocks runs (+ the unembedding at full depth)."""
    kv_heads = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    attention = [(cfg.d_model, cfg.n_heads * cfg.d_head), (cfg.d_model, kv_heads * cfg.d_head),
                 (cfg.d_model, kv_heads * cfg.d_head), (cfg.n_heads * cfg.d_head, cfg.d_model)]
    mlp = [(cfg.d_model, cfg.d_mlp)] * (2 if getattr(cfg, "gated_mlp", False) else 1) + [(cfg.d_mlp, cfg.d_model)]
    shapes = (attention + mlp) * depth
    return shapes + ([(cfg.d_model, cfg.d_vocab)] if depth >= cfg.n_layers else [])


def forward_rows(model, depths: list[int], args) -> list[str]:
    from sae_paper.data.models import model_spec
    from sae_paper.data.text import load_contexts

    generator = torch.Generator().manual_seed(0)
    tokens = load_contexts("enwiki2015", model.tokenizer, n_contexts=args.batch * args.batches,
                           context_length=args.context, bos_token_id=model_spec(args.model).bos_token_id)
    n_tokens = tokens.numel()
    lines = [f"{'forward pass':<28}{'tokens/s':>12}{'matmul limit':>14}{'ratio':>8}{'GFLOP/s':>10}"]
    for depth in depths:
        shapes = linear_shapes(model.cfg, depth)
        inputs = {i: torch.randn(args.batch * args.context, i, generator=generator) for i in {i for i, _ in shapes}}
        weights = [torch.randn(o, i, generator=generator) / i**0.5 for i, o in shapes]
        stop = None if depth >= model.cfg.n_layers else depth

        def forward(stop=stop):
            with torch.inference_mode():
                for start in range(0, len(tokens), args.batch):
                    model(tokens[start : start + args.batch], stop_at_layer=stop)

        def limit(shapes=shapes, weights=weights, inputs=inputs):
            for _ in range(args.batches):
                for (i, _), weight in zip(shapes, weights):
                    F.linear(inputs[i], weight)

        seconds = timed({"forward": forward, "limit": limit}, args.repeats)
        flops = 2 * n_tokens * sum(i * o for i, o in shapes)
        lines.append(f"{f'{depth} blocks' + (' + unembed' if stop is None else ''):<28}{n_tokens / seconds['forward']:>12,.0f}"
                     f"{n_tokens / seconds['limit']:>14,.0f}{seconds['limit'] / seconds['forward']:>8.2f}"
                     f"{flops / seconds['limit'] / 1e9:>10.1f}")
    return lines


def training_rows(args) -> list[str]:
    batch, d_in, d_sae = args.train_shape
    generator = torch.Generator().manual_seed(0)
    density = args.train_l0 / d_sae
    fns = {"limit": bare_matmuls(batch, d_in, d_sae, generator)}
    for path in ("dense", "sparse", "auto"):
        fns[path] = real_steps("tied", batch, d_in, d_sae, density, path, generator)
    steps = max(1, args.train_steps)
    seconds = timed({name: (lambda fn=fn: [fn() for _ in range(steps)]) for name, fn in fns.items()}, args.repeats)
    lines = [f"{f'training step {batch}x{d_in}->{d_sae}, L0 {args.train_l0}':<40}{'act/s':>12}{'dense limit':>13}{'ratio':>8}"]
    for path in ("dense", "sparse", "auto"):
        lines.append(f"{f'  {path} step':<40}{batch * steps / seconds[path]:>12,.0f}"
                     f"{batch * steps / seconds['limit']:>13,.0f}{seconds['limit'] / seconds[path]:>8.2f}")
    return lines


def scoring_rows(model, args) -> list[str]:
    from sae_paper.analysis.autointerp import Cached, TokenListBackend, load_fragments, score_decomposition
    from sae_paper.analysis.autointerp.scoring import ScoringConfig
    from sae_paper.core.decompositions import SaeDecomposition
    from sae_paper.core.sae import make_sae

    d_in = model.cfg.d_model
    fragments = load_fragments(model.tokenizer, n_fragments=args.fragments, length=64, sources=("webtext", "enwiki2015"))
    generator = torch.Generator().manual_seed(0)
    # activations that depend on the token (so that explanations list tokens) and on noise
    embedding = torch.randn(int(fragments.tokens.max()) + 1, d_in, generator=generator)
    acts = embedding[fragments.tokens] + 0.5 * torch.randn(*fragments.tokens.shape, d_in, generator=generator)
    sae = make_sae("tied", d_in, 2 * d_in)
    with torch.no_grad():
        sae.b.fill_(-2.5)  # a few percent of the codes fire, as in a trained SAE
    decomposition = SaeDecomposition(sae)
    backend = Cached(TokenListBackend(), None)  # no store: every repeat scores afresh
    config = ScoringConfig(min_fragments=min(20, args.fragments // 10))
    rows = acts.reshape(-1, d_in)
    encoder, bias, _ = sae.weights()
    encoder, bias = encoder.detach(), bias.detach()

    def score(vectorised: bool):
        return lambda: score_decomposition(decomposition, acts, fragments, backend, backend, method="sae", site="x",
                                           n_features=args.features, config=config, vectorised=vectorised)

    seconds = timed({"vectorised": score(True), "per call": score(False),
                     "limit": lambda: torch.addmm(bias, rows, encoder.t()).relu_()}, args.repeats)
    n = args.features
    lines = [f"{f'scoring, {args.fragments:,} fragments, {n} features':<40}{'ms/feature':>12}{'encode limit':>14}{'ratio':>8}"]
    for name in ("vectorised", "per call"):
        lines.append(f"{f'  token-list, {name}':<40}{1e3 * seconds[name] / n:>12.2f}{1e3 * seconds['limit'] / n:>14.2f}"
                     f"{seconds['limit'] / seconds[name]:>8.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 15, 30],
                        help="blocks run (4: harvest at layer 3; 15: the fragment pass to layer 14; 30: IOI, whole model)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batches", type=int, default=2, help="batches per timed forward pass")
    parser.add_argument("--train-shape", type=int, nargs=3, default=list(BOOK_SHAPE), metavar=("BATCH", "D_IN", "D_SAE"))
    parser.add_argument("--train-l0", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--fragments", type=int, default=500)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from sae_paper.data.models import load_model
    from sae_paper.report.provenance import hardware

    hw = hardware()
    print(f"{hw['cpu_model']} ({', '.join(hw['vector_extensions']) or 'no vector extensions known'}), "
          f"{hw['cpus_usable']} cores usable, torch {torch.get_num_threads()} threads")
    model = load_model(args.model)
    depths = [min(depth, model.cfg.n_layers) for depth in args.depths]
    for block in (forward_rows(model, depths, args), training_rows(args), scoring_rows(model, args)):
        print()
        print("\n".join(block))


if __name__ == "__main__":
    main()
