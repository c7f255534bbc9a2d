"""What every cached artifact shares: a lock, a record of the code that computed it, and a
computation version in its key.

The library caches activations, SAEs, evaluations, clean/zero CE, autointerp fragment
activations and baselines, and IOI patching curves, each keyed by the settings it depends
on (see :mod:`sae_paper.core.pipeline`, :mod:`sae_paper.data.activations`). Settings alone are not
enough: when the *code* that computes an artifact changes meaning, a warm cache would
silently serve results the current code would not produce, while the book's provenance
cell names the current commit. Three things prevent that:

- **Computation versions.** :data:`COMPUTATIONS` gives each kind of artifact a version,
  which is part of its cache key, so bumping it makes every reader compute afresh. Which
  functions compute a kind is listed beside it; ``tests/test_cache.py`` hashes their source
  (as an AST, so comments, docstrings and formatting do not count) against
  ``tests/computation_hashes.json`` and fails when the source changed but the version did
  not. A change that keeps every result identical may record the new hash under the same
  version; the test's message says how.
- **Records.** Every entry stores :func:`stamp` (kind, version, commit, library version,
  time) beside its data. Each read or write notes the record in this process
  (:func:`used_records`), so a notebook's provenance cell lists the commits behind the
  cached results it used and says when one is older than the current commit.
- **Locks.** :func:`locked` takes an exclusive ``flock`` on a file in the entry's folder
  while it is written, so two processes that need the same entry never both write it: the
  second waits (saying so on stderr) and then finds the entry complete. The kernel releases
  an ``flock`` when its holder dies, so a lock left by a killed process never blocks.

``sae-paper book --recompute KIND|all`` sets :data:`RECOMPUTE_ENV`: entries of those kinds
made before the build started are then not reused (:func:`reusable`) but computed again.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sae_paper.data.paths import repo_root
from sae_paper.errors import SaePaperError


@dataclass(frozen=True)
class Computation:
    """How one kind of artifact is computed: its version and the functions whose source defines it."""

    version: int
    """Part of the kind's cache key; bump it when the functions below change what they compute."""
    functions: tuple[str, ...]
    """Dotted names (``module.function`` or ``module.Class``) of the code that computes the artifact."""


COMPUTATIONS: dict[str, Computation] = {
    "activations": Computation(1, (
        "sae_paper.data.activations.harvest", "sae_paper.data.activations._extend",
        "sae_paper.data.activations._append_shard", "sae_paper.data.activations._write_shard",
        "sae_paper.data.activations._resume_point", "sae_paper.data.activations._context_stream",
        "sae_paper.data.activations._shards", "sae_paper.data.activations.site_rows",
        "sae_paper.data.rank_harvest.harvest_ranked", "sae_paper.data.rank_harvest._merge",
        "sae_paper.data.rank_harvest._prepare", "sae_paper.data.text.kept_positions",
        "sae_paper.data.text.iter_contexts", "sae_paper.data.text.iter_documents")),
    "sae": Computation(2, (
        "sae_paper.core.train.train_sae", "sae_paper.core.train.train_step", "sae_paper.core.train.training_forward",
        "sae_paper.core.train._Run", "sae_paper.core.train._save",
        "sae_paper.core.train.make_optimizer", "sae_paper.core.sae.SparseAutoencoder", "sae_paper.core.sae.TiedSAE",
        "sae_paper.core.sae.UntiedSAE", "sae_paper.core.kernels._FusedSae", "sae_paper.core.kernels._dense_backward",
        "sae_paper.core.kernels._sparse_backward", "sae_paper.core.kernels.ActiveCodes",
        "sae_paper.core.kernels.choose_path", "sae_paper.core.kernels.fused_sae",
        "sae_paper.core.kernels.NormalizeRows",
        "sae_paper.data.activations.ActivationCache")),
    "evaluation": Computation(1, (
        "sae_paper.core.pipeline.Run.evaluate", "sae_paper.core.pipeline.Run.splice",
        "sae_paper.core.metrics.reconstruction_stats", "sae_paper.core.metrics.splice_metrics",
        "sae_paper.core.metrics._masked_ce", "sae_paper.core.metrics.replace_at")),
    "reference-ce": Computation(1, (
        "sae_paper.core.pipeline.Run.reference_ce", "sae_paper.core.metrics.reference_ce",
        "sae_paper.core.metrics._masked_ce")),
    "fragments": Computation(2, (  # 2: a random window of each document, U+FFFD fragments dropped (issue 30)
        "sae_paper.analysis.autointerp.fragments.load_fragments",
        "sae_paper.analysis.autointerp.fragments.fragment_activations",
        "sae_paper.analysis.autointerp.fragments._store_activations")),
    "baselines": Computation(2, (
        "sae_paper.core.decompositions.fit_pca", "sae_paper.core.decompositions.fit_ica",
        "sae_paper.chapters.autointerp.baselines")),
    "alpha-search": Computation(1, (
        "sae_paper.core.alpha_search.search_alpha", "sae_paper.core.alpha_search.short_l0",
        "sae_paper.core.alpha_search.short_trained",
        "sae_paper.core.alpha_search._mean_l0", "sae_paper.core.alpha_search._first_rows",
        "sae_paper.core.alpha_search.matched_alpha", "sae_paper.core.alpha_search.SearchSettings")),
    "ioi-curve": Computation(1, (
        "sae_paper.analysis.patching_curves.patching_curve", "sae_paper.analysis.patching.FeaturePatching",
        "sae_paper.analysis.patching.PatchingSetup", "sae_paper.analysis.patching_curves.acdc",
        "sae_paper.analysis.patching.ModelTail", "sae_paper.chapters.ioi.patching_curves")),
    "scores": Computation(3, (  # 2: the reference's conventions (undefined correlations, floor scale, fixed split); 3: a run
        # of highlighted tokens in one pair of brackets, the local classifier's own context (detection, fuzzing)
        "sae_paper.analysis.autointerp.scoring.score_decomposition",
        "sae_paper.analysis.autointerp.scoring._score_decomposition",
        "sae_paper.analysis.autointerp.scoring.score_feature", "sae_paper.analysis.autointerp.scoring._scored",
        "sae_paper.analysis.autointerp.scoring.simulation_scores", "sae_paper.analysis.autointerp.scoring.FeatureResult",
        "sae_paper.analysis.autointerp.scoring.correlation", "sae_paper.analysis.autointerp.scoring._record",
        "sae_paper.core.reference.correlation_or_undefined", "sae_paper.core.reference._vector",
        "sae_paper.core.reference.explainer_max", "sae_paper.core.reference.interleaved_split",
        "sae_paper.analysis.autointerp.fragments.select_fragments", "sae_paper.analysis.autointerp.fragments.rescale",
        "sae_paper.analysis.autointerp.fragments.moments", "sae_paper.analysis.autointerp.fragments.feature_codes",
        "sae_paper.analysis.autointerp.fragments.varying_fragment_counts",
        "sae_paper.analysis.autointerp.fragments.choose_features", "sae_paper.analysis.autointerp.fragments.feature_order",
        "sae_paper.core.decompositions.interpretable_codes", "sae_paper.core.decompositions.SaeDecomposition",
        "sae_paper.core.decompositions.LinearDecomposition", "sae_paper.core.decompositions.TopK",
        "sae_paper.analysis.autointerp.backends.Cached", "sae_paper.analysis.autointerp.backends.TokenListBackend",
        "sae_paper.analysis.autointerp.backends.normal_token",
        "sae_paper.analysis.autointerp.backends.token_list_explanation",
        "sae_paper.analysis.autointerp.backends.token_list_weights",
        "sae_paper.analysis.autointerp.backends.explain_prompt", "sae_paper.analysis.autointerp.backends.simulate_prefix",
        "sae_paper.analysis.autointerp.backends.simulate_body", "sae_paper.analysis.autointerp.backends.expected_value",
        "sae_paper.analysis.autointerp.openai_compatible.OpenAICompatibleBackend",
        "sae_paper.analysis.autointerp.local.LocalBackend",
        "sae_paper.analysis.autointerp.token_list.TokenListScorer")),
}

RECOMPUTE_ENV = "SAE_PAPER_RECOMPUTE"
"""``kind,kind,...@<unix time>``: entries of these kinds (or ``all``) made before that time are computed again."""
LOCK_FILE = ".lock"


def version(kind: str) -> int:
    """The computation version of ``kind`` (part of its cache key)."""
    try:
        return COMPUTATIONS[kind].version
    except KeyError:
        raise SaePaperError(f"unknown artifact kind {kind!r} (known: {', '.join(COMPUTATIONS)})") from None


LOG_ENV = "SAE_PAPER_LOG"
"""A file to append :func:`notice` lines to instead of stderr: the book runner sets it for each notebook, so the
library's messages (and the cache paths in them) go to the build's log, not into the pages' cell outputs."""


def notice(message: str) -> None:
    """Tell the user something the cache did on its own (waited, rebuilt, recomputed): on stderr, or in the file
    :data:`LOG_ENV` names."""
    line = f"sae-paper: {message}"
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    else:
        print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Source hashes (the guard that versions are bumped)
# --------------------------------------------------------------------------------------


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise SaePaperError(f"cannot import {dotted}")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]  # getattr found a body
    return tree


def source_hash(kind: str) -> str:
    """sha256 of the code that computes ``kind``: each listed function's AST without docstrings,
    so a comment, a docstring or a reformatting does not count as a change, a changed expression does."""
    digest = hashlib.sha256()
    for dotted in COMPUTATIONS[kind].functions:
        tree = _strip_docstrings(ast.parse(textwrap.dedent(inspect.getsource(_resolve(dotted)))))
        digest.update(dotted.encode() + b"\0" + ast.dump(tree, include_attributes=False).encode() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


def git_state(root: Path | None = None) -> tuple[str, bool | None]:
    """(commit, dirty) of the checkout; ("unknown", None) outside a git checkout or without git.

    Dirty means tracked files differ from the commit or untracked, non-ignored files exist.
    """
    root = root or repo_root()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=20).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True,
                                check=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return commit, bool(status.strip())



def library_version() -> str:
    """The installed sae-paper's version, or ``"unknown"`` when it runs from a bare source tree."""
    from importlib import metadata

    try:
        return metadata.version("sae-paper")
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def _code_state() -> tuple[str, bool | None, str]:
    commit, dirty = git_state()
    return commit, dirty, library_version()


_USED: dict[tuple[str, str], dict] = {}


def stamp(kind: str, where: str | Path) -> dict:
    """The record to store with a new entry of ``kind`` at ``where``: kind, computation version, commit
    (and whether the checkout had uncommitted changes), library version, time. Noted as used."""
    commit, dirty, library = _code_state()
    record = {"kind": kind, "version": version(kind), "commit": commit, "dirty": dirty, "library": library,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "time": time.time(), "pid": os.getpid()}
    note_used(kind, where, record)
    return record


def note_used(kind: str, where: str | Path, record: Mapping | None) -> None:
    """Remember that this process used the entry at ``where`` (for the provenance cell)."""
    _USED[(kind, str(where))] = dict(record or {"kind": kind, "commit": "unknown"})


def used_records() -> list[dict]:
    """Every entry this process used so far, as ``{"kind", "where", "commit", ...}``."""
    return [{**record, "kind": kind, "where": where} for (kind, where), record in _USED.items()]


def reset_used() -> None:
    _USED.clear()


def _recompute_request() -> tuple[set[str], float]:
    raw = os.environ.get(RECOMPUTE_ENV, "")
    kinds, _, since = raw.rpartition("@")
    if not kinds:
        return set(), 0.0
    return set(kinds.split(",")), float(since)


def recompute_env(kinds: list[str], since: float | None = None) -> str:
    """The value of :data:`RECOMPUTE_ENV` that asks for ``kinds`` (or ``["all"]``) to be computed again."""
    unknown = [kind for kind in kinds if kind != "all" and kind not in COMPUTATIONS]
    if unknown or not kinds:
        raise SaePaperError(f"--recompute takes all or an artifact kind ({', '.join(COMPUTATIONS)}), "
                            f"got {', '.join(unknown) or 'nothing'}")
    return f"{','.join(kinds)}@{time.time() if since is None else since}"


def stale(kind: str, record: Mapping | None) -> bool:
    """Whether the user asked to recompute ``kind`` (``--recompute``) and ``record``'s entry was made before asking."""
    kinds, since = _recompute_request()
    return (kind in kinds or "all" in kinds) and float((record or {}).get("time", 0)) < since


def reusable(kind: str, where: str | Path, record: Mapping | None) -> bool:
    """Whether an existing, complete entry of ``kind`` may be reused: yes unless it is :func:`stale`
    (then say that it is computed again). A reused entry is noted as used."""
    if stale(kind, record):
        notice(f"recomputing the {kind} at {where}, as asked (--recompute); the old one was computed at commit "
               f"{str((record or {}).get('commit', 'unknown'))[:12]}")
        return False
    note_used(kind, where, record)
    return True


def older_commits(records: list[dict], current: str) -> dict[str, str]:
    """For each commit in ``records`` other than ``current``: "older" if it is an ancestor of
    ``current``, else "not an ancestor" (another branch, or unknown)."""
    verdicts = {}
    for commit in sorted({str(r.get("commit", "unknown")) for r in records} - {current}):
        try:
            ancestor = subprocess.run(["git", "-C", str(repo_root()), "merge-base", "--is-ancestor", commit, current],
                                      capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ancestor = False
        verdicts[commit] = "older" if ancestor else "unknown" if commit == "unknown" else "not an ancestor"
    return verdicts


# --------------------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------------------


@contextmanager
def locked(folder: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` while writing the entry ``what`` in ``folder``.

    A second process waits here, says so on stderr, and proceeds when the first is done (the
    caller then rereads the entry and finds it complete). ``flock`` locks belong to the open
    file, which the kernel closes when a process dies, SIGKILL included: a stale lock file is
    just a file, never a lock. Not re-entrant: one process never holds two locks on one folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            notice(f"waiting for process {holder}, which is writing {what} in {folder}")
            began = time.perf_counter()
            fcntl.flock(fd, fcntl.LOCK_EX)
            notice(f"process {holder} is done with {what} (waited {time.perf_counter() - began:.0f} s); "
                   "reusing what it wrote")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary name beside it, then rename it over ``path``.

    A reader (another process, or this one after a crash) sees the old file or the whole new one,
    never half of it: ``os.replace`` is atomic on one filesystem, and the temporary name carries
    the process id, so two writers (two ranks of a distributed run) never write one temporary
    file. ``durable`` also flushes the file to disk before the rename, for a checkpoint that
    must survive the machine going down, not only the process. A ``write`` that raises leaves
    ``path`` as it was and removes the temporary file.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_folder(path: Path, fill: Callable[[Path], object]) -> None:
    """Make a new folder through ``fill(tmp)``, which creates ``tmp`` beside ``path``, and put it in ``path``'s place.

    The folder's kind of :func:`atomic_write`: a reader sees the old folder or the whole new one,
    never a mix. A rename cannot replace a non-empty folder, so the old one is first renamed
    aside, the new one renamed in, then the old one deleted; a reader in that moment finds no
    folder (a missing entry: computed again). Temporary names carry the process id, as in
    :func:`atomic_write`. A ``fill`` that raises leaves ``path`` as it was and removes ``tmp``.
    """
    tmp, old = (path.with_name(f"{path.name}.{os.getpid()}.{suffix}") for suffix in ("tmp", "old"))
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, payload: Mapping) -> None:
    """Write JSON to a temporary file and rename it over ``path``, so a reader never sees half of it."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 4 MiB blocks (entries record it for every file they promise)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path, what: str) -> dict:
    """A cached JSON file, or one ``error:`` line naming it when it is not JSON (never deleted)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise SaePaperError(f"{what} {path} is corrupt (not JSON); move it away to compute it again") from None
