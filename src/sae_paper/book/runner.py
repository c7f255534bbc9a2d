"""The book runner: ``sae-paper book --profile NAME [-p key=value ...] [--notebooks NAME ...]``.

The book's notebooks live in ``notebooks/`` as Jupytext py:percent files (no ``.ipynb`` in
git). A profile (``profiles/NAME.yaml``) maps each notebook's name to its parameters;
``-p key=value`` (value read as YAML) overrides one on top, for every selected notebook
that has it, or ``-p NOTEBOOK.key=value`` for one. The runner then

1. checks every parameter: a registered notebook's parameters become its study
   dataclass (e.g. :class:`~sae_paper.chapters.training.TrainingStudy`), which builds every
   :class:`~sae_paper.core.config.RunConfig` the notebook will train, so a typo or an
   impossible layer fails before anything runs (``--validate-only`` stops here);
2. reinstates, without executing it, each notebook whose inputs (its source, parameters, profile,
   the computation versions and the library's source) are those of a run it stored before, and
   harvests only for the others (:mod:`sae_paper.book.reuse`; ``--recompute`` executes them all);
3. executes each notebook left with papermill in a staging folder (:mod:`sae_paper.book.execute`),
   showing its progress on the terminal (:mod:`sae_paper.book.progress`); notebooks that do not
   depend on each other run side by side, in two lanes of one thread each on a 2-core machine
   (:mod:`sae_paper.book.lanes`; ``--lanes 1``: one after another);
4. only when every notebook succeeded, moves the executed notebooks, claim records and
   provenance into ``book/generated/`` and writes the pages made from them: the scoreboard
   (``scoreboard.md`` and ``scoreboard.json``), how each verdict is decided (``rules.md``, from the rules
   registry: :mod:`sae_paper.book.rules_page`), the feature browser (``features/``,
   :mod:`sae_paper.book.feature_browser`, reinstated when its inputs are unchanged) and the intro's
   chapter list (``chapters.md``, from the toc: :mod:`sae_paper.book.pages`);
5. builds the HTML with ``jupyter-book build`` (execution off: the notebooks already ran)
   into a temporary folder and swaps it in for ``book/_build`` when the build succeeded.

``--recompute KIND|all`` (:func:`sae_paper.data.cache.recompute_env`) makes every cache entry of
those kinds made before this build computed again, by the harvest and by the notebooks.

A failing cell stops the run with one line naming the notebook, the cell and the error;
``book/generated`` and ``book/_build/html`` keep the previous successful run's output,
and the partly executed notebook is kept in the staging folder the error names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sae_paper.book.costs_page import (
    ICA_RECORD,
    LLM_SCORER_RECORD,
    write_costs_page,
    write_ica_page,
    write_llm_scorer_page,
)
from sae_paper.book.execute import LOGS, environment, execute_task
from sae_paper.book.harvest import book_harvest_requests, harvest_for_book
from sae_paper.book.lanes import LaneProcess, lane_count, notebook_waits, run_lanes, threads_per_lane
from sae_paper.book.pages import WIDE_PAGE, write_chapter_list
from sae_paper.book.profiles import (
    BookError,
    describe_configs,
    load_profile,
    parse_overrides,
    profile_path,
    resolve_parameters,
)
from sae_paper.book.reuse import OUTPUT_FOLDERS, ReuseCache, browser_key, notebook_files, notebook_key, tree_files
from sae_paper.book.rules_page import write_rules_page
from sae_paper.data import cache
from sae_paper.data.paths import book_dir, repo_root

GENERATED = "generated"
SCOREBOARD = "scoreboard.md"
SCOREBOARD_JSON = "scoreboard.json"
ROUNDING_CHECK = "checks/rounding.yaml"
"""The book's recorded float-rounding check, relative to the book folder (see :func:`write_scoreboard`)."""


@dataclass(frozen=True)
class BookLayout:
    """Where the runner reads notebooks and profiles and writes the book."""

    notebooks_dir: Path
    book_dir: Path
    profiles_dir: Path

    @classmethod
    def default(cls) -> "BookLayout":
        root = repo_root()
        return cls(root / "notebooks", book_dir(), root / "profiles")

    def notebooks(self) -> list[str]:
        """The names of the notebooks present (``notebooks/*.py``), sorted."""
        return sorted(path.stem for path in self.notebooks_dir.glob("*.py") if not path.name.startswith("_"))


@dataclass
class BookResult:
    profile: str
    notebooks: list[str]
    parameters: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds per notebook, plus 'build' for the HTML."""
    html: Path | None = None
    reused: list[str] = field(default_factory=list)
    """Notebooks not executed: their inputs were unchanged, their earlier output was reinstated."""
    lanes: int = 1
    """Notebooks executed side by side (:mod:`sae_paper.book.lanes`)."""



# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


def run_book(
    profile: str | Path,
    overrides: Sequence[str] = (),
    notebooks: Sequence[str] | None = None,
    *,
    layout: BookLayout | None = None,
    validate_only: bool = False,
    build: bool = True,
    log: Callable[[str], None] = print,
    recompute: Sequence[str] = (),
    reuse: bool = True,
    lanes: int | None = None,
    rehearse: bool = False,
    plan: bool = False,
    plan_nproc: Sequence[int] = (1, 2, 8),
) -> BookResult:
    """Validate, execute the notebooks and build the book (see the module docstring).

    ``reuse``: reinstate a notebook's earlier output instead of executing it when its inputs are
    unchanged, and the same for the feature browser (:mod:`sae_paper.book.reuse`); off under ``recompute``.
    ``lanes``: notebooks executed side by side (None: one per core, at most 2; :mod:`sae_paper.book.lanes`).
    ``rehearse``: run the profile's rehearsal instead (:mod:`sae_paper.book.rehearsal`: every budget shrunk, every
    code path kept). ``plan``: print what the profile would compute and how long it would take on this machine's
    device and on each of ``plan_nproc`` GPUs, and compute nothing (:mod:`sae_paper.book.plan`).
    """
    from sae_paper.data.cache import RECOMPUTE_ENV, recompute_env

    if recompute:
        with environment(**{RECOMPUTE_ENV: recompute_env(list(recompute))}):
            return run_book(profile, overrides, notebooks, layout=layout, validate_only=validate_only, build=build,
                            log=log, reuse=False, lanes=lanes, rehearse=rehearse, plan=plan, plan_nproc=plan_nproc)
    if plan and validate_only:
        raise BookError("--plan and --validate-only: choose one (--plan validates too)")
    if plan and any(not isinstance(n, int) or n < 1 for n in plan_nproc):
        raise BookError(f"--plan-gpus takes positive integers, got {', '.join(map(str, plan_nproc))}")
    layout = layout or BookLayout.default()
    present = layout.notebooks()
    if not present:
        raise BookError(f"no notebooks (*.py) in {layout.notebooks_dir}")
    selected = list(notebooks) if notebooks else present
    unknown = [name for name in selected if name not in present]
    if unknown:
        raise BookError(f"no notebook {', '.join(unknown)} in {layout.notebooks_dir} (present: {', '.join(present)})")
    path = profile_path(profile, layout.profiles_dir)
    profile_name = path.stem
    entries = load_profile(path)
    if rehearse:
        from sae_paper.book.rehearsal import SUFFIX, rehearsal_profile

        entries, profile_name = rehearsal_profile(entries), profile_name + SUFFIX
    strays = sorted(set(entries) - set(present))
    if strays:  # a typo, or a notebook still being written: say so, but it does not stop the others
        log(f"note: profile {profile_name} has entries for notebook(s) not in {layout.notebooks_dir}: {', '.join(strays)}")
    parameters = resolve_parameters(entries, selected, parse_overrides(overrides))
    lane_count(lanes, len(selected))  # a bad --lanes fails here, before anything runs
    result = BookResult(profile_name, selected, parameters)
    if plan:
        from sae_paper.book.plan import print_plan

        print_plan(parameters, book_harvest_requests, nproc=plan_nproc, log=log)
        return result
    if validate_only:
        for name in selected:
            for line in describe_configs(name, parameters[name]):
                log(line)
        log(f"profile {profile_name}: valid for {', '.join(selected)}")
        return result

    staging = Path(tempfile.mkdtemp(prefix="sae-paper-book-"))
    out = staging / GENERATED
    out.mkdir()
    executed_cache = ReuseCache("book-notebooks")
    keys = {name: notebook_key((layout.notebooks_dir / f"{name}.py").read_text(), parameters[name], profile_name)
            for name in selected}
    for name in selected:
        stored = executed_cache.restore(name, keys[name], out) if reuse else None
        if stored is not None:
            result.reused.append(name)
            log(f"{name}: reused, not executed (its source, parameters and library are those of the run stored "
                f"{stored['stored']})")
    to_run = [name for name in selected if name not in result.reused]
    started = time.perf_counter()
    for line in harvest_for_book({name: parameters[name] for name in to_run}):
        log(f"harvest: {line}")
    steps = {"harvest": time.perf_counter() - started}  # what the costs page shows besides the notebooks
    if steps["harvest"] > 1:
        log(f"harvest: done in {steps['harvest']:.0f} s")

    def store(name: str) -> None:
        executed_cache.store(name, keys[name], out, [*notebook_files(name), f"{LOGS}/{name}.log"])

    from sae_paper.book.rehearsal import rehearsal_server

    with rehearsal_server(parameters) as url:  # a rehearsal's openai-compatible backends talk to it (keys made before)
        if url:
            log(f"autointerp: the openai-compatible backends talk to the local test server at {url}")
        _run_notebooks(to_run, parameters, out, layout=layout, profile_name=profile_name, lanes=lanes, result=result,
                       steps=steps, log=log, store=store)
    log(f"notebooks executed: {', '.join(to_run) or 'none'}; reused: {', '.join(result.reused) or 'none'}")
    _install(out, layout.book_dir / GENERATED, selected)
    write_scoreboard(layout.book_dir / GENERATED)
    _export_saes(layout.book_dir / GENERATED, {name: parameters[name] for name in selected}, log)
    started = time.perf_counter()
    _feature_browser(layout.book_dir / GENERATED, log, reuse=reuse)
    steps["feature browser"] = time.perf_counter() - started
    write_costs_page(layout.book_dir / GENERATED, present, steps, profile_name, result.reused)
    write_llm_scorer_page(layout.book_dir / GENERATED, layout.profiles_dir.parent / LLM_SCORER_RECORD)
    write_ica_page(layout.book_dir / GENERATED, layout.profiles_dir.parent / ICA_RECORD, parameters.get("02_autointerp"))
    write_rules_page(layout.book_dir / GENERATED)
    if (layout.book_dir / "_toc.yml").is_file():  # a book folder without a toc has no chapters to list
        write_chapter_list(layout.book_dir, layout.notebooks_dir, layout.book_dir / GENERATED)
    if build:
        started = time.perf_counter()
        result.html = build_html(layout.book_dir, staging / "build")
        result.seconds["build"] = time.perf_counter() - started
        log(f"book built in {result.seconds['build']:.0f} s: {result.html / 'index.html'}")
    shutil.rmtree(staging, ignore_errors=True)
    return result


def _run_notebooks(to_run: Sequence[str], parameters: Mapping[str, Mapping[str, Any]], out: Path, *, layout: BookLayout,
                   profile_name: str, lanes: int | None, result: BookResult, steps: dict[str, float],
                   log: Callable[[str], None], store: Callable[[str], None]) -> None:
    """Execute ``to_run`` into ``out`` (the staging folder's ``generated``): one after another, or in lanes side by side
    (:mod:`sae_paper.book.lanes`); each one that ends well has its cell timings kept and its output ``store``d."""
    from sae_paper.book.progress import load_timings, save_timings

    staging = out.parent

    def done(name: str, seconds: float) -> None:
        import nbformat

        save_timings(profile_name, name, nbformat.read(out / f"{name}.ipynb", as_version=4))
        store(name)
        result.seconds[name] = seconds
        messages = out / LOGS / f"{name}.log"
        count = len(messages.read_text().splitlines()) if messages.is_file() else 0
        log(f"{name}: done in {seconds:.0f} s"
            + (f"; {count} library message(s) in {GENERATED}/{LOGS}/{name}.log" if count else ""))

    task = {"profile": profile_name, "staging": str(staging), "cwd": str(layout.notebooks_dir), "out": str(out)}
    tasks = {name: {**task, "name": name, "source": str(layout.notebooks_dir / f"{name}.py"),
                    "parameters": {**parameters[name], "profile": profile_name}} for name in to_run}
    result.lanes = lane_count(lanes, len(to_run)) if to_run else 1
    if result.lanes == 1:
        for name in to_run:
            started = time.perf_counter()
            log(f"{name}: executing with profile {profile_name} ...")
            execute_task(tasks[name])
            done(name, time.perf_counter() - started)
    else:
        threads = threads_per_lane(result.lanes)
        log(f"notebooks: {result.lanes} lanes side by side, {threads} thread(s) each (--lanes 1: one after another)")

        def start(name: str) -> LaneProcess:
            log(f"{name}: executing with profile {profile_name} ...")
            path = staging / "lanes" / f"{name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({**tasks[name], "live": False}))
            return LaneProcess(f"from sae_paper.book.execute import execute_lane; execute_lane({str(path)!r})", threads)

        def failure(name: str, code: int) -> str:
            error = staging / "lanes" / f"{name}.error"
            return error.read_text() if error.is_file() else f"notebook {name}: its lane ended with exit code {code}"

        expected = {name: sum(load_timings(profile_name, name) or []) for name in to_run}
        started = time.perf_counter()
        run_lanes(to_run, notebook_waits(to_run), start, lanes=result.lanes, expected_seconds=expected,
                  on_done=done, failure=failure)
        steps.update({"notebooks side by side": time.perf_counter() - started, "lanes": result.lanes})


def _feature_browser(generated: Path, log: Callable[[str], None], *, reuse: bool) -> None:
    """Write ``generated/features/``, or reinstate the one made from the same inputs (:func:`~sae_paper.book.reuse.browser_key`)."""
    from sae_paper.book.feature_browser import FOLDER, browser_inputs, write_browser  # torch and the model code

    started = time.perf_counter()
    key = browser_key(*browser_inputs(generated))
    browsers = ReuseCache("book-browser")
    shutil.rmtree(generated / FOLDER, ignore_errors=True)
    if reuse and browsers.restore(FOLDER, key, generated) is not None:
        log("feature browser: reused, not rebuilt (its records, SAEs and fragments are unchanged)")
        return
    write_browser(generated, log=log)
    browsers.store(FOLDER, key, generated, tree_files(generated / FOLDER, generated))
    log(f"feature browser written in {time.perf_counter() - started:.0f} s")


def _export_saes(generated: Path, parameters: Mapping[str, Mapping[str, Any]], log: Callable[[str], None]) -> None:
    """SAELens copies of notebook 01's main SAE and notebook 03's IOI dictionaries in
    ``generated/saelens/<notebook>/``, so that they can be used outside this library (the
    notebooks say where; :mod:`sae_paper.interop.saelens` documents the format)."""
    from sae_paper.book.exports import export_book_saes

    for line in export_book_saes(generated, parameters):
        log(line)


def _install(staged: Path, target: Path, notebooks: Sequence[str]) -> None:
    """Move the executed notebooks and their records from the staging folder into ``book/generated``."""
    target.mkdir(parents=True, exist_ok=True)
    for folder in OUTPUT_FOLDERS:
        (target / folder).mkdir(exist_ok=True)
    (target / LOGS).mkdir(exist_ok=True)
    for name in notebooks:
        shutil.move(str(staged / f"{name}.ipynb"), str(target / f"{name}.ipynb"))
        if (staged / LOGS / f"{name}.log").is_file():
            shutil.move(str(staged / LOGS / f"{name}.log"), str(target / LOGS / f"{name}.log"))
        for folder in OUTPUT_FOLDERS:
            new, old = staged / folder / f"{name}.json", target / folder / f"{name}.json"
            if new.is_file():
                shutil.move(str(new), str(old))
            elif old.is_file():
                old.unlink()  # this run recorded nothing: the old records no longer describe the notebook


def write_scoreboard(generated: Path) -> Path:
    """Render ``generated/scoreboard.md`` from the claim records, with each notebook's provenance, and the same
    records as ``generated/scoreboard.json`` (one object per claim, :func:`sae_paper.report.scoreboard.scoreboard_rows`).
    The book's recorded float-rounding check (``checks/rounding.yaml`` beside ``generated``) marks the claims it
    flipped."""
    from sae_paper.report.claims import load_claims, read_records
    from sae_paper.report.scoreboard import load_rounding_check, render_scoreboard, scoreboard_rows

    claims = load_claims()
    rounding = load_rounding_check(generated.parent / ROUNDING_CHECK)
    rows = scoreboard_rows(read_records(generated / "claims"), claims, rounding)
    (generated / SCOREBOARD_JSON).write_text(json.dumps({"claims": rows}, indent=1, ensure_ascii=False) + "\n")
    text = render_scoreboard(generated / "claims", claims, json_name=SCOREBOARD_JSON, rounding=rounding)
    runs = []
    for path in sorted((generated / "provenance").glob("*.json")):
        info = json.loads(path.read_text())
        dirty = " + uncommitted changes" if info.get("dirty") else ""
        older = sum(row["entries"] for row in info.get("cached", []) if row["relation"] != "this commit")
        stale = (f", **{older} cached result(s) computed at other commits** (listed in its provenance cell)"
                 if older else "")
        runs.append(f"- **{info['notebook']}**: profile `{info['profile']}`, commit `{str(info['commit'])[:12]}`{dirty}, "
                    f"started {info['started']}, {info.get('wall_seconds', 0):.0f} s{stale}")
    if runs:
        text += "\n## Runs behind these records\n\n" + "\n".join(runs) + "\n"
    path = generated / SCOREBOARD
    path.write_text(WIDE_PAGE + text)
    return path


def build_html(book_dir: Path, staging: Path) -> Path:
    """``jupyter-book build`` into ``staging``, then swap the result in as ``book_dir/_build``."""
    staging.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
               "build", str(book_dir), "--path-output", str(staging)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not (staging / "_build" / "html" / "index.html").is_file():
        tail = " | ".join(line for line in (done.stdout + done.stderr).splitlines()[-6:] if line.strip())
        raise BookError(f"jupyter-book build failed (exit {done.returncode}): {tail[:500]}; the previous HTML is kept")
    target = book_dir / "_build"
    cache.replace_folder(target, lambda fresh: shutil.move(str(staging / "_build"), str(fresh)))
    return target / "html"
