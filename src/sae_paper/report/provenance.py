"""Where a notebook's numbers came from: commit, parameters, library versions, hardware, time.

Every notebook of the book starts with ``prov = provenance.start(...)``, wraps each
expensive section in ``with prov.section("..."):`` and shows ``prov`` at the end, so each
figure and number can be traced to the commit, profile and parameters that made it, and
a reader can see where the wall time went. :meth:`Provenance.save` also writes it as JSON
beside the claim records (``<book output>/provenance/<notebook>.json``).

A notebook mostly reads cached results (activations, SAEs, evaluations, ...), which may have
been computed by an earlier commit. Every cache entry records its commit
(:mod:`sae_paper.data.cache`), and the provenance cell lists the commits behind the entries the
notebook used, saying which are older than the current commit, so a reader can tell a
scoreboard computed by this code from one served by an older cache
(``sae-paper book --recompute KIND|all`` computes them afresh).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from sae_paper.data import cache
from sae_paper.data.cache import git_state
from sae_paper.data.device import gpu_name
from sae_paper.data.paths import book_output_dir

LIBRARIES = ("sae-paper", "torch", "transformer-lens", "transformers", "numpy", "matplotlib")


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
                     "amx_bf16", "neon", "asimd", "sve")
"""The CPU features that decide how fast torch's matmuls run here (two machines of one core count differ by 2×)."""


def cpu_description(cpuinfo: str | None = None) -> tuple[str, list[str]]:
    """(CPU model name, the :data:`VECTOR_EXTENSIONS` it has), from ``/proc/cpuinfo`` (or ``cpuinfo``'s text);
    the platform's processor string and no extensions where there is no such file."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine(), []
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or fields.get("Model") or fields.get("CPU part") or platform.machine()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [extension for extension in VECTOR_EXTENSIONS if extension in flags]


def hardware() -> dict[str, Any]:
    """CPU model and vector extensions, CPU count (and the cores this process may use), threads torch uses, the GPU."""
    import torch

    model, extensions = cpu_description()
    info: dict[str, Any] = {
        "cpu_model": model,
        "vector_extensions": extensions,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_name(),
    }
    return info


@dataclass
class Provenance:
    """What one notebook run depended on, and how long each of its sections took."""

    notebook: str
    profile: str
    parameters: dict[str, Any]
    seed: int
    commit: str
    dirty: bool | None
    versions: dict[str, str]
    hardware: dict[str, Any]
    started: str
    sections: dict[str, float] = field(default_factory=dict)
    """Section name → wall seconds, in the order first entered (repeated entries add up)."""
    _clock: float = field(default_factory=time.perf_counter, repr=False)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the enclosed block as part of section ``name`` (kept even if it raises)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.sections[name] = self.sections.get(name, 0.0) + time.perf_counter() - began

    @property
    def wall_seconds(self) -> float:
        """Seconds since :func:`start`."""
        return time.perf_counter() - self._clock

    def to_dict(self) -> dict[str, Any]:
        payload = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        payload["wall_seconds"] = round(self.wall_seconds, 1)
        payload["cached"] = cached_commits(cache.used_records(), self.commit)
        return payload

    def save(self, folder: str | Path | None = None) -> Path:
        """Write :meth:`to_dict` to ``<book output>/provenance/<notebook>.json``; return the path."""
        folder = Path(folder) if folder is not None else book_output_dir("provenance")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.notebook}.json"
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")
        return path

    def markdown(self) -> str:
        dirty = {True: " (uncommitted changes)", False: "", None: " (dirty state unknown)"}[self.dirty]
        hw = self.hardware
        gpu = hw["gpu"] or "none"
        extensions = ", ".join(hw.get("vector_extensions", [])) or "no vector extension listed"
        lines = [
            f"**{self.notebook}**, profile `{self.profile}`, seed {self.seed}, started {self.started}",
            "",
            f"- commit `{self.commit}`{dirty}",
            "- " + ", ".join(f"{name} {version}" for name, version in self.versions.items()),
            f"- {hw.get('cpu_model', hw['machine'])} ({extensions}), {hw['cpu_count']} CPUs ({hw['cpus_usable']} "
            f"usable, torch uses {hw['torch_threads']} threads), {hw['machine']}, Python {hw['python']}, GPU: {gpu}",
            "- parameters: " + ", ".join(f"`{k}={v!r}`" for k, v in self.parameters.items()),
        ]
        lines += cached_lines(cached_commits(cache.used_records(), self.commit))
        if self.sections:
            lines += ["", "| section | wall time (s) |", "|---|---:|"]
            lines += [f"| {name} | {seconds:.1f} |" for name, seconds in self.sections.items()]
            lines.append(f"| **total since start** | **{self.wall_seconds:.1f}** |")
        return "\n".join(lines) + "\n"

    def _repr_markdown_(self) -> str:
        return self.markdown()


def cached_commits(records: list[dict], current: str) -> list[dict]:
    """The commits behind cached results used: one ``{"commit", "relation", "entries", "kinds"}`` per commit,
    the current one first; relation is "this commit", "older" (an ancestor) or "not an ancestor"."""
    relations = cache.older_commits(records, current)
    by_commit: dict[str, list[dict]] = {}
    for record in records:
        by_commit.setdefault(str(record.get("commit", "unknown")), []).append(record)
    rows = []
    for commit in sorted(by_commit, key=lambda c: (c != current, c)):
        kinds: dict[str, int] = {}
        for record in by_commit[commit]:
            kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
        rows.append({"commit": commit, "relation": "this commit" if commit == current else relations[commit],
                     "entries": len(by_commit[commit]), "kinds": kinds,
                     "dirty": any(r.get("dirty") for r in by_commit[commit])})
    return rows


def cached_lines(rows: list[dict]) -> list[str]:
    """Markdown bullet lines for :func:`cached_commits` (nothing when no cached result was used)."""
    if not rows:
        return []
    lines = [f"- cached results used: {sum(r['entries'] for r in rows)}, computed at"]
    for row in rows:
        kinds = ", ".join(f"{kind} {n}" for kind, n in row["kinds"].items())
        dirty = " with uncommitted changes" if row["dirty"] else ""
        flag = {"this commit": "this commit", "older": "**older than the current commit**",
                "not an ancestor": "**not an ancestor of the current commit**",
                "unknown": "**commit not recorded**"}[row["relation"]]
        if row["relation"] != "this commit":
            flag += ": `sae-paper book --recompute all` computes them afresh"
        lines.append(f"  - `{row['commit'][:12]}`{dirty} ({flag}): {kinds}")
    return lines


def start(notebook: str, *, profile: str, parameters: Mapping[str, Any], seed: int) -> Provenance:
    """Begin a notebook's provenance record: git state, versions and hardware now, timers from here."""
    commit, dirty = git_state()
    cache.reset_used()  # the cell lists what this notebook used, from here on
    return Provenance(
        notebook=notebook,
        profile=profile,
        parameters=dict(parameters),
        seed=seed,
        commit=commit,
        dirty=dirty,
        versions=library_versions(),
        hardware=hardware(),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
