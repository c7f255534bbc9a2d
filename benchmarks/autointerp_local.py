"""Simulated fragments per second of the ``local`` autointerp backend, with and without prefix reuse.

    python benchmarks/autointerp_local.py [--fragments 6] [--length 64] [--threads N]

Two features' simulations, ``--fragments`` WebText fragments of ``--length`` tokens each (GPT-NeoX
tokens from the shared data, as notebook 02 shows them), half under each feature's explanation.
Every prompt starts with the same instructions and few-shot examples, then the explanation, then
the fragment. Without prefix reuse every fragment evaluates its whole prompt; with it the key/value
cache of the longest prefix shared with the previous prompt is kept (the instructions across
features, the explanation too within one).
Both runs give the same predictions (checked). No call cache is used. Needs llama-cpp-python and
the GGUF (``scripts/setup.sh --with-local-llm`` or ``SAE_PAPER_LOCAL_LLM``).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", type=int, default=6)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from sae_paper.analysis.autointerp import local
    from sae_paper.analysis.autointerp.fragments import load_fragments
    from sae_paper.data.models import _neox_tokenizer

    reason = local.missing()
    if reason:
        raise SystemExit(f"local backend not installed: {reason}")
    fragments = load_fragments(_neox_tokenizer(), n_fragments=args.fragments, length=args.length, sources=("webtext",))
    explanations = ['apostrophes in contractions and possessives, like "\'s" and "\'t"', "years and dates"]
    results = {}
    for reuse in (False, True):
        backend = local.LocalBackend(n_threads=args.threads, prefix_reuse=reuse)
        prompts = [backend.simulate_request(explanations[2 * i // args.fragments], tokens)
                   for i, tokens in enumerate(fragments.token_strings)]
        backend.simulate(backend.simulate_request("warm-up", ["warm", "up"]), 2)  # load weights into the page cache
        backend.tokens_evaluated = 0
        began = time.perf_counter()
        predictions = [backend.simulate(p, fragments.length) for p in prompts]
        seconds = time.perf_counter() - began
        results[reuse] = predictions
        print(f"prefix reuse {'on ' if reuse else 'off'}: {len(prompts)} fragments in {seconds:.1f} s = "
              f"{len(prompts) / seconds:.3f} fragments/s ({backend.tokens_evaluated / seconds:.0f} prompt tokens/s, "
              f"{backend.tokens_evaluated} tokens evaluated)")
    worst = max(abs(a - b) for x, y in zip(results[False], results[True]) for a, b in zip(x, y))
    print(f"largest difference between the two runs' predictions: {worst:.3g} (of a 0-10 scale)")


if __name__ == "__main__":
    main()
