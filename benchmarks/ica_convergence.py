"""ICA at convergence, measured: FastICA at several iteration budgets and Picard, on SmolLM2's residual stream.

    python benchmarks/ica_convergence.py [--layers 3 9] [--rows 4096 16384] [--budgets 40 200 1000]
                                         [--picard-rows 4096 16384] [--picard-max-iter 500] [--check]
                                         [--out docs/measurements/ica-convergence.json]

Issue 30 §4: the book's ICA baseline (``core/decompositions.py:fit_ica``, sklearn's parallel
logcosh FastICA) runs 40 iterations on 4,096 rows and does not converge. This measures what
convergence would cost, on the rows ``fit_ica`` itself draws (the first ``rows`` of a seeded
pass over a Run's cached train activations, as ``chapters/autointerp.py:baselines`` fits them):

- **FastICA** at each budget. The budgets are one run continued: the fit at 200 is the fit at
  40 given 160 more iterations from its unmixing (sklearn's ``w_init``), so the grid costs its
  largest budget once. ``--check`` compares that against ``fit_ica(max_iter=budgets[1])`` run
  straight (the same up to one symmetric decorrelation's rounding). ``change`` is what FastICA
  stops on (:func:`~sae_paper.core.decompositions.fastica_change`: how far one more iteration
  moves an unmixing row), converged when below its ``tol`` 1e-4. Seconds are cumulative and
  include each stage's own whitening (an SVD) and change.
- **Picard** (``python-picard``, Ablin et al. 2018, preconditioned L-BFGS), orthogonal and
  extended (``ortho=True``: the same model and fixed points as FastICA), stopping on its own
  tolerance (gradient norm < 1e-7). Its ``change`` is FastICA's criterion at Picard's answer, so
  the two columns compare.

BLAS runs on one thread, as the book fits ICA (two OpenBLAS threads spin on a busy 2-core machine).
Needs the ``bench`` extra: ``pip install -e .[bench]``.

``--out`` keeps every row in a JSON record (rows of an earlier run with other layers or row counts are kept, a
row measured again replaces its old one), which the budget page's section on ICA shows
(:func:`sae_paper.book.costs_page.ica_section`).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def ica_rows(activations, rows: int, seed: int) -> np.ndarray:
    """The rows ``fit_ica(activations, max_rows=rows, seed=seed)`` fits on (its own selection, repeated here)."""
    import torch

    batches = []
    for batch in activations.batches(4096, seed=seed, epoch=0):
        batches.append(batch)
        if sum(len(b) for b in batches) >= rows:
            break
    return torch.cat(batches)[:rows].double().numpy()


def fastica_stages(data: np.ndarray, budgets: list[int], *, seed: int, tol: float = 1e-4):
    """(budget, iterations run, change, converged, cumulative seconds) at each budget of one continued FastICA."""
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    from sae_paper.core.decompositions import _symmetric_decorrelation, fastica_change

    w_init, done, seconds = None, 0, 0.0
    for budget in budgets:
        started = time.perf_counter()
        ica = FastICA(n_components=data.shape[1], random_state=seed, max_iter=budget - done, tol=tol,
                      whiten="unit-variance", w_init=w_init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ica.fit(data)
        stopped_early = ica.n_iter_ < budget - done
        done += int(ica.n_iter_)
        change = fastica_change(ica, data)
        seconds += time.perf_counter() - started
        yield budget, done, change, change < tol, seconds
        if stopped_early:
            return  # converged: a larger budget runs no further
        w_init = _symmetric_decorrelation(ica._unmixing)


def picard_fit(data: np.ndarray, *, seed: int, max_iter: int, tol: float = 1e-7):
    """(iterations, Picard's final gradient norm or None when it converged, FastICA's change at its answer, seconds)."""
    from picard import picard

    from sae_paper.core.decompositions import fastica_change

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whitening, unmixing, _, mean, n_iter = picard(data.T, ortho=True, extended=True, max_iter=max_iter, tol=tol,
                                                      random_state=seed, return_X_mean=True, return_n_iter=True)
    seconds = time.perf_counter() - started
    message = next((str(w.message) for w in caught if "did not converge" in str(w.message)), None)
    gradient = float(re.search(r"norm : ([0-9.e+-]*[0-9])", message)[1]) if message else None
    # Picard whitens as sklearn does, K = (u/d)ᵀ·√n; fastica_change multiplies its whitening_ by √n itself.
    as_fastica = SimpleNamespace(_unmixing=unmixing, whitening_=whitening / np.sqrt(len(data)), mean_=mean)
    return int(n_iter), gradient, fastica_change(as_fastica, data), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--source", default="enwiki2015")
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 9])
    parser.add_argument("--rows", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--budgets", type=int, nargs="+", default=[40, 200, 1000], help="FastICA iteration budgets")
    parser.add_argument("--picard-max-iter", type=int, nargs="+", default=[500], help="one Picard run per limit")
    parser.add_argument("--picard-rows", type=int, nargs="+", default=None, help="Picard's row counts (default: --rows)")
    parser.add_argument("--out", type=Path, default=None, help="JSON record to add the rows to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="also run fit_ica straight at the second budget")
    args = parser.parse_args()
    if sorted(args.budgets) != args.budgets or len(set(args.budgets)) != len(args.budgets):
        parser.error("--budgets must increase")

    from threadpoolctl import threadpool_limits

    from sae_paper.core.config import RunConfig
    from sae_paper.core.decompositions import fit_ica
    from sae_paper.core.pipeline import Run
    from sae_paper.data.activations import harvest

    picard_rows = args.picard_rows or args.rows
    record = Record(args.out, model=args.model, source=args.source, seed=args.seed)
    runs = [Run(RunConfig(model=args.model, source=args.source, layer=layer, n_tokens=max(*args.rows, *picard_rows),
                          context_length=128),
                progress=False) for layer in args.layers]
    harvest(runs[0].model if not all(_cached(r) for r in runs) else None, runs[0].harvest_spec("train"),
            [run.site for run in runs], progress=False)
    print(f"{args.model}, {args.source}, seed {args.seed}, BLAS on 1 thread; FastICA tol 1e-4 on its change, "
          "Picard tol 1e-7 on its gradient")
    print(f"{'layer':>5} {'rows':>6} {'method':<14} {'iters':>6} {'change':>9} {'converged':>9} {'seconds':>8}  note")
    with threadpool_limits(1):
        for run in runs:
            activations = run.activations()
            for rows in sorted({*args.rows, *picard_rows}):
                data = ica_rows(activations, rows, args.seed)
                changes = {}
                for budget, done, change, converged, seconds in (fastica_stages(data, args.budgets, seed=args.seed)
                                                                 if rows in args.rows else ()):
                    changes[budget] = change
                    record.add(run.site.layer, rows, "FastICA", budget, done, change, converged, seconds)
                    print(f"{run.site.layer:>5} {rows:>6} {'FastICA ' + str(budget):<14} {done:>6} {change:>9.2e} "
                          f"{str(converged):>9} {seconds:>8.1f}", flush=True)
                if args.check and len(args.budgets) > 1 and rows == args.rows[0]:
                    started = time.perf_counter()
                    straight = fit_ica(activations, max_rows=rows, seed=args.seed, max_iter=args.budgets[1]).fit
                    print(f"{run.site.layer:>5} {rows:>6} {'fit_ica ' + str(args.budgets[1]):<14} {straight['iterations']:>6} "
                          f"{straight['final_change']:>9.2e} {str(straight['converged']):>9} "
                          f"{time.perf_counter() - started:>8.1f}  the book's fit_ica run straight; change differs from "
                          f"the continued run's by {abs(straight['final_change'] - changes.get(args.budgets[1], np.nan)):.1e}",
                          flush=True)
                for max_iter in args.picard_max_iter if rows in picard_rows else ():
                    n_iter, gradient, change, seconds = picard_fit(data, seed=args.seed, max_iter=max_iter)
                    record.add(run.site.layer, rows, "Picard-O", max_iter, n_iter, change, change < 1e-4, seconds)
                    note = "its gradient < 1e-7" if gradient is None else f"stopped at max_iter, gradient norm {gradient:.2e}"
                    print(f"{run.site.layer:>5} {rows:>6} {'Picard-O ' + str(max_iter):<14} {n_iter:>6} {change:>9.2e} "
                          f"{str(gradient is None):>9} {seconds:>8.1f}  {note}", flush=True)


class Record:
    """The rows measured, by (layer, rows, method, budget), written to ``path`` (a JSON record) after each row."""

    def __init__(self, path: Path | None, **about):
        self.path, self.rows = path, {}
        if path is not None and path.is_file():
            self.rows = {_row_key(row): row for row in json.loads(path.read_text())["rows"]}
        self.about = about

    def add(self, layer, rows, method, budget, iterations, change, converged, seconds) -> None:
        if self.path is None:
            return
        from sae_paper.data.cache import atomic_write
        from sae_paper.report.provenance import hardware

        row = {"layer": layer, "rows": rows, "method": method, "budget": budget, "iterations": int(iterations),
               "change": float(change), "converged": bool(converged), "seconds": round(float(seconds), 1),
               "measured": time.strftime("%Y-%m-%d")}
        self.rows[_row_key(row)] = row
        payload = {**self.about, "tol": 1e-4, "machine": hardware(), "rows": sorted(self.rows.values(), key=_row_key)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n"))


def _row_key(row) -> tuple:
    return row["layer"], row["rows"], row["method"], row["budget"]


def _cached(run) -> bool:
    from sae_paper.data.activations import complete

    spec = run.harvest_spec("train")
    return complete(spec.folder() / str(run.site), spec.n_tokens)


if __name__ == "__main__":
    main()
