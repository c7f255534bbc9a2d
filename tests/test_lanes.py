"""Notebooks side by side (sae_paper.book.lanes): who waits for whom, the scheduling, failures, the lane process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sae_paper.book import lanes
from sae_paper.book.lanes import LaneProcess, lane_count, notebook_waits, run_lanes
from sae_paper.book.profiles import BookError, load_profile

PROFILES = Path(__file__).resolve().parents[1] / "profiles"


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_registered_notebooks_wait_for_none_and_share_an_sae_through_its_lock(profile):
    entries = load_profile(PROFILES / f"{profile}.yaml")
    names = sorted(entries)
    assert notebook_waits(names) == {name: set() for name in names}  # 02 and 03, the long ones, may start together


def test_an_unregistered_notebook_waits_for_every_earlier_one_and_is_waited_for():
    names = sorted(load_profile(PROFILES / "smoke.yaml"))
    order = [*names[:2], "02b_unknown", *names[2:]]
    waits = notebook_waits(order)
    assert waits["02b_unknown"] == set(names[:2])
    assert all(waits[later] == {"02b_unknown"} for later in names[2:])


class FakeLane:
    """A lane that ends after ``steps`` polls with ``code``; records what ran at the same time."""

    def __init__(self, name, log, steps, code=0):
        self.name, self.log, self.steps, self.code, self.killed = name, log, steps, code, False
        log.append(("start", name))

    def poll(self):
        if self.killed:
            return -9
        self.steps -= 1
        if self.steps > 0:
            return None
        self.log.append(("end", self.name))
        return self.code

    def kill(self):
        self.killed = True
        self.log.append(("kill", self.name))

    def wait(self, timeout=None):
        return -9


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(lanes, "POLL_SECONDS", 0.0)


def running_at_once(log):
    now, most = set(), 0
    for event, name in log:
        if event == "start":
            now.add(name)
        else:
            now.discard(name)
        most = max(most, len(now))
    return most


def test_lanes_respect_the_waits_and_the_lane_count_and_start_the_longest_first(no_sleep):
    log, done = [], []
    steps = {"a": 3, "b": 9, "c": 2, "d": 2, "e": 2}
    waits = {"a": set(), "b": set(), "c": {"a"}, "d": {"a"}, "e": {"c"}}
    finished = run_lanes(list(steps), waits, lambda n: FakeLane(n, log, steps[n]), lanes=2,
                         expected_seconds={"d": 50.0, "c": 10.0}, on_done=lambda n, s: done.append(n))
    assert sorted(finished) == sorted(steps) and done == finished
    assert running_at_once(log) == 2
    started = [name for event, name in log if event == "start"]
    ended = [name for event, name in log if event == "end"]
    for name, before in waits.items():
        for other in before:
            assert ended.index(other) < started.index(name), f"{name} started before {other} ended"
    assert started.index("d") < started.index("c")  # both ready when a ends: the longer by the last run goes first
    one = []
    run_lanes(list(steps), waits, lambda n: FakeLane(n, one, steps[n]), lanes=1)
    assert running_at_once(one) == 1


def test_a_failed_lane_stops_the_others_with_its_one_line_error(no_sleep):
    log = []
    with pytest.raises(BookError, match="notebook a failed in cell 3"):
        run_lanes(["a", "b", "c"], {"a": set(), "b": set(), "c": {"a"}},
                  lambda n: FakeLane(n, log, {"a": 2, "b": 50, "c": 1}[n], code=1 if n == "a" else 0), lanes=2,
                  failure=lambda name, code: f"notebook {name} failed in cell 3 (exit {code})")
    assert ("kill", "b") in log and ("start", "c") not in log


def test_waits_that_cannot_be_met_are_refused(no_sleep):
    with pytest.raises(BookError, match="wait for each other"):
        run_lanes(["a", "b"], {"a": {"b"}, "b": {"a"}}, lambda n: FakeLane(n, [], 1), lanes=2)
    with pytest.raises(BookError, match="not run: z"):
        run_lanes(["a"], {"a": {"z"}}, lambda n: FakeLane(n, [], 1), lanes=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_lane_count_is_refused(bad):
    with pytest.raises(BookError, match="lanes must be a positive integer"):
        lane_count(bad, 3)


def test_a_bad_lane_count_stops_the_book_before_anything_runs():
    from sae_paper.book.runner import BookLayout, run_book

    root = PROFILES.parent
    layout = BookLayout(root / "notebooks", root / "book", PROFILES)
    with pytest.raises(BookError, match="lanes must be a positive integer, got 0"):
        run_book("smoke", layout=layout, lanes=0, validate_only=True, log=lambda line: None)


def test_lane_count_never_exceeds_the_notebooks():
    assert lane_count(4, 1) == 1 and lane_count(2, 5) == 2 and lane_count(None, 5) == min(2, lanes.available_cores())


def test_a_lane_process_gets_its_threads_and_killing_it_kills_its_children(tmp_path):
    import io

    stream = io.StringIO()
    lane = LaneProcess("import os, sys; print('threads', os.environ['OMP_NUM_THREADS']); "
                       "print('progress', file=sys.stderr)", threads=3, stream=stream)
    assert lane.wait(timeout=60) == 0
    assert sorted(stream.getvalue().splitlines()) == ["progress", "threads 3"]  # passed on, line by line
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    lane = LaneProcess(code, threads=1, stream=io.StringIO())
    for _ in range(200):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    lane.kill()
    assert lane.wait(timeout=10) != 0
    for _ in range(100):
        if not alive(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the lane's child survived the kill")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting for its reaper, does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"
