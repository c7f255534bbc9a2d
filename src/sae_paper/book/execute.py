"""Executing one notebook of the book: Jupytext-convert it, run it with papermill on this interpreter, one-line errors.

:func:`execute_task` is what the runner (:mod:`sae_paper.book.runner`) does per notebook, in its own
process or in a lane's (:func:`execute_lane`, :mod:`sae_paper.book.lanes`). The kernel is a
``python3`` kernelspec that runs *this* interpreter (written in the staging folder and put first on
``JUPYTER_PATH``, so a stale user-level ``python3`` kernel cannot shadow it); the notebook writes its
claim records and provenance to the staging folder (``SAE_PAPER_BOOK_OUTPUT``) and the library's
messages to ``logs/<notebook>.log`` there, not to its cells.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sae_paper.book.pages import anchor_claim_sections, show_parameters_once, widen_notebook_page
from sae_paper.book.profiles import BookError
from sae_paper.data.cache import LOG_ENV
from sae_paper.data.paths import BOOK_OUTPUT_ENV

KERNEL_NAME = "python3"
LOGS = "logs"
"""Where each notebook's library messages go (``<book output>/logs/<notebook>.log``), instead of its cells."""


def _kernelspec(staging: Path) -> Path:
    """A ``python3`` kernelspec running this interpreter, in ``staging/jupyter`` (for ``JUPYTER_PATH``).

    The kernel logs only errors: its one warning on every start (ipykernel 7 on a loopback TCP
    connection without CurveZMQ keys) would otherwise break the runner's progress lines five
    times a build. What the notebooks print or warn goes to their cells, not to this log.
    """
    folder = staging / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "--log-level=ERROR", "-f", "{connection_file}"],
            "display_name": "Python 3 (sae-paper)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return staging / "jupyter"


class environment:
    """Set environment variables for the kernels, restoring the old values afterwards."""

    def __init__(self, **values: str):
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return False


def execute_task(task: Mapping[str, Any]) -> None:
    """Execute one notebook of a build into ``task["out"]`` with its progress on the terminal (``task``: what
    :func:`run_book` prepares: name, source, parameters, profile, staging, cwd, out; ``live``: a redrawn bar on a
    terminal, the default, or plain lines, as in a lane whose neighbour draws too)."""
    from sae_paper.book.progress import NotebookProgress, load_timings

    name = task["name"]
    progress = NotebookProgress(name, load_timings(task["profile"], name), live=task.get("live"))
    _execute(Path(task["source"]), Path(task["out"]) / f"{name}.ipynb", task["parameters"],
             staging=Path(task["staging"]), cwd=Path(task["cwd"]), progress=progress)


def execute_lane(task_file: str) -> None:
    """A lane's process (:class:`~sae_paper.book.lanes.LaneProcess`): execute the notebook of ``task_file``; on a
    failure, leave its one-line error beside the task (``NAME.error``) for the runner and exit with 1."""
    path = Path(task_file)
    task = json.loads(path.read_text())
    try:
        execute_task(task)
    except BookError as error:
        path.with_suffix(".error").write_text(str(error))
        sys.exit(1)


def _execute(source: Path, output: Path, parameters: Mapping[str, Any], *, staging: Path, cwd: Path,
             progress=None):
    """Jupytext-convert ``source`` and execute it with papermill into ``output``; one-line error on failure.

    ``progress``: a :class:`~sae_paper.book.progress.NotebookProgress` shown on the terminal while it runs.
    Returns the executed notebook (its cells carry papermill's timings).
    """
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from sae_paper.book.progress import ENGINE

    name = source.stem
    notebook = jupytext.read(source)
    anchor_claim_sections(notebook.cells)
    converted = staging / "input" / f"{name}.ipynb"
    converted.parent.mkdir(exist_ok=True)
    jupytext.write(notebook, converted)
    jupyter_path = os.pathsep.join(filter(None, [str(_kernelspec(staging)), os.environ.get("JUPYTER_PATH")]))
    log_file = output.parent / LOGS / f"{name}.log"  # the library's messages: the build's log, not the page
    log_file.parent.mkdir(exist_ok=True)
    try:
        with environment(JUPYTER_PATH=jupyter_path, **{BOOK_OUTPUT_ENV: str(output.parent), LOG_ENV: str(log_file)}):
            executed = papermill.execute_notebook(
                str(converted), str(output), parameters=dict(parameters), kernel_name=KERNEL_NAME, language="python",
                cwd=str(cwd), engine_name=ENGINE, progress=progress, progress_bar=False, log_output=False,
            )
        show_parameters_once(executed.cells, str(parameters.get("profile", "")))
        widen_notebook_page(executed)
        nbformat.write(executed, output)
        return executed
    except PapermillExecutionError as error:
        first = next((line.strip() for line in (error.source or "").splitlines() if line.strip()), "")
        number = next((i for i, cell in enumerate(notebook.cells, 1) if cell.source == error.source), None)
        where = f"cell {number} of {source.name}" if number else f"cell {error.cell_index} of the executed notebook"
        raise BookError(
            f"notebook {name} failed in {where} (starting {first[:60]!r}): {error.ename}: "
            f"{' '.join(str(error.evalue).split())[:300]}; the executed notebook is {output}; the previous book is kept"
        ) from None
    except Exception as error:  # kernel died, could not start, ...: still one line naming the notebook
        raise BookError(f"notebook {name} could not be executed: {type(error).__name__}: "
                        f"{' '.join(str(error).split())[:300]}; partial output in {output.parent}; "
                        "the previous book is kept") from None
