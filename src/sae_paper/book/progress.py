"""Progress of the book's notebooks on the terminal: cells done of total, elapsed time, an estimate of what is left.

A notebook of the default book runs for minutes, sometimes in one cell; without this the
runner would print one line per notebook and then nothing. While a notebook executes,
:class:`NotebookProgress` shows, on stderr and never in the rendered pages,

    02_autointerp ███████░░░░░░░░ 12/31 code cells, 1m20s elapsed, ~3m05s left (last run 4m25s)

refreshed every second on a terminal (a tqdm bar), or as a plain line every ``every`` seconds
when stderr is a log file (CI, ``nohup``, ``| tee``): on each cell's start and end if ``every``
has passed since the last line, and in between as a heartbeat, so a cell that runs for minutes
still shows its clock moving (``every=0``: a line at every event and no heartbeat).

The estimate is the last successful run's time per cell (same profile, same notebook;
:func:`load_timings` / :func:`save_timings`, kept in the cache): the cells still to run, minus
the time already spent in the running one.
When the notebook's cells changed since, it falls back to the last run's total time.

:class:`ProgressEngine` is papermill's ``nbclient`` engine with this reporter attached to its
cell callbacks; :func:`sae_paper.book.execute.execute_task` selects it by name (:data:`ENGINE`).
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from papermill.engines import NBClientEngine, papermill_engines

from sae_paper.data.paths import cache_dir

ENGINE = "sae-paper-progress"


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def timings_path(profile: str, notebook: str) -> Path:
    """Where the last successful run of ``notebook`` with ``profile`` left its cell timings."""
    return cache_dir("book-timings") / f"{profile}--{notebook}.json"


def load_timings(profile: str, notebook: str) -> list[float] | None:
    """The seconds each cell took in the last successful run (None: no such run, or an unreadable file)."""
    try:
        cells = json.loads(timings_path(profile, notebook).read_text())["cells"]
        return [float(s) for s in cells]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_timings(profile: str, notebook: str, executed) -> list[float]:
    """Keep the cell durations papermill recorded in an executed notebook (``nbformat`` node) for the next estimate."""
    cells = [float(cell.metadata.get("papermill", {}).get("duration") or 0.0) for cell in executed.cells]
    return write_timings(profile, notebook, cells)


def write_timings(profile: str, notebook: str, cells: Sequence[float]) -> list[float]:
    """Keep ``cells`` (seconds per cell) as the estimate of the next run of ``notebook`` with ``profile``."""
    cells = [float(s) for s in cells]
    timings_path(profile, notebook).write_text(json.dumps({"cells": cells, "total": sum(cells)}) + "\n")
    return cells


class NotebookProgress:
    """The terminal line for one executing notebook (see the module docstring)."""

    def __init__(self, name: str, previous: Sequence[float] | None = None, *, stream: IO[str] | None = None,
                 live: bool | None = None, every: float = 20.0, clock=time.perf_counter):
        self.name = name
        self.previous = list(previous) if previous else None
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.every = every
        self.clock = clock
        self.cells: list[str] = []
        self.code_total = self.code_done = 0
        self.current: int | None = None
        """The cell running now (an index into :attr:`cells`)."""
        self.next_cell = 0
        """The first cell not finished (cells run in order)."""
        self.started = self.cell_began = self.last_line = clock()
        self._bar = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the heartbeat thread and papermill's callbacks both draw
        self._thread: threading.Thread | None = None

    # --- what papermill tells us -------------------------------------------------------

    def start(self, cell_types: Sequence[str]) -> None:
        self.cells = list(cell_types)
        self.code_total = sum(t == "code" for t in self.cells)
        self.started = self.last_line = self.clock()
        if self.live:
            from tqdm.auto import tqdm

            size = shutil.get_terminal_size((100, 20))  # also for a terminal that reports a size of 0 (tqdm then hides)
            self._bar = tqdm(total=self.code_total, desc=self.name, unit="cell", file=self.stream, leave=True,
                             ncols=size.columns, nrows=size.lines,
                             bar_format="{desc} {bar:16} {n_fmt}/{total_fmt} code cells{postfix}")
        if self.live or self.every > 0:
            self._thread = threading.Thread(target=self._refresh, daemon=True)
            self._thread.start()
        self._show()

    def cell_started(self, index: int) -> None:
        self.current, self.cell_began = index, self.clock()
        self._show()

    def cell_done(self, index: int) -> None:
        if index < len(self.cells) and self.cells[index] == "code":
            self.code_done += 1
        self.current, self.next_cell = None, index + 1
        self._show()

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._bar is not None:
            self._bar.set_postfix_str(self.status(), refresh=True)
            self._bar.close()
        else:
            self.stream.write(f"{self.name}: {self.code_done}/{self.code_total} code cells, {self.status()}\n")
            self.stream.flush()

    # --- what we show ------------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds the last run spent on the cells still to run (less what the running cell already took)."""
        if not self.previous:
            return None
        now = self.clock()
        if len(self.previous) != len(self.cells):  # the notebook changed: its last total is all we know
            return max(0.0, sum(self.previous) - (now - self.started))
        if self.current is None:
            return sum(self.previous[self.next_cell:])
        return sum(self.previous[self.current + 1:]) + max(0.0, self.previous[self.current] - (now - self.cell_began))

    def status(self) -> str:
        elapsed = self.clock() - self.started
        text = f"{_clock(elapsed)} elapsed"
        left = self.remaining()
        if left is None:
            return text + " (no earlier run to estimate from)"
        return text + f", ~{_clock(left)} left (last run {_clock(sum(self.previous))})"

    def _show(self) -> None:
        with self._lock:
            self._draw()

    def _draw(self) -> None:
        if self._bar is not None:
            self._bar.n = self.code_done
            self._bar.set_postfix_str(self.status(), refresh=True)
        elif self.clock() - self.last_line >= self.every:
            self.last_line = self.clock()
            self.stream.write(f"{self.name}: {self.code_done}/{self.code_total} code cells, {self.status()}\n")
            self.stream.flush()

    def _refresh(self) -> None:
        while not self._stop.wait(1.0):
            self._show()


class ProgressEngine(NBClientEngine):
    """papermill's nbclient engine, reporting each cell's start and end to a :class:`NotebookProgress`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, progress: NotebookProgress | None = None, **kwargs):
        if progress is None:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        start, complete = nb_man.cell_start, nb_man.cell_complete

        def cell_start(cell, cell_index=None, **more):
            progress.cell_started(cell_index)
            return start(cell, cell_index, **more)

        def cell_complete(cell, cell_index=None, **more):
            result = complete(cell, cell_index=cell_index, **more)
            progress.cell_done(cell_index)
            return result

        nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
        progress.start([cell.cell_type for cell in nb_man.nb.cells])
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        finally:
            progress.finish()


papermill_engines.register(ENGINE, ProgressEngine)
