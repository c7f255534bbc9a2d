"""Harvest throughput next to the bare forward pass it is built on, measured in the same run.

    python benchmarks/harvest_throughput.py [--model smollm2-135m] [--layer 3] [--tokens 32512]

bare forward: ``model(tokens, stop_at_layer=layer + 1)`` over the same contexts and batch
size, nothing captured or written. harvest: :func:`sae_paper.data.activations.harvest` into a
scratch cache (capture, dtype cast, safetensors shards, checksums, manifest), tokenisation
of the text included. The ratio harvest / bare is the price of everything but the model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=254 * 128, help="activations to harvest")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context-length", type=int, default=128)
    args = parser.parse_args()

    os.environ["SAE_PAPER_CACHE"] = tempfile.mkdtemp(prefix="harvest-bench-")
    from sae_paper.data.activations import HarvestSpec, harvest
    from sae_paper.data.models import Site, load_model, model_spec
    from sae_paper.data.text import load_contexts

    model = load_model(args.model)
    spec = HarvestSpec(args.model, "enwiki2015", "train", args.tokens, args.context_length, "float32", seed=0)
    started = time.perf_counter()
    cache = harvest(model, spec, [Site("resid_post", args.layer)], batch_size=args.batch_size, progress=False)
    harvest_seconds = time.perf_counter() - started
    # Rates per position run through the model (kept rows are ~1-2 % fewer: BOS, first tokens, separators).
    tokens = load_contexts(spec.source, model.tokenizer, n_contexts=cache[Site("resid_post", args.layer)].n_contexts,
                           context_length=args.context_length, bos_token_id=model_spec(args.model).bos_token_id)
    positions = tokens.numel()
    harvested = positions / harvest_seconds
    with torch.inference_mode():
        model(tokens[: args.batch_size], stop_at_layer=args.layer + 1)  # warm-up
        started = time.perf_counter()
        for start in range(0, len(tokens), args.batch_size):
            model(tokens[start : start + args.batch_size], stop_at_layer=args.layer + 1)
        bare = positions / (time.perf_counter() - started)

    print(f"model {args.model}, resid_post.{args.layer}, {spec.n_tokens:,} tokens, batch {args.batch_size} x {args.context_length}, "
          f"{torch.get_num_threads()} threads")
    print(f"bare forward to layer {args.layer}: {bare:,.0f} tokens/s")
    print(f"harvest (incl. tokenising, writing, checksums): {harvested:,.0f} tokens/s")
    print(f"ratio harvest / bare: {harvested / bare:.3f}")


if __name__ == "__main__":
    main()
