"""What a rebuild may reuse: executed notebooks and the feature browser, kept by their inputs.

A warm rebuild of the book used to execute every notebook again, each one then reading its
cached results (minutes even with nothing to compute), and to remake the feature browser from
scratch. Both are pure functions of their inputs, so the runner keeps their outputs in the cache
(``book-notebooks/`` and ``book-browser/`` under ``SAE_PAPER_CACHE``) under a key of everything
they depend on, and reinstates them when the key is found:

- **a notebook** (:func:`notebook_key`): its source text, its resolved parameters, the profile's
  name, the computation versions (:data:`~sae_paper.data.cache.COMPUTATIONS`), a hash of every
  source file of the ``sae_paper`` package (:func:`package_hash`: a changed verdict rule or plot
  re-executes every notebook; an edited notebook re-executes only itself), the paper's claims
  and digest in the shared folder, and the versions of the libraries provenance lists. What it
  keeps: the executed ``<notebook>.ipynb`` and the ``<notebook>.json`` it wrote under each of
  :data:`OUTPUT_FOLDERS` (claims, provenance, feature records), byte for byte;
- **the feature browser** (:func:`browser_key`): the package hash, the notebooks' feature records
  (by content) and the cached SAEs and fragment activations it reads (by path, size and
  modification time, since they are hundreds of megabytes and are rewritten only when
  recomputed). What it keeps: ``generated/features/``.

A reused notebook's provenance is the one of the run that made it (its commit and start time),
so the scoreboard says which run stands behind each record. ``--recompute`` executes every
notebook again (and stores the new result). Entries are written to a temporary folder and
renamed into place, so a killed build leaves no half entry; each notebook keeps its
:data:`KEEP` most recent entries (switching between two profiles reuses both).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sae_paper.data.cache import COMPUTATIONS, replace_folder
from sae_paper.data.paths import cache_dir, shared_dir

OUTPUT_FOLDERS = ("claims", "provenance", "feature_records")
"""What notebooks write under the book output besides themselves, one ``<notebook>.json`` each."""
KEEP = 4
"""Entries kept per notebook (and for the browser), most recently used first."""
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def package_hash() -> str:
    """sha256 over the relative path and bytes of every ``.py`` file of the ``sae_paper`` package.

    Bytes, not ASTs as :func:`~sae_paper.data.cache.source_hash` uses: a notebook is cheap to rerun
    next to a wrong reuse, and a docstring edit may change what a page shows."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _files_digest(paths: Iterable[Path], root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths) if p.is_file()}


def _key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def notebook_key(source: str, parameters: Mapping[str, Any], profile: str) -> str:
    """The key of one notebook's execution (see the module docstring for what it holds)."""
    from sae_paper.report.provenance import library_versions

    paper = shared_dir() / "paper"
    return _key({"source": source, "parameters": dict(parameters), "profile": profile,
                 "computations": {kind: c.version for kind, c in COMPUTATIONS.items()},
                 "package": package_hash(), "paper": _files_digest(paper.rglob("*"), paper),
                 "libraries": library_versions()})


def browser_key(records: Iterable[Path], inputs: Iterable[Path]) -> str:
    """The key of the feature browser: the package, the feature ``records`` by content, the cached
    ``inputs`` (SAE weights, fragment activations) by path, size and modification time."""
    stats = {}
    for path in sorted(inputs):
        stat = path.stat() if path.is_file() else None
        stats[str(path)] = [stat.st_size, stat.st_mtime_ns] if stat else None
    records = list(records)
    return _key({"package": package_hash(),
                 "records": {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
                             for p in sorted(records)},
                 "inputs": stats})


class ReuseCache:
    """Entries ``<root>/<name>/<key>/`` holding copies of files relative to a book output folder."""

    def __init__(self, kind: str = "book-notebooks"):
        self.root = cache_dir(kind)

    def _entry(self, name: str, key: str) -> Path:
        return self.root / name / key

    def restore(self, name: str, key: str, target: Path) -> dict | None:
        """Copy entry ``name``/``key`` into ``target`` (its files at the same relative paths); its
        ``entry.json`` (when stored, what was stored), or None when there is no such entry."""
        entry = self._entry(name, key)
        manifest = entry / "entry.json"
        if not manifest.is_file():
            return None
        info = json.loads(manifest.read_text())
        if not all((entry / "files" / relative).is_file() for relative in info["files"]):
            return None  # a file of the entry was deleted: run again (the new run replaces the entry)
        for relative in info["files"]:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry / "files" / relative, destination)
        os.utime(manifest)  # most recently used: kept by the pruning
        return info

    def store(self, name: str, key: str, source: Path, files: Iterable[str]) -> None:
        """Copy ``files`` (paths relative to ``source``; missing ones skipped) into entry ``name``/``key``."""
        def fill(tmp: Path) -> None:
            kept = []
            for relative in files:
                if (source / relative).is_file():
                    (tmp / "files" / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source / relative, tmp / "files" / relative)
                    kept.append(relative)
            (tmp / "files").mkdir(parents=True, exist_ok=True)
            (tmp / "entry.json").write_text(json.dumps({"files": kept, "stored": time.strftime("%Y-%m-%d %H:%M:%S")}))

        replace_folder(self._entry(name, key), fill)
        self._prune(name)

    def _prune(self, name: str) -> None:
        entries = [p for p in (self.root / name).iterdir() if (p / "entry.json").is_file()]
        entries.sort(key=lambda p: (p / "entry.json").stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)


def notebook_files(name: str) -> list[str]:
    """What a notebook's execution leaves in the book output, relative to it."""
    return [f"{name}.ipynb", *(f"{folder}/{name}.json" for folder in OUTPUT_FOLDERS)]


def tree_files(folder: Path, root: Path) -> list[str]:
    """Every file under ``folder``, relative to ``root``."""
    return [str(p.relative_to(root)) for p in sorted(folder.rglob("*")) if p.is_file()]
