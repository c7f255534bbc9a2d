"""What this build cost, from its own records: the table the budget plan page includes.

Hand-written timings go stale and travel badly: the same commit built in 19 minutes on one
2-core machine and in 39 on another, whose cores lack AVX-512. So the budget page states no
time of its own. The runner writes ``generated/costs.md`` after the notebooks ran: each step
of this build with its wall time, each chapter's provenance sections (where its time went),
and the machine that measured them (CPU model and vector extensions, from the chapters'
provenance). A step this build did not measure is not listed; the ``long`` profile's times
appear only when its last run's cell timings are in this cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sae_paper.book.progress import load_timings

COSTS_PAGE = "costs.md"
"""Under ``book/generated``; ``book/budget.md`` includes it."""
SHOWN_SECTIONS = 6
"""A chapter's longest provenance sections named beside its time."""


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value < 600 else f"{value / 60:.1f} min"


def _provenance(generated: Path, notebook: str) -> dict | None:
    path = generated / "provenance" / f"{notebook}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def machine_line(hardware: Mapping) -> str:
    """The machine a provenance record was measured on, in words."""
    extensions = ", ".join(hardware.get("vector_extensions") or []) or "no vector extensions recorded"
    return (f"{hardware.get('cpu_model', hardware.get('machine', 'an unrecorded CPU'))} ({extensions}), "
            f"{hardware.get('cpus_usable', '?')} usable cores, torch on {hardware.get('torch_threads', '?')} thread(s)")


def costs_markdown(generated: Path, notebooks: Sequence[str], steps: Mapping[str, float], profile: str,
                   reused: Sequence[str] = ()) -> str:
    """The cost table of a build: ``steps`` the runner timed itself (harvest, feature browser, and, when notebooks ran
    in lanes side by side, ``"notebooks side by side"``, their span, and ``"lanes"``), each notebook's wall time and
    longest sections from its provenance record, and the machines those records name. A notebook this build
    ``reused`` shows the run that made it, marked, and is left out of the total (this build spent nothing on it)."""
    records = {name: _provenance(generated, name) for name in notebooks}
    rows, machines, total = [], {}, 0.0
    if "harvest" in steps:
        rows.append(f"| harvest, every text up front | {_seconds(steps['harvest'])} | |")
        total += steps["harvest"]
    for name in notebooks:
        info = records[name]
        if info is None:
            continue
        sections = sorted(info.get("sections", {}).items(), key=lambda item: -item[1])[:SHOWN_SECTIONS]
        where = "; ".join(f"{section} {_seconds(seconds)}" for section, seconds in sections)
        label = f"{name} (reused: the run of {info.get('started', '?')})" if name in reused else name
        rows.append(f"| {label} | {_seconds(info.get('wall_seconds', 0.0))} | {where.replace('|', '/')} |")
        total += 0.0 if name in reused else info.get("wall_seconds", 0.0)
        machines.setdefault(machine_line(info.get("hardware", {})), []).append(name)
    side_by_side = steps.get("notebooks side by side")
    if side_by_side is not None:  # the notebooks' own times overlap: the build waited for the span, not their sum
        executed = sum((records[n] or {}).get("wall_seconds", 0.0) for n in notebooks if n not in reused)
        total += side_by_side - executed
        rows.append(f"| notebooks, in {steps.get('lanes', 2):.0f} lanes side by side | {_seconds(side_by_side)} | "
                    f"from the first start to the last end; the notebooks' own times above, each on its lane's "
                    f"share of the cores, add up to {_seconds(executed)} |")
    if "feature browser" in steps:
        rows.append(f"| feature browser | {_seconds(steps['feature browser'])} | |")
        total += steps["feature browser"]
    if not rows:
        return "No step of this build recorded its time.\n"
    first = next((info for info in records.values() if info), {})
    lines = [f"Measured in this build: profile `{profile}`, commit `{str(first.get('commit', '?'))[:12]}`, started "
             f"{first.get('started', '?')}, on "
             + "; ".join(f"{machine}" + (f" ({', '.join(names)})" if len(machines) > 1 else "")
                         for machine, names in machines.items()) + ".",
             "", "| step | wall time | where the time went (the chapter's longest provenance sections) |",
             "|---|---:|---|", *rows,
             f"| **total** | **{_seconds(total)}** | setup and the HTML build are not included"
             + (", nor the reused notebooks" if reused else "") + " |", ""]
    long_runs = {name: load_timings("long", name) for name in notebooks}
    measured = {name: sum(cells) for name, cells in long_runs.items() if cells}
    if measured and profile != "long":
        lines += ["The `long` profile's last run with this cache (cell times it left; the machine that ran it is not "
                  "recorded): " + ", ".join(f"{name} {_seconds(s)}" for name, s in measured.items())
                  + f"; {_seconds(sum(measured.values()))} in all.", ""]
    return "\n".join(lines)


def write_costs_page(generated: Path, notebooks: Sequence[str], steps: Mapping[str, float], profile: str,
                     reused: Sequence[str] = ()) -> Path:
    """Write :func:`costs_markdown` to ``generated/costs.md``."""
    path = generated / COSTS_PAGE
    path.write_text(costs_markdown(generated, notebooks, steps, profile, reused))
    return path


LLM_SCORER_PAGE = "local-llm-scorers.md"
"""Under ``book/generated``; ``book/budget.md`` includes it."""
LLM_SCORER_RECORD = Path("docs") / "measurements" / "local-llm-scorers.json"
"""The record ``benchmarks/local_llm_scorers.py`` wrote (committed with the measurement), relative to the profiles'
parent folder (the checkout)."""
ICA_PAGE = "ica-convergence.md"
"""Under ``book/generated``; ``book/budget.md`` includes it."""
ICA_RECORD = Path("docs") / "measurements" / "ica-convergence.json"
"""The record ``benchmarks/ica_convergence.py --out`` wrote, relative to the checkout."""


def write_measured_section(generated: Path, record: Path, page: str, render: Callable[[dict], str], how: str) -> Path:
    """A budget-page section made from a committed measurement ``record`` (JSON) by ``render``; when the record
    is absent, one line saying so and ``how`` to make it. Measurements too long for a build are run apart and
    committed; the page shows what was measured, never a number typed in by hand."""
    path = generated / page
    if record.is_file():
        text = render(json.loads(record.read_text()))
    else:
        text = f"No measurement in this checkout ({record.name} is absent): {how}.\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_llm_scorer_page(generated: Path, record: Path) -> Path:
    """The budget page's section on a real LLM scorer (:func:`sae_paper.chapters.autointerp_llm.budget_section`)."""
    from sae_paper.chapters.autointerp_llm import budget_section

    return write_measured_section(generated, record, LLM_SCORER_PAGE, budget_section,
                                  "run `python benchmarks/local_llm_scorers.py` after `scripts/setup.sh --with-local-llm`")


def write_ica_page(generated: Path, record: Path, autointerp: Mapping | None) -> Path:
    """The budget page's section on ICA at convergence (:func:`ica_section`), priced at ``autointerp``'s sizes
    (notebook 02's parameters of this build; None: the per-fit figures alone)."""
    return write_measured_section(generated, record, ICA_PAGE, lambda r: ica_section(r, autointerp),
                                  "run `python benchmarks/ica_convergence.py --out docs/measurements/ica-convergence.json`")


def ica_section(record: Mapping, autointerp: Mapping | None = None) -> str:
    """The measured fits as a table, then what a converged ICA would cost this build at least: the cheapest fit a
    row that met FastICA's tolerance (the least disturbed by whatever else ran), scaled linearly in rows to the
    SAE's own training rows (``n_tokens``), times one fit per layer and seed (the book fits ICA per seed)."""
    rows = record["rows"]
    tol = record.get("tol", 1e-4)
    lines = [f"{record.get('model', '?')} on {record.get('source', '?')}, seed {record.get('seed', 0)}, BLAS on one "
             f"thread, measured on {record.get('machine', {}).get('cpu_model', '?')} "
             f"({', '.join(x for x in record.get('machine', {}).get('vector_extensions', []) if x.startswith('avx512')) or 'no AVX-512'}). "
             f"*change* is FastICA's stopping criterion (how far one more iteration moves an unmixing row), converged "
             f"below {tol:g}; for Picard it is that criterion at Picard's answer.", "",
             "| layer | rows | method | iterations (limit) | change | converged | seconds |",
             "|---:|---:|---|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['rows']:,} | {r['method']} | {r['iterations']:,} ({r['budget']:,}) | "
                     f"{r['change']:.2e} | {'yes' if r['converged'] else 'no'} | {r['seconds']:,.0f} |")
    converged = [r for r in rows if r["converged"]]
    lines.append("")
    if not converged:
        lines.append("No fit measured here met the tolerance.")
        return "\n".join(lines) + "\n"
    fastest = min(converged, key=lambda r: r["seconds"] / r["rows"])
    per_row = fastest["seconds"] / fastest["rows"]
    text = (f"The cheapest fit that met the tolerance cost {per_row * 1e3:.1f} ms a row ({fastest['method']} at layer "
            f"{fastest['layer']}: {fastest['seconds']:,.0f} s on {fastest['rows']:,} rows; slower rows measured a busier "
            "machine too).")
    if autointerp and autointerp.get("n_tokens"):
        n_rows, fits = int(autointerp["n_tokens"]), len(autointerp.get("layers", ())) * int(autointerp.get("n_seeds", 1))
        text += (f" On the SAE's own {n_rows:,} training rows that is at least {per_row * n_rows / 60:.1f} min a fit, "
                 f"and {per_row * n_rows * fits / 60:.0f} min for this build's {fits} fits (one per layer and seed), "
                 f"against {autointerp.get('ica_max_iter', '?')} FastICA iterations on "
                 f"{int(autointerp.get('ica_rows', 0)):,} rows today.")
    lines.append(text)
    return "\n".join(lines) + "\n"
