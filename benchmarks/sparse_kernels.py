"""Which torch primitive does each sparse piece of an SAE step fastest, on this machine.

The sparse step (:mod:`sae_paper.core.kernels`) needs four sparse products besides the
dense encoder matmul, for codes ``c`` [batch, d_sae] with ``nnz`` non-zeros:

    extract   the active codes of c as CSR (crow, col, values)
    decode    x̂ = c D            [batch, d_in]   sum of D's rows weighted by the codes
    sddmm     (g Dᵀ)[active]     [nnz]           one dot product per active code
    spmm_t    cᵀ Y               [d_sae, d_in]   each active code adds a row of Y to a row of ∂D

Each is timed here with every candidate torch offers on CPU and CUDA (no C++), next
to the dense matmul it replaces, at several code densities; the fastest is what
:mod:`sae_paper.core.kernels` uses. Codes are drawn with exactly ``density · batch · d_sae``
non-zeros.

Last measured (single-thread CPU, AVX-512, torch 2.13; batch 4,096, d_in 512, d_sae 4,096,
5 % density, each next to a 193 ms dense matmul), which is what the kernels chose:

- the active codes: one ``nonzero`` over the byte mask ``c > 0``, 36 ms with the rows
  (``Tensor.to_sparse_csr`` 58 ms);
- decode, and ∂x when asked: ``F.embedding_bag(features, D, row_ptr, per_sample_weights=c)``,
  40 ms (CSR ``sparse.mm`` 2-3x slower);
- ∂c at the active codes: ``torch.sparse.sampled_addmm`` (SDDMM), 66 ms (the
  ``embedding_bag`` per-sample-weight backward 2x slower, gathering rows 40x);
- ∂D and ∂E: ``embedding_bag`` on the pattern grouped by feature, 40 ms each, after one
  stable ``argsort`` of the feature ids, 28 ms, that serves both (CSR ``sparse.mm`` on the
  transpose 2x slower, ``index_add_`` of gathered rows 70x).

Neither this benchmark nor ``benchmarks/train_throughput.py`` (the whole dense and sparse
steps, from which the crossover is read) has run on a GPU: both build their tensors on the
CPU. So on CUDA ``path="auto"`` stays dense (:func:`sae_paper.core.kernels.choose_path`).

    python benchmarks/sparse_kernels.py [--batch 4096] [--d-in 512] [--d-sae 4096]
                                        [--densities 0.01 0.03 0.1 0.3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_codes(batch: int, d_sae: int, density: float, generator: torch.Generator) -> torch.Tensor:
    codes = torch.zeros(batch, d_sae)
    n = max(1, round(density * batch * d_sae))
    flat = torch.randperm(batch * d_sae, generator=generator)[:n]
    codes.view(-1)[flat] = torch.rand(n, generator=generator) + 0.1
    return codes


def candidates(codes: torch.Tensor, d_in: int, generator: torch.Generator) -> dict[str, dict[str, Callable]]:
    batch, d_sae = codes.shape
    D = torch.randn(d_sae, d_in, generator=generator)
    g = torch.randn(batch, d_in, generator=generator)
    csr = codes.to_sparse_csr()
    crow, cols, vals = csr.crow_indices(), csr.col_indices(), csr.values()
    rows = torch.repeat_interleave(torch.arange(batch), crow.diff())
    coo = codes.to_sparse()
    perm = torch.argsort(cols, stable=True)
    crow_t = torch.zeros(d_sae + 1, dtype=torch.int64)
    crow_t[1:] = torch.bincount(cols, minlength=d_sae).cumsum(0)
    rows_t, vals_t = rows[perm], vals[perm]
    csr_t = torch.sparse_csr_tensor(crow_t, rows_t, vals_t, (d_sae, batch), check_invariants=False)
    out_t = torch.empty(d_sae, d_in)

    def sddmm_chunked() -> torch.Tensor:
        out = torch.empty(len(cols))
        step = 1 << 16
        for s in range(0, len(cols), step):
            out[s:s + step] = (D[cols[s:s + step]] * g[rows[s:s + step]]).sum(-1)
        return out

    def index_add_chunked() -> torch.Tensor:
        out_t.zero_()
        step = 1 << 16
        for s in range(0, len(cols), step):
            out_t.index_add_(0, cols[s:s + step], g[rows[s:s + step]] * vals[s:s + step, None])
        return out_t

    return {
        "extract": {
            "dense relu (reference pass)": lambda: torch.relu(codes),
            "to_sparse_csr": lambda: codes.to_sparse_csr(),
            "nonzero + gather": lambda: (lambda nz: codes[nz[:, 0], nz[:, 1]])(codes.nonzero()),
            "flat nonzero + take": lambda: codes.view(-1).take(codes.view(-1).nonzero().squeeze(1)),
            "argsort(cols) for the transpose": lambda: torch.argsort(cols, stable=True),
            "t().contiguous().to_sparse_csr": lambda: codes.t().contiguous().to_sparse_csr(),
        },
        "decode": {
            "dense mm": lambda: codes @ D,
            "embedding_bag": lambda: F.embedding_bag(cols, D, crow, mode="sum", per_sample_weights=vals,
                                                     include_last_offset=True),
            "csr sparse.mm": lambda: torch.sparse.mm(csr, D),
            "coo sparse.mm": lambda: torch.sparse.mm(coo, D),
        },
        "sddmm": {
            "dense mm": lambda: g @ D.t(),
            "sampled_addmm": lambda: torch.sparse.sampled_addmm(csr, g, D.t(), beta=0.0),
            "embedding_bag per_sample_weights backward": lambda: torch.ops.aten._embedding_bag_per_sample_weights_backward(
                g, D, cols, crow[:-1], rows, 0, -1),
            "gather, multiply, sum (chunked)": sddmm_chunked,
        },
        "spmm_t": {
            "dense mm": lambda: codes.t() @ g,
            "csr.t() sparse.mm": lambda: torch.sparse.mm(csr.t(), g),
            "transposed csr sparse.mm": lambda: torch.sparse.mm(csr_t, g),
            "embedding_bag on the transpose": lambda: F.embedding_bag(rows_t, g, crow_t, mode="sum",
                                                                      per_sample_weights=vals_t,
                                                                      include_last_offset=True),
            "coo.t() sparse.mm": lambda: torch.sparse.mm(coo.t(), g),
            "index_add_ (chunked)": index_add_chunked,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--check", action="store_true", help="also check every candidate against the dense answer")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"batch {args.batch}, d_in {args.d_in}, d_sae {args.d_sae}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; median ms of {args.repeats}")
    for density in args.densities:
        codes = random_codes(args.batch, args.d_sae, density, generator)
        print(f"\ndensity {density:.0%} (nnz {int((codes != 0).sum()):,})")
        for piece, fns in candidates(codes, args.d_in, generator).items():
            for name, fn in fns.items():
                try:
                    verdict = check(piece, fn(), fns["dense mm"](), codes) if args.check and "dense mm" in fns else ""
                    print(f"  {piece:8s} {name:45s} {timed(fn, args.repeats) * 1e3:9.2f}{verdict}")
                except (RuntimeError, NotImplementedError) as error:
                    print(f"  {piece:8s} {name:45s} unsupported: {str(error).splitlines()[0][:60]}")


def check(piece: str, result, dense: torch.Tensor, codes: torch.Tensor) -> str:
    """"  ok" if ``result`` equals the dense answer (at the active codes, for SDDMM), else "  mismatch"."""
    if isinstance(result, torch.Tensor) and result.layout != torch.strided:
        result = result.to_dense()
    expected = dense[codes != 0] if piece == "sddmm" else dense
    if piece == "sddmm" and result.shape == dense.shape:
        result = result[codes != 0]
    return "  ok" if torch.allclose(result, expected, rtol=1e-4, atol=1e-4) else "  mismatch"


if __name__ == "__main__":
    main()
