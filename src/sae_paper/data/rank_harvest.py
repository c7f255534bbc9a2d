"""Harvests of many texts (:func:`harvest_all`), on one process or spread over torchrun's ranks.

Spread over ranks (:func:`harvest_ranked`), one text's shards (256 contexts each) are dealt
round-robin: shard ``first + k`` is rank ``k % world size``'s. Every rank reads the same
seeded context stream (so each knows where every shard starts) but runs the model only on
its own shards, and writes each, checksummed, into the shared cache with a side file
``shard_NNNNN.json`` holding its manifest entry. Rank 0 prepares the manifests under the
text's lock (the same preparation a one-process harvest makes: heal, drop a short tail,
stamp); after each shard a rank takes the lock and merges into the manifest every side file
that continues it, in order. So the manifest only ever lists a gapless prefix of shards, and
the finished cache is the one a single process writes: same rows, same order, same
checksums. A rank killed mid-run loses only the shard it was computing: a rerun merges what
the others wrote, reuses side files beyond a gap, and harvests the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from sae_paper.data import cache
from sae_paper.data.activations import (
    MANIFEST,
    SHARD_CONTEXTS,
    HarvestSpec,
    _check_shard,
    _context_stream,
    _heal,
    _read_manifest,
    _resume_point,
    _shards,
    _start_manifest,
    _write_shard,
    complete,
    harvest,
    site_rows,
)
from sae_paper.data.distributed import World, barrier, broadcast
from sae_paper.data.models import Site
from sae_paper.data.models import model_spec as find_model_spec
from sae_paper.errors import SaePaperError


def _side_file(folder: Path, index: int) -> Path:
    return folder / f"shard_{index:05d}.json"


def _merge(folder: Path, manifest: dict, *, verify: bool = False) -> dict:
    """Append to ``manifest`` every side file that continues it, in order, and write it (under the text's lock);
    ``verify``: check each shard's checksum first (after a crash), dropping a side file that does not match."""
    merged = []
    while (side := _side_file(folder, len(manifest["shards"]))).is_file():
        entry = cache.read_json(side, "activation shard record")
        if verify:
            try:
                _check_shard(folder, entry)
            except SaePaperError as error:
                cache.notice(f"{error}; harvesting it again")
                side.unlink()
                break
        manifest["shards"].append(entry)
        merged.append(side)
    if merged:
        cache.write_json_atomic(folder / MANIFEST, manifest)
        for side in merged:
            side.unlink()
    return manifest


def _written_before(folder: Path, index: int, contexts: int) -> bool:
    """Whether this shard is already there, whole and intact: a side file an earlier, killed run wrote after a
    gap, or the manifest entry that side file was merged into since."""
    side = _side_file(folder, index)
    try:
        entry = cache.read_json(side, "activation shard record")
    except (OSError, SaePaperError):  # none, or another rank merged it just now: then the manifest lists it
        listed = _read_manifest(folder)["shards"]
        if index >= len(listed):
            return False
        entry = listed[index]
    try:
        _check_shard(folder, entry)
    except SaePaperError:
        return False
    return entry["contexts"] == contexts


def _prepare(spec: HarvestSpec, folders: dict[Site, Path], want: dict[Site, int]) -> dict | None:
    """Rank 0, under the lock: the manifests made ready as a one-process harvest makes them, then the plan every
    rank follows (None: nothing to harvest)."""
    model_spec = find_model_spec(spec.model)
    shard_contexts = SHARD_CONTEXTS
    for sibling in sorted(spec.folder().glob(f"*/{MANIFEST}")):  # every site of one text is cut into the same shards
        shard_contexts = _read_manifest(sibling.parent).get("shard_contexts", shard_contexts)
        break
    manifests = {}
    for site, folder in folders.items():
        manifests[site] = _start_manifest(folder, spec, site, site.width(model_spec), shard_contexts)
        _heal(folder, manifests[site])
        _merge(folder, manifests[site], verify=True)
    short = {site: want[site] for site in folders if sum(s["kept"] for s in manifests[site]["shards"]) < want[site]}
    if not short:
        return None
    targets = {site: (folders[site], manifests[site], short[site]) for site in short}
    per_shard, goal, done, first, kept_before = _resume_point(spec, targets)
    for site in short:
        cache.write_json_atomic(folders[site] / MANIFEST, manifests[site])
    return {"per_shard": per_shard, "goal": goal, "done": {str(s): n for s, n in done.items()}, "first": first,
            "kept_before": kept_before, "want": {str(s): n for s, n in short.items()}}


def harvest_ranked(get_model: Callable[[], Any], spec: HarvestSpec, wanted: Mapping[Site, int], here: World, *,
                   batch_size: int = 32) -> list[str]:
    """This rank's share of harvesting ``wanted`` rows per site of ``spec``'s text (every rank calls it with the
    same arguments); when it returns on any rank, the cache is complete. Returns this rank's shards, by file."""
    folders = {site: spec.folder() / str(site) for site in wanted}
    what = f"the activations of {spec.source} ({spec.split}, {spec.model})"
    plan = None
    if here.rank == 0:
        with cache.locked(spec.folder(), what):
            plan = _prepare(spec, folders, dict(wanted))
    plan = broadcast(plan, f"the plan for {what}")
    if plan is None:
        return []
    sites = {str(site): site for site in folders}
    stream = _context_stream(get_model(), spec, plan["first"] * plan["per_shard"])
    written = []
    for index, (tokens, kept, kept_before) in enumerate(
            _shards(stream, spec, plan["per_shard"], plan["kept_before"], plan["goal"]), plan["first"]):
        if (index - plan["first"]) % here.size != here.rank:
            continue
        needing = [sites[name] for name, want in plan["want"].items()
                   if plan["done"][name] <= index and kept_before < want
                   and not _written_before(folders[sites[name]], index, len(tokens))]
        if needing:
            rows = site_rows(get_model(), tokens, needing, batch_size=batch_size, dtype=getattr(torch, spec.dtype))
            for site in needing:
                entry = _write_shard(folders[site], index, rows[site], kept, len(tokens))
                cache.write_json_atomic(_side_file(folders[site], index), entry)
                written.append(f"{site}/{entry['file']}")
        with cache.locked(spec.folder(), what):
            for name in plan["want"]:
                _merge(folders[sites[name]], _read_manifest(folders[sites[name]]))
    barrier(f"the end of harvesting {what}")
    if here.rank == 0:
        with cache.locked(spec.folder(), what):
            for name, want in plan["want"].items():
                manifest = _merge(folders[sites[name]], _read_manifest(folders[sites[name]]))
                if sum(s["kept"] for s in manifest["shards"]) < want:
                    raise SaePaperError(f"the ranks' harvest of {folders[sites[name]]} left a gap in its shards; "
                                        "rerun the same launch to fill it")
    barrier(f"the check of {what}")
    return written


def harvest_all(requests: Iterable[tuple[HarvestSpec, Site]], get_model: Callable[[], Any], *, batch_size: int = 32,
                progress: bool = False, here: World | None = None) -> list[str]:
    """Harvest everything ``requests`` need that is not cached yet, one forward pass per text.

    Requests for the same text (the same cache folder) are merged: every site asked for, up
    to the largest ``n_tokens`` asked for, so a notebook or a sweep that later asks for fewer
    rows or a subset of the sites reads them from this one harvest. ``get_model()`` is called
    only if something must be harvested. ``here``: this rank, when several share the work
    (:func:`harvest_ranked`; every rank must pass the same requests). Returns one line per harvest done.
    """
    merged: dict[Path, tuple[HarvestSpec, dict[Site, int]]] = {}
    for spec, site in requests:
        known = merged.setdefault(spec.folder(), (spec, {}))
        known[1][site] = max(known[1].get(site, 0), spec.n_tokens)
    done = []
    for spec, wanted in merged.values():
        short = {site: n for site, n in sorted(wanted.items()) if not complete(spec.folder() / str(site), n)}
        if here is not None and here.distributed:
            short = broadcast(short, f"what {spec.folder()} lacks")  # every rank deals the same shards
        if short:
            started = time.perf_counter()
            if here is not None and here.distributed:
                harvest_ranked(get_model, spec, short, here, batch_size=batch_size)
            else:
                harvest(get_model(), spec, list(short), batch_size=batch_size, progress=progress, wanted=short)
            done.append(f"{spec.split} text of {spec.source} ({spec.model}) in one pass: "
                        + ", ".join(f"{site} {n:,} rows" for site, n in short.items())
                        + f"; {time.perf_counter() - started:.0f} s")
    return done


