"""Detection and fuzzing with a real LLM (the ``local`` backend, Qwen2.5-Coder-1.5B-Instruct via llama.cpp) on SAE,
random directions, PCA and residual-basis features, beside the token-list stand-in; and llama.cpp's prompt
tokens per second against what this CPU's matrix multiply allows.

    python benchmarks/local_llm_scorers.py [--features 30] [--layers 3 9] [--out docs/measurements/local-llm-scorers.json]

Uses the ``local-llm`` profile's notebook-02 parameters (SmolLM2 SAEs from the cache or trained, fragments of 32
tokens), one seed. Every LLM call is cached (``autointerp/calls.sqlite`` under the cache), so an interrupted run
resumes where it stopped. The record it writes is what the budget page's section on a real LLM scorer shows
(:func:`sae_paper.chapters.autointerp_llm.budget_section`). Needs ``scripts/setup.sh --with-local-llm``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """fp32 matrix-multiply throughput of torch on ``threads`` threads (GFLOP/s), the machine's dense ceiling."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - began) / 1e9


def prompt_tokens_per_second(backend, n_tokens: int = 384, repeats: int = 3) -> float:
    """llama.cpp's prompt evaluation alone: ``n_tokens`` of WebText evaluated from an empty key/value cache, the
    best of ``repeats`` (a throughput: the slower runs measured what else the machine was doing)."""
    from sae_paper.data.text import iter_documents

    text = " ".join(t for _, t in zip(range(40), iter_documents("webtext", split="train", seed=0)))
    ids = backend.llm.tokenize(text.encode(), add_bos=False, special=False)[:n_tokens]
    best = 0.0
    for _ in range(repeats):
        backend.llm.n_tokens = 0
        began = time.perf_counter()
        backend.llm.eval(ids)
        best = max(best, len(ids) / (time.perf_counter() - began))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=30, help="features per method and layer")
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 9])
    parser.add_argument("--methods", nargs="+", default=["sae", "random", "pca", "neurons"])
    parser.add_argument("--activating", type=int, default=3, help="positives per feature (detection: activating fragments; fuzzing: right highlights)")
    parser.add_argument("--non-activating", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "measurements" / "local-llm-scorers.json")
    args = parser.parse_args()

    import llama_cpp

    from sae_paper.analysis.autointerp import local
    from sae_paper.analysis.autointerp.backends import Cached, CallCache
    from sae_paper.analysis.autointerp.classify import ClassifyConfig
    from sae_paper.book.profiles import load_profile
    from sae_paper.chapters.autointerp_llm import budget_section, measure, study_for

    reason = local.missing()
    if reason:
        raise SystemExit(f"local backend not installed: {reason}")
    profile = load_profile(ROOT / "profiles" / "local-llm.yaml")["02_autointerp"]
    profile = {**profile, "layers": args.layers, "main_layer": args.layers[0], "table1_layer": args.layers[-1]}
    study = study_for(profile, methods=args.methods, n_features=args.features)
    backend = local.LocalBackend(n_threads=args.threads)
    llm = Cached(backend, CallCache())
    classify = ClassifyConfig(n_activating=args.activating, n_non_activating=args.non_activating, n_quantiles=3,
                              examples_per_prompt=2 * args.activating)
    stored_before = sum(t["calls"] for t in llm.cache.timings(backend).values())
    began = time.perf_counter()
    record = measure(study, llm, args.out, classify=classify)
    seconds = time.perf_counter() - began
    threads = args.threads or len(__import__("os").sched_getaffinity(0))
    tokens_per_second = prompt_tokens_per_second(backend)
    gflops = matmul_gflops(threads)
    evaluated = sum(r["tokens_evaluated"] for r in record["rows"])
    # the cost is the calls' own timings (record["call_timings"]): a resumed run reads most calls back; this run's own
    # span (SAEs, fragment pass and the stand-in included) says what one run from an empty call cache takes
    record["run"] = {"seconds": seconds, "calls_made": llm.cache.misses, "calls_stored_before": stored_before}
    record["matmul_gflops_fp32"] = gflops
    record["prompt_tokens_per_second"] = tokens_per_second
    record["model_gflop_per_token"] = 2 * llama_cpp.llama_model_n_params(backend.llm.model) / 1e9
    import json

    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(budget_section(record))
    per_token = record["model_gflop_per_token"]
    ceiling = f", a ceiling of {gflops / per_token:.0f} tokens/s at {per_token:.1f} GFLOP a token" if per_token else ""
    print(f"{seconds / 60:.1f} min in this run; {evaluated:,} prompt tokens evaluated here; llama.cpp "
          f"evaluates {tokens_per_second:.0f} prompt tokens/s; torch fp32 matmul {gflops:.0f} GFLOP/s on {threads} "
          f"threads{ceiling}")


if __name__ == "__main__":
    main()
