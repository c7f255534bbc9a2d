"""The figures ``benchmarks/gpu_check.sh`` prints: matmul limit, SAE step, dense and sparse paths, harvest.

    python benchmarks/gpu_check.py [--device cuda] [--dry] [--json FILE]

- **matmul limit**: a square ``n × n`` matmul in float32 and bfloat16, TFLOP/s: what the
  device can do at best, measured in the same run as what follows;
- **SAE step**: :func:`sae_paper.core.train.train_step` (the training loop's step, real Adam) on
  Pythia-70M's residual width at R = 8 (batch 4,096 × d_in 512, d_sae 4,096), in float32 and
  under bfloat16 autocast, by the dense and the sparse path and by ``auto``, at a code density
  of ~3 % (the bias set as in ``train_throughput.py``): activations/s and the TFLOP/s of the
  step's five dense matmuls as a fraction of the matmul limit of its dtype;
- **harvest**: random-weight Pythia-70M's residual stream after layer 2 harvested into a
  scratch cache (:func:`sae_paper.data.activations.harvest`), tokens/s, beside the bare forward
  pass to that layer.

A part that fails prints ``FAILED: <one line>`` and the others still run; the exit status is
1 when any failed. ``--dry`` runs every part at tiny sizes (to check the script on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sae_paper.data.device import synchronize

SHAPE = (4096, 512, 4096)
DRY_SHAPE = (64, 16, 64)


def timed(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Median seconds of one call, after one warm-up call."""
    fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return sorted(seconds)[len(seconds) // 2]


def matmul_limit(device: str, n: int, dtype: torch.dtype, repeats: int) -> float:
    """TFLOP/s of an n × n × n matmul."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timed(lambda: torch.mm(a, b, out=out), device, repeats) / 1e12


def sae_step(device: str, shape: tuple[int, int, int], path: str, bf16: bool, density: float, repeats: int) -> dict:
    """Activations/s and dense-matmul TFLOP/s of one training step by ``path``."""
    from sae_paper.core.sae import make_sae
    from sae_paper.core.train import make_optimizer, train_step

    batch, d_in, d_sae = shape
    sae = make_sae("tied", d_in, d_sae, alpha=8.6e-4, seed=0).to(device)
    with torch.no_grad():
        sae.b.fill_(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(density)).item())
    optimizer = make_optimizer(sae, lr=1e-6)  # a small lr keeps the density while the steps are timed
    x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(0)).to(device)
    fire_counts = torch.zeros(d_sae, dtype=torch.int64, device=device)
    out = []

    def step() -> None:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out[:] = [train_step(sae, optimizer, x, fire_counts, path)]

    seconds = timed(step, device, repeats)
    return {"activations_per_s": batch / seconds, "tflops": 5 * 2 * batch * d_in * d_sae / seconds / 1e12,
            "density": (out[0].codes > 0).float().mean().item()}


def harvest_rate(device: str, tokens: int, context_length: int, batch_size: int) -> dict:
    """Harvest and bare-forward tokens/s of random-weight Pythia-70M at resid_post.2."""
    os.environ["SAE_PAPER_CACHE"] = tempfile.mkdtemp(prefix="gpu-check-harvest-")
    from sae_paper.data.activations import HarvestSpec, harvest
    from sae_paper.data.models import Site, load_model, model_spec
    from sae_paper.data.text import load_contexts

    name, site = "pythia-70m-deduped-random", Site("resid_post", 2)
    model = load_model(name, device=device)
    spec = HarvestSpec(name, "enwiki2015", "train", tokens, context_length, "float16", seed=0)
    started = time.perf_counter()
    cache = harvest(model, spec, [site], batch_size=batch_size, progress=False)
    synchronize(device)
    harvest_seconds = time.perf_counter() - started
    ids = load_contexts(spec.source, model.tokenizer, n_contexts=cache[site].n_contexts, context_length=context_length,
                        bos_token_id=model_spec(name).bos_token_id).to(device)

    def bare() -> None:
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                model(ids[start : start + batch_size], stop_at_layer=site.layer + 1)

    bare_seconds = timed(bare, device, 1)
    return {"harvest_tokens_per_s": ids.numel() / harvest_seconds, "bare_tokens_per_s": ids.numel() / bare_seconds,
            "tokens": ids.numel()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry", action="store_true", help="tiny sizes: check that every part runs (CPU is fine)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    dry, device = args.dry, args.device
    n, shape, repeats = (64, DRY_SHAPE, 1) if dry else (8192, SHAPE, 5)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    figures: dict[str, object] = {"device": name, "torch": torch.__version__, "dry": dry}
    failed = []
    print(f"gpu_check on {name}, torch {torch.__version__}{' (dry: tiny sizes)' if dry else ''}")

    def part(label: str, compute: Callable[[], object]) -> object:
        try:
            value = compute()
        except Exception as error:  # noqa: BLE001 - each part reports its own failure and the rest still run
            failed.append(label)
            print(f"{label}: FAILED: {type(error).__name__}: {' '.join(str(error).split())[:300]}")
            return None
        figures[label] = value
        return value

    limits = {}
    for dtype in ("float32", "bfloat16"):
        limit = part(f"matmul {dtype}", lambda dtype=dtype: matmul_limit(device, n, getattr(torch, dtype), repeats))
        if limit is not None:
            limits[dtype] = limit
            print(f"matmul limit {dtype:<8} {n} x {n}: {limit:,.2f} TFLOP/s")
    batch, d_in, d_sae = shape
    print(f"SAE step, tied, batch {batch:,} x d_in {d_in} -> d_sae {d_sae:,}, code density ~3 %:")
    for dtype in ("float32", "bfloat16"):
        for path in ("dense", "sparse", "auto"):
            row = part(f"sae step {dtype} {path}",
                       lambda dtype=dtype, path=path: sae_step(device, shape, path, dtype == "bfloat16", 0.03, repeats))
            if row is not None:
                share = f", {row['tflops'] / limits[dtype]:.1%} of the {dtype} matmul limit" if dtype in limits else ""
                print(f"  {dtype:<8} {path:<6} {row['activations_per_s']:>14,.0f} activations/s, "
                      f"{row['tflops']:,.3f} TFLOP/s{share} (density {row['density']:.3f})")
    tokens, context, batch_size = (62, 32, 2) if dry else (254 * 128, 128, 64)
    rates = part("harvest pythia-70m-deduped-random", lambda: harvest_rate(device, tokens, context, batch_size))
    if rates is not None:
        print(f"harvest pythia-70m-deduped-random resid_post.2, float16, {rates['tokens']:,} tokens, batch {batch_size} x "
              f"{context}: {rates['harvest_tokens_per_s']:,.0f} tokens/s (bare forward {rates['bare_tokens_per_s']:,.0f})")
    figures["failed"] = failed
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if failed:
        print(f"gpu_check: {len(failed)} part(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
