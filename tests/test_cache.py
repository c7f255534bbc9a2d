"""Cache entries: the computation-version guard, locks (with real processes), healing, records,
``--recompute`` and the provenance cell's list of commits (see :mod:`sae_paper.data.cache`).

The version guard: ``computation_hashes.json`` holds, per artifact kind and computation
version, the hash of the source that computes it. When a test here fails because that
source changed: if results can change, bump the kind's version in
``sae_paper.data.cache.COMPUTATIONS`` and add the new hash under the new version; if they
cannot (a rename, a refactor shown to give identical results), replace the hash under the
current version. The failure message prints the line to write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sae_paper.core.config import RunConfig
from sae_paper.data import cache
from sae_paper.data.activations import HarvestSpec, harvest
from sae_paper.data.cache import git_state
from sae_paper.data.models import Site
from sae_paper.errors import SaePaperError

RECORDED = Path(__file__).with_name("computation_hashes.json")
RESID = Site("resid_post", 1)


@pytest.mark.parametrize("kind", sorted(cache.COMPUTATIONS))
def test_computation_source_matches_the_hash_recorded_for_its_version(kind):
    recorded = json.loads(RECORDED.read_text())
    version, now = cache.version(kind), cache.source_hash(kind)
    assert str(version) in recorded.get(kind, {}), (
        f"{kind}: version {version} has no recorded source hash; add \"{version}\": \"{now}\" under \"{kind}\" "
        f"in {RECORDED.name}")
    assert recorded[kind][str(version)] == now, (
        f"the code that computes {kind} changed without a version bump: if its results can change, bump "
        f"COMPUTATIONS[{kind!r}] to {version + 1} in sae_paper/data/cache.py and add \"{version + 1}\": \"{now}\" under "
        f"\"{kind}\" in {RECORDED.name}; if they cannot, replace the hash under \"{version}\" with \"{now}\"")


def test_source_hash_ignores_comments_and_docstrings_but_not_code(monkeypatch):
    import textwrap
    import types

    module = types.ModuleType("fake_computation")
    module.f = lambda x: x  # its source is what inspect.getsource is patched to return below
    monkeypatch.setitem(sys.modules, "fake_computation", module)
    monkeypatch.setitem(cache.COMPUTATIONS, "fake", cache.Computation(1, ("fake_computation.f",)))

    def hash_of(source):
        monkeypatch.setattr("inspect.getsource", lambda obj: textwrap.dedent(source))
        return cache.source_hash("fake")

    base = hash_of("def f(x):\n    return x + 1\n")
    assert hash_of('def f(x):\n    """Now documented."""\n    # a comment\n    return  x + 1\n') == base
    assert hash_of("def f(x):\n    return x + 2\n") != base


def test_version_is_in_every_cache_key():
    from sae_paper.core.pipeline import EVALUATION_FILE

    spec = HarvestSpec("pythia-70m-deduped-random", "webtext", "train", 10, 16, "float32", 0)
    assert spec.text_key()["computation"] == cache.version("activations")
    assert "{version}" in EVALUATION_FILE


def _python(code: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_a_second_process_waits_says_so_and_a_killed_holder_never_blocks(tmp_path):
    folder = tmp_path / "entry"
    holder = _python(f"from sae_paper.data import cache\nwith cache.locked({str(folder)!r}, 'test entry'):\n"
                     "    print('locked', flush=True)\n    import time; time.sleep(600)\n")
    try:
        assert holder.stdout.readline().strip() == "locked"
        waiter = _python(f"from sae_paper.data import cache\nwith cache.locked({str(folder)!r}, 'test entry'):\n"
                         "    print('got it', flush=True)\n")
        time.sleep(3)
        assert waiter.poll() is None, "the second process took a lock the first one holds"
        holder.send_signal(signal.SIGKILL)  # a killed process: its lock must not outlive it
        out, err = waiter.communicate(timeout=60)
        assert out.strip() == "got it"
        assert f"waiting for process {holder.pid}, which is writing test entry in {folder}" in err
        assert "reusing what it wrote" in err
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------------------
# Healing and refusing
# --------------------------------------------------------------------------------------


def small_spec(n_tokens=150) -> HarvestSpec:
    return HarvestSpec("pythia-70m-deduped-random", "pile-openings", "train", n_tokens, 16, "float32", 3)


def test_a_missing_shard_is_harvested_again_with_a_line_saying_so(pythia_random, capsys):
    spec = small_spec()
    first = harvest(pythia_random, spec, [RESID], shard_contexts=4, progress=False)[RESID]
    rows = first.read_all()
    assert len(first.shards) >= 3
    (first.folder / "shard_00001.safetensors").unlink()
    healed = harvest(pythia_random, spec, [RESID], shard_contexts=4, progress=False)[RESID]
    err = capsys.readouterr().err
    assert "shard_00001.safetensors, listed in its manifest, is missing; harvesting it again" in err
    assert torch.equal(healed.read_all(), rows)
    records = json.loads((first.folder / "manifest.json").read_text())["computed"]
    assert [r["first_shard"] for r in records] == [0, 1]  # the first harvest and the one that healed it


def tiny_run(monkeypatch, pythia_random, **changes):
    from sae_paper.core import pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda name, device=None: pythia_random)
    fields = dict(model="pythia-70m-deduped-random", layer=1, source="webtext", n_tokens=300, eval_tokens=120,
                  context_length=24, harvest_batch_size=4, epochs=2, batch_size=64, checkpoint_every=2)
    return pipeline.Run(RunConfig(**{**fields, **changes}), progress=False)


def test_an_sae_missing_its_weights_is_trained_again_byte_identical(monkeypatch, pythia_random, capsys, one_thread):
    run = tiny_run(monkeypatch, pythia_random)
    run.sae()
    weights = run.sae_dir / "sae.safetensors"
    original = weights.read_bytes()
    summary = json.loads((run.sae_dir / "summary.json").read_text())
    assert summary["computed"]["commit"] == git_state()[0] and summary["computed"]["kind"] == "sae"
    weights.unlink()
    again = tiny_run(monkeypatch, pythia_random).sae()
    assert "is incomplete (missing sae.safetensors): training it again, from its final checkpoint" in capsys.readouterr().err
    assert weights.read_bytes() == original and again.d_sae == run.sae().d_sae


def test_a_corrupt_sae_file_is_refused_by_name_and_kept(monkeypatch, pythia_random, one_thread):
    run = tiny_run(monkeypatch, pythia_random)
    run.sae()
    config = run.sae_dir / "sae.json"
    config.write_text(config.read_text().replace('"alpha"', '"alpha" ', 1))
    with pytest.raises(SaePaperError, match=f"SAE file {config} is corrupt \\(checksum differs from summary.json\\)"):
        tiny_run(monkeypatch, pythia_random).sae()
    assert '"alpha" ' in config.read_text()


# --------------------------------------------------------------------------------------
# Records, provenance cell, --recompute
# --------------------------------------------------------------------------------------


def test_every_entry_records_its_commit_and_the_provenance_cell_flags_older_ones(monkeypatch, pythia_random, one_thread):
    from sae_paper.report import provenance

    prov = provenance.start("test", profile="smoke", parameters={}, seed=0)
    run = tiny_run(monkeypatch, pythia_random)
    run.evaluate()
    kinds = {record["kind"] for record in cache.used_records()}
    assert kinds == {"activations", "sae", "evaluation", "reference-ce"}
    commit = git_state()[0]
    assert {record["commit"] for record in cache.used_records()} == {commit}
    assert "this commit" in prov.markdown() and "older than" not in prov.markdown()

    older = subprocess.run(["git", "rev-parse", "HEAD~1"], capture_output=True, text=True).stdout.strip()
    if not older:
        pytest.skip("needs a checkout with at least two commits")
    cache.note_used("sae", "/somewhere/else", {"commit": older, "kind": "sae"})
    text = prov.markdown()
    assert f"`{older[:12]}` (**older than the current commit**: `sae-paper book --recompute all`" in text
    assert {row["relation"] for row in prov.to_dict()["cached"]} == {"this commit", "older"}


def test_recompute_rebuilds_entries_made_before_it_was_asked_for(monkeypatch, pythia_random, capsys, one_thread):
    run = tiny_run(monkeypatch, pythia_random)
    run.evaluate(splice=False)
    weights = (run.sae_dir / "sae.safetensors").read_bytes()
    before = json.loads((run.sae_dir / "summary.json").read_text())["computed"]["time"]
    monkeypatch.setenv(cache.RECOMPUTE_ENV, cache.recompute_env(["sae", "evaluation"]))
    tiny_run(monkeypatch, pythia_random).evaluate(splice=False)
    err = capsys.readouterr().err
    assert "recomputing the SAE in" in err and "recomputing the evaluation at" in err
    assert "recomputing the activations" not in err
    assert json.loads((run.sae_dir / "summary.json").read_text())["computed"]["time"] > before
    assert (run.sae_dir / "sae.safetensors").read_bytes() == weights  # training is deterministic
    tiny_run(monkeypatch, pythia_random).evaluate(splice=False)  # made after the request: reused
    assert "recomputing" not in capsys.readouterr().err
    with pytest.raises(SaePaperError, match="--recompute takes all or an artifact kind .*got saes"):
        cache.recompute_env(["saes"])


def test_a_corrupt_cached_json_is_refused_by_name_and_kept(monkeypatch, pythia_random, one_thread):
    run = tiny_run(monkeypatch, pythia_random)
    run.evaluate(splice=False)
    (path,) = run.sae_dir.glob("evaluation-*.json")
    path.write_text("{half a file")
    with pytest.raises(SaePaperError, match="cached evaluation .* is corrupt \\(not JSON\\); move it away"):
        tiny_run(monkeypatch, pythia_random).evaluate(splice=False)
    assert path.read_text() == "{half a file"


def test_book_recompute_of_an_unknown_kind_is_one_line_before_anything_runs(capsys):
    from sae_paper.cli import main

    assert main(["book", "--profile", "smoke", "--recompute", "activations,saes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --recompute takes all or an artifact kind") and err.endswith("got saes")


def test_notices_go_to_the_log_file_the_runner_names_not_to_stderr(tmp_path, monkeypatch, capsys):
    log = tmp_path / "02.log"
    monkeypatch.setenv(cache.LOG_ENV, str(log))
    cache.notice("training the SAE in /somewhere")
    cache.notice("done")
    assert capsys.readouterr().err == ""
    assert log.read_text().splitlines() == ["sae-paper: training the SAE in /somewhere", "sae-paper: done"]
    monkeypatch.delenv(cache.LOG_ENV)
    cache.notice("on stderr")
    assert capsys.readouterr().err == "sae-paper: on stderr\n"


def test_atomic_write_replaces_the_file_and_keeps_the_old_one_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "entry.json"
    path.write_text("old")
    written = []

    def write_new(tmp: Path) -> None:
        assert tmp.parent == path.parent and str(os.getpid()) in tmp.name and not path.read_text() == "new"
        written.append(tmp)
        tmp.write_text("new")

    cache.atomic_write(path, write_new)
    assert path.read_text() == "new" and sorted(tmp_path.iterdir()) == [path] and not written[0].exists()

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half of a new fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.atomic_write(path, half_then_fail)
    assert path.read_text() == "new" and sorted(tmp_path.iterdir()) == [path]  # old file intact, no temporary left

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    cache.atomic_write(tmp_path / "checkpoint.pt", lambda tmp: tmp.write_bytes(b"\x00\x01"), durable=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"\x00\x01" and len(synced) == 1
    cache.atomic_write(path, lambda tmp: tmp.write_text("newer"))
    assert path.read_text() == "newer" and len(synced) == 1  # only a durable write flushes to disk


def test_replace_folder_puts_a_whole_new_folder_in_place_or_leaves_the_old_one(tmp_path):
    entry = tmp_path / "entry"

    def fill(files: dict[str, str]):
        def write(tmp: Path) -> None:
            for name, text in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_text(text)
        return write

    cache.replace_folder(entry, fill({"a.txt": "1", "sub/b.txt": "2"}))  # no folder before
    cache.replace_folder(entry, fill({"c.txt": "3"}))
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*")) == ["c.txt"]  # nothing of the old one
    assert (entry / "c.txt").read_text() == "3" and sorted(tmp_path.iterdir()) == [entry]

    def fail(tmp: Path) -> None:
        fill({"d.txt": "4"})(tmp)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.replace_folder(entry, fail)
    assert sorted(p.name for p in entry.iterdir()) == ["c.txt"] and sorted(tmp_path.iterdir()) == [entry]
