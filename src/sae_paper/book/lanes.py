"""Executing the book's notebooks side by side: independent notebooks in parallel lanes, each on its share of the cores.

Why: torch's heavy kernels (SAE steps, forward passes) use a second thread as well as a second
process would (``benchmarks/lanes_throughput.py``: 0.97–1.03), but the rest of a notebook does not
(Python between the kernels, the one-thread ICA fits, I/O, kernel start-up): one notebook on two
threads leaves a core idle much of the time. Two notebooks that do not depend on each other, each
in its own kernel on one thread, keep both busy (the default book: 22.7 min side by side against
28.2 one after another, AVX-512 kind). On the default book, 02 (with its random-model controls) and 03
are the long ones and start first; 01, 04 and 05 fill whichever lane frees.

Which notebooks may run at the same time (:func:`notebook_waits`): any two whose studies are
registered. An SAE that two notebooks read is trained by whichever reaches it first: training holds
the SAE folder's lock (:meth:`sae_paper.core.pipeline.Run.sae`), so the other waits there and then
loads it, never training it twice, and it is the same SAE whoever trains it (the same config, on one
thread). Until the random-model controls, a notebook waited for the whole of the earlier one that
trains an SAE it reads; that chained 01 → 02, and 02 became the longest notebook, so the chain decided
the book's time with a core idle beside it. A notebook whose study is not registered waits for every
earlier one, and every later one waits for it. Everything else the notebooks share was harvested
before they start (:func:`sae_paper.book.harvest.harvest_for_book`), or is cached under a key and
written atomically (:mod:`sae_paper.data.cache`): at worst computed twice.

Which runs first (:func:`run_lanes`): of the notebooks whose waits are over, the one the last
run of the same profile found longest (so the long chains start early), then the book's order.
Each lane is a process (a :class:`LaneProcess`, which the runner's ``start_lane`` starts) that
executes one notebook and exits; a lane that fails stops the others at once, and its one-line
error is the run's.

Results do not depend on the lanes: a notebook's cells run in the same order on the same
inputs, and torch's CPU kernels give the same bytes on one thread as on two (checked for SAE
training by ``tests/test_train.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from sae_paper.book.profiles import BookError, study_classes

POLL_SECONDS = 0.5


class Lane(Protocol):
    """What :func:`run_lanes` needs of a started lane (a :class:`subprocess.Popen` has it)."""

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lane_count(requested: int | None, n_notebooks: int) -> int:
    """Lanes to run: ``requested`` (None: one per core, at most 2), never more than the notebooks to run."""
    if requested is not None and (not isinstance(requested, int) or isinstance(requested, bool) or requested < 1):
        raise BookError(f"lanes must be a positive integer, got {requested!r}")
    lanes = requested if requested is not None else min(2, available_cores())
    return max(1, min(lanes, n_notebooks))


def threads_per_lane(lanes: int) -> int:
    """torch threads each lane's kernel gets: the cores shared out, at least one."""
    return max(1, available_cores() // lanes)


def notebook_waits(names: Sequence[str]) -> dict[str, set[str]]:
    """For each notebook of ``names`` (in the book's order), the earlier ones it waits for (see the module docstring):
    none for a registered notebook, but every earlier one that is not registered; every one for one not registered."""
    studies = study_classes()
    return {name: set(names[:i]) if name not in studies else {e for e in names[:i] if e not in studies}
            for i, name in enumerate(names)}


def run_lanes(names: Sequence[str], waits: Mapping[str, set[str]], start_lane: Callable[[str], Lane], *, lanes: int,
              expected_seconds: Mapping[str, float] | None = None,
              on_done: Callable[[str, float], None] = lambda name, seconds: None,
              failure: Callable[[str, int], str] = lambda name, code: f"notebook {name} failed (exit {code})",
              clock: Callable[[], float] = time.perf_counter) -> list[str]:
    """Run every notebook of ``names`` in up to ``lanes`` lanes at once, each once its ``waits`` are done.

    ``start_lane(name)`` starts one notebook and returns its process; ``on_done(name, seconds)`` is
    called as each ends well; ``failure(name, exit_code)`` gives the error of one that did not (raised
    as a :class:`BookError` once the other lanes are stopped). Returns the names in the order they ended.
    """
    unknown = {w for name in names for w in waits.get(name, ())} - set(names)
    if unknown:
        raise BookError(f"notebooks wait for notebooks not run: {', '.join(sorted(unknown))}")
    expected = expected_seconds or {}
    rank = {name: i for i, name in enumerate(names)}
    pending, running, finished = list(names), {}, []
    try:
        while pending or running:
            ready = sorted((n for n in pending if waits.get(n, set()) <= set(finished)),
                           key=lambda n: (-expected.get(n, 0.0), rank[n]))
            for name in ready[: lanes - len(running)]:
                pending.remove(name)
                running[name] = (start_lane(name), clock())
            if not running:  # nothing can start and nothing runs: a circle of waits
                raise BookError(f"notebooks {', '.join(pending)} wait for each other")
            time.sleep(POLL_SECONDS)
            for name, (lane, began) in list(running.items()):
                code = lane.poll()
                if code is None:
                    continue
                del running[name]
                if code != 0:
                    raise BookError(failure(name, code))
                finished.append(name)
                on_done(name, clock() - began)
    finally:  # a failed lane, an error here or Ctrl-C: no lane outlives the run
        for lane, _ in running.values():
            lane.kill()
            lane.wait()
    return finished


class LaneProcess:
    """A lane: ``python -c code`` in its own process group, with ``threads`` torch/OpenMP threads.

    What it prints (its notebook's progress lines) is passed on, line by line, to ``stream`` (default: this
    process's ``sys.stderr`` at the time), so two lanes never break each other's lines and whoever reads this
    process's output reads theirs. Killing it kills its whole group, the notebook's kernel included.
    """

    def __init__(self, code: str, threads: int, stream=None):
        import subprocess
        import sys
        import threading

        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.stream = stream if stream is not None else sys.stderr
        self.process = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._relay = threading.Thread(target=self._pass_on, daemon=True)
        self._relay.start()

    def _pass_on(self) -> None:
        for line in self.process.stdout:
            self.stream.write(line)
            self.stream.flush()

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self._relay.join(timeout=5)  # its last lines before its end
        return code

    def kill(self) -> None:
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone
            pass

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._relay.join(timeout=5)
        return code
