"""Activation sources for training: an in-memory tensor, or a harvested disk cache.

Both give the same interface, :class:`ActivationBatches`: ``d_in``, ``n_rows`` and
``batches(batch_size, seed=, epoch=)``, which yields float32 ``[batch, d_in]`` tensors in
an order fixed by ``(seed, epoch)``, so a resumed training run sees the same batches.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sae_paper.data import cache
from sae_paper.data.models import Site
from sae_paper.data.models import model_spec as find_model_spec
from sae_paper.data.paths import cache_dir
from sae_paper.data.text import POLICY_VERSION, Split, iter_contexts, kept_positions
from sae_paper.errors import SaePaperError


class ActivationBatches(Protocol):
    d_in: int
    n_rows: int

    def batches(self, batch_size: int, *, seed: int, epoch: int) -> Iterator[Tensor]:
        """Shuffled float32 batches [batch, d_in], the order fixed by (seed, epoch); the last may be short."""
        ...


class InMemoryActivations:
    """Activations already in RAM (tests, synthetic data, small experiments)."""

    def __init__(self, rows: Tensor):
        if rows.ndim != 2:
            raise SaePaperError(f"activations must be [n_rows, d_in], got shape {tuple(rows.shape)}")
        self.rows = rows
        self.n_rows, self.d_in = rows.shape

    def batches(self, batch_size: int, *, seed: int, epoch: int) -> Iterator[Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_rows, generator=generator)
        for start in range(0, self.n_rows, batch_size):
            yield self.rows[order[start : start + batch_size]].float()


# --------------------------------------------------------------------------------------
# Harvesting to a disk cache
# --------------------------------------------------------------------------------------
#
# Layout: <cache>/activations/<model>/<source>-<split>-<key>/<site>/
#   manifest.json             the text it was read from, and each shard's contexts, rows and sha256
#   shard_00000.safetensors   "activations" [rows, d]: every non-BOS position of `shard_contexts`
#                             contexts, in stream order; "kept" [rows]: the positions the
#                             separator-row policy keeps (sae_paper.data.text.kept_positions)
# The key holds the text (model, source, split, context length, dtype, seed, document cut,
# policy version) but not the number of tokens: one cache per text grows to the largest
# request, and a smaller request reads its first rows, which are exactly what a smaller
# harvest would have written (the context stream is fixed by the seed). So every notebook
# and sweep that reads this text shares one cache, and a harvest writes every requested site
# from one pass over the text, each batch's forward pass stopping at the deepest site that
# still needs rows. Each shard is written to a
# temporary name and renamed, then the manifest is rewritten, so an interrupted harvest
# resumes after its last whole shard. A harvest holds the text's lock (``<folder>/.lock``,
# :func:`sae_paper.data.cache.locked`), so a second process asking for the same text waits, then
# finds the rows it needs. The manifest's "computed" list records each harvest that added
# shards (commit, library version, first shard); a shard listed but missing is harvested
# again (said on stderr), a shard whose checksum differs is refused with its name.

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
SHARD_CONTEXTS = 256


@dataclass(frozen=True)
class HarvestSpec:
    """A request for activations: ``n_tokens`` kept rows (see :func:`sae_paper.data.text.kept_positions`)
    of one text; the cache folder is keyed by every field but ``n_tokens``."""

    model: str
    source: str
    split: Split
    n_tokens: int
    context_length: int
    dtype: str
    seed: int
    max_document_tokens: int | None = 512

    def text_key(self) -> dict:
        """What the cached rows depend on (``n_tokens`` only says how many are wanted)."""
        fields = {k: v for k, v in asdict(self).items() if k != "n_tokens"}
        return {**fields, "format": FORMAT_VERSION, "policy": POLICY_VERSION, "computation": cache.version("activations")}

    def folder(self) -> Path:
        key = hashlib.sha256(json.dumps(self.text_key(), sort_keys=True).encode()).hexdigest()[:12]
        return cache_dir("activations", self.model) / f"{self.source}-{self.split}-{key}"


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise SaePaperError(f"no activation cache at {folder} (missing {MANIFEST}); run `sae-paper harvest`")
    return cache.read_json(path, "activation cache manifest")


def kept_rows(folder: Path) -> int:
    """How many kept rows a site's cache holds now (0 when there is none)."""
    try:
        return sum(shard["kept"] for shard in _read_manifest(folder).get("shards", []))
    except SaePaperError:
        return 0


def _needed(shards: list[dict], n_rows: int) -> list[dict]:
    """The first shards that hold ``n_rows`` kept rows (all of them when they hold fewer)."""
    needed, total = [], 0
    for shard in shards:
        if total >= n_rows:
            break
        needed.append(shard)
        total += shard["kept"]
    return needed


def complete(folder: Path, n_rows: int) -> bool:
    """Whether a site's cache can serve its first ``n_rows`` kept rows as it is: the manifest lists them,
    their shard files are present, and no ``--recompute`` asks for them afresh. (Checksums are
    verified when the cache is opened: a corrupt shard is an error, not a reason to harvest.)"""
    if not (folder / MANIFEST).is_file():
        return False
    try:
        manifest = _read_manifest(folder)
    except SaePaperError:
        return False  # harvest() reads it again and names the file
    shards = manifest.get("shards", [])
    return (sum(shard["kept"] for shard in shards) >= n_rows
            and all((folder / shard["file"]).is_file() for shard in _needed(shards, n_rows))
            and not any(cache.stale("activations", record) for record in manifest.get("computed", [{}])))


class ActivationCache:
    """The first ``n_rows`` kept rows of one site's harvested activations (all of them by default),
    checked against the manifest when opened.

    Rows the separator-row policy drops are never returned by :meth:`batches` or
    :meth:`read_all`; :meth:`read_aligned` gives every non-BOS position of whole contexts with
    the policy's mask, for code that maps rows back to tokens.
    """

    def __init__(self, folder: Path, *, n_rows: int | None = None, verify: bool = True):
        self.folder = Path(folder)
        self.manifest = _read_manifest(self.folder)
        self.d_in = int(self.manifest["d"])
        shards, limits, total = [], [], 0
        for shard in self.manifest["shards"]:
            if n_rows is not None and total >= n_rows:
                break
            take = shard["kept"] if n_rows is None else min(shard["kept"], n_rows - total)
            shards.append(shard)
            limits.append(take)
            total += take
        if n_rows is not None and total < n_rows:
            raise SaePaperError(f"activation cache {self.folder} is incomplete: {total:,} of the {n_rows:,} rows asked "
                                "for are harvested; rerun the harvest to extend it")
        self.shards, self.limits, self.n_rows = shards, limits, total
        if verify:
            for shard in self.shards:
                _check_shard(self.folder, shard)
        for record in self.manifest.get("computed", [None]):  # the harvests that wrote the shards read
            if record is None or record.get("first_shard", 0) < len(self.shards):
                cache.note_used("activations", f"{self.folder}#{(record or {}).get('first_shard', 0)}", record)

    @property
    def n_contexts(self) -> int:
        """How many contexts (from the start of the text) hold this view's rows."""
        if not self.shards:
            return 0
        from safetensors import safe_open

        with safe_open(self.folder / self.shards[-1]["file"], framework="pt") as handle:
            kept = handle.get_tensor("kept")
        last_row = int(torch.nonzero(kept)[self.limits[-1] - 1]) if self.limits[-1] else -1
        per_context = self.manifest["context_length"] - 1
        return sum(shard["contexts"] for shard in self.shards[:-1]) + last_row // per_context + 1

    def _load(self, index: int) -> dict[str, Tensor]:
        from safetensors.torch import load_file

        return load_file(self.folder / self.shards[index]["file"])

    def shard(self, index: int) -> Tensor:
        """The kept rows of shard ``index`` that belong to this view."""
        tensors = self._load(index)
        return tensors["activations"][tensors["kept"]][: self.limits[index]]

    def read_all(self) -> Tensor:
        """Every kept row of the view, float32 ``[n_rows, d_in]`` (for evaluation-sized caches)."""
        return torch.cat([self.shard(i).float() for i in range(len(self.shards))])

    def read_aligned(self) -> tuple[Tensor, Tensor]:
        """(rows ``[n_contexts · (ctx_len − 1), d_in]`` of every non-BOS position, kept mask ``[same]``) of the
        :attr:`n_contexts` whole contexts that hold this view's rows, in stream order."""
        rows = [self._load(index) for index in range(len(self.shards))]
        end = self.n_contexts * (self.manifest["context_length"] - 1)
        return (torch.cat([r["activations"].float() for r in rows])[:end], torch.cat([r["kept"] for r in rows])[:end])

    def batches(self, batch_size: int, *, seed: int, epoch: int, buffer_shards: int = 2) -> Iterator[Tensor]:
        """Shuffled float32 batches without loading the whole cache: shards in a seeded order,
        rows shuffled within a buffer of ``buffer_shards`` shards."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.shards), generator=generator).tolist()
        leftover = torch.empty(0, self.d_in)
        for start in range(0, len(order), buffer_shards):
            pool = torch.cat([leftover] + [self.shard(i).float() for i in order[start : start + buffer_shards]])
            pool = pool[torch.randperm(len(pool), generator=generator)]
            usable = len(pool) // batch_size * batch_size
            for row in range(0, usable, batch_size):
                yield pool[row : row + batch_size]
            leftover = pool[usable:]
        if len(leftover):
            yield leftover


def _check_shard(folder: Path, shard: dict) -> None:
    path = folder / shard["file"]
    if not path.is_file():
        raise SaePaperError(f"activation cache shard {path} is missing; rerun the harvest to harvest it again")
    if cache.sha256_file(path) != shard["sha256"]:
        raise SaePaperError(
            f"activation cache shard {path} is corrupt (checksum mismatch); delete that file and rerun the harvest to rebuild it"
        )


def harvest(
    model,
    spec: HarvestSpec,
    sites: Sequence[Site],
    *,
    batch_size: int = 32,
    shard_contexts: int = SHARD_CONTEXTS,
    progress: bool = True,
    wanted: Mapping[Site, int] | None = None,
) -> dict[Site, ActivationCache]:
    """The first ``spec.n_tokens`` kept rows of ``sites`` over ``spec``'s text, cached on disk.

    A site whose cache already holds that many rows is read as it is; the others are harvested
    (or extended, or resumed) together in one pass over the text, each batch's forward pass
    stopping at the deepest site that still needs rows. ``wanted``: a different number of rows
    for some sites (a shallow site may want more rows than a deep one; default ``spec.n_tokens``
    for each). ``model`` is a TransformerBridge from :func:`sae_paper.data.models.load_model` for
    ``spec.model`` (or ``None`` when every site is known to be cached already).
    """
    model_spec = find_model_spec(spec.model)
    sites = sorted({site.check(model_spec) for site in sites})
    root = spec.folder()
    folders = {site: root / str(site) for site in sites}
    want = {site: int((wanted or {}).get(site, spec.n_tokens)) for site in sites}
    if all(complete(folders[site], want[site]) for site in sites):  # no lock needed to read a complete cache
        for site in sites:
            _check_settings(folders[site], _read_manifest(folders[site]), spec, site, site.width(model_spec))
        return {site: ActivationCache(folders[site], n_rows=want[site]) for site in sites}
    with cache.locked(root, f"the activations of {spec.source} ({spec.split}, {spec.model})"):
        for sibling in sorted(root.glob(f"*/{MANIFEST}")):  # every site of one text is cut into the same shards
            shard_contexts = _read_manifest(sibling.parent).get("shard_contexts", shard_contexts)
            break
        manifests = {site: _start_manifest(folders[site], spec, site, site.width(model_spec), shard_contexts)
                     for site in sites}
        for site in sites:
            _heal(folders[site], manifests[site])
        short = [site for site in sites if sum(s["kept"] for s in manifests[site]["shards"]) < want[site]]
        if short and model is None:
            raise SaePaperError("the activation cache is not complete and no model was given to harvest it")
        if short:
            _extend(model, spec, {site: (folders[site], manifests[site], want[site]) for site in short},
                    batch_size=batch_size, progress=progress)
    return {site: ActivationCache(folders[site], n_rows=want[site], verify=site not in short) for site in sites}


def _heal(folder: Path, manifest: dict) -> None:
    """Make ``manifest`` list only what is there (under the lock): harvest a missing shard again, from
    there on, and everything when ``--recompute activations`` asked for it. Never deletes a file."""
    if manifest["shards"] and any(cache.stale("activations", r) for r in manifest.get("computed", [{}])):
        cache.notice(f"recomputing the activations in {folder}, as asked (--recompute); "
                     f"its {len(manifest['shards'])} shards are harvested again")
        manifest["shards"], manifest["computed"] = [], []
    for index, shard in enumerate(manifest["shards"]):
        if not (folder / shard["file"]).is_file():
            cache.notice(f"activation cache {folder} is incomplete: {shard['file']}, listed in its manifest, is missing; "
                         f"harvesting it again (and the {len(manifest['shards']) - index - 1} shards after it)")
            del manifest["shards"][index:]
            manifest["computed"] = [r for r in manifest.get("computed", []) if r.get("first_shard", 0) < index]
            cache.write_json_atomic(folder / MANIFEST, manifest)
            break


def _extend(model, spec: HarvestSpec, targets: dict[Site, tuple[Path, dict, int]], *, batch_size: int,
            progress: bool) -> None:
    """Harvest shards until every target site holds the kept rows it wants (the third item of its target)."""
    per_shard, goal, done, first, kept_before = _resume_point(spec, targets)
    stream = _context_stream(model, spec, first * per_shard)
    bar = tqdm(total=goal, initial=min(kept_before, goal), unit="tok", unit_scale=True,
               disable=not progress, desc=f"harvest {spec.model} {','.join(map(str, targets))}")
    for index, (tokens, kept, kept_before_shard) in enumerate(_shards(stream, spec, per_shard, kept_before, goal), first):
        needing = [site for site, (_, _, want) in targets.items() if done[site] <= index and kept_before_shard < want]
        if needing:
            rows = site_rows(model, tokens, needing, batch_size=batch_size, dtype=getattr(torch, spec.dtype))
            for site in needing:
                folder, manifest, _ = targets[site]
                _append_shard(folder, manifest, rows[site], kept, len(tokens))
                done[site] += 1
        bar.update(min(int(kept.sum()), goal - bar.n))
    bar.close()


def _resume_point(spec: HarvestSpec, targets: dict[Site, tuple[Path, dict, int]]) -> tuple[int, int, dict[Site, int], int, int]:
    """Where a harvest of ``targets`` starts: (contexts a shard, kept rows wanted, whole shards each site holds,
    the first shard to read, kept rows before it). Drops a short tail shard from the manifests (it is
    harvested again, longer), checks the shards kept and stamps this harvest in each manifest (in memory)."""
    per_shard = next(iter(targets.values()))[1]["shard_contexts"]
    goal = max(want for _, _, want in targets.values())
    done: dict[Site, int] = {}
    for site, (folder, manifest, _) in targets.items():
        whole = [shard for shard in manifest["shards"] if shard["contexts"] == per_shard]
        del manifest["shards"][len(whole):]  # a short tail shard is harvested again, longer
        for shard in manifest["shards"]:
            _check_shard(folder, shard)
        done[site] = len(manifest["shards"])
        manifest.setdefault("computed", []).append(
            {**cache.stamp("activations", f"{folder}#{done[site]}"), "first_shard": done[site]})
    first = min(done.values())
    cache.notice(f"harvesting {spec.split} activations of {spec.source} ({', '.join(map(str, targets))}, up to {goal:,} rows) "
                 f"from shard {first} into {spec.folder()}")
    kept_before = sum(shard["kept"] for shard in targets[min(done, key=done.get)][1]["shards"])  # type: ignore[arg-type]  # every site is in done
    return per_shard, goal, done, first, kept_before


def _context_stream(model, spec: HarvestSpec, skip: int) -> Iterator[Tensor]:
    """The text's contexts in stream order, the first ``skip`` passed over."""
    stream = iter_contexts(
        spec.source, model.tokenizer, context_length=spec.context_length,
        bos_token_id=find_model_spec(spec.model).bos_token_id, split=spec.split, seed=spec.seed,
        max_document_tokens=spec.max_document_tokens,
    )
    for _ in range(skip):
        next(stream, None)
    return stream


def _shards(stream: Iterator[Tensor], spec: HarvestSpec, per_shard: int, kept_total: int,
            goal: int) -> Iterator[tuple[Tensor, Tensor, int]]:
    """Cut the context stream into shards of ``per_shard`` contexts until ``goal`` kept rows: (contexts, kept mask
    of their non-BOS positions, kept rows before the shard) each; the last shard stops at the goal."""
    bos = find_model_spec(spec.model).bos_token_id
    while kept_total < goal:
        kept_before_shard, chunk = kept_total, []
        for context in stream:
            chunk.append(context)
            kept_total += int(kept_positions(context[None], bos).sum())
            if len(chunk) == per_shard or kept_total >= goal:
                break
        if not chunk:
            raise SaePaperError(f"text source {spec.source} ran out after {kept_total:,} kept rows; {goal:,} were asked for")
        tokens = torch.stack(chunk)
        yield tokens, kept_positions(tokens, bos)[:, 1:].reshape(-1), kept_before_shard


def site_rows(model, tokens: Tensor, sites: Sequence[Site], *, batch_size: int, dtype: torch.dtype) -> dict[Site, Tensor]:
    """Every non-BOS position's activation at each of ``sites`` for ``tokens`` [contexts, ctx_len], in ``dtype`` on
    the CPU; one forward pass per batch, stopping after the deepest site's block."""
    captured: dict[Site, Tensor] = {}

    def capture(site: Site):
        def hook(activation: Tensor, hook) -> Tensor:
            captured[site] = activation[:, 1:].reshape(-1, activation.shape[-1]).to(dtype)
            return activation
        return hook

    pending: dict[Site, list[Tensor]] = {site: [] for site in sites}
    hooks = [(site.hook_name, capture(site)) for site in sites]
    with torch.inference_mode():
        for start in range(0, len(tokens), batch_size):
            model.run_with_hooks(tokens[start : start + batch_size], stop_at_layer=max(s.layer for s in sites) + 1,
                                 fwd_hooks=hooks)
            for site in sites:
                pending[site].append(captured[site].cpu())
    return {site: torch.cat(pending[site]) for site in sites}


def _start_manifest(folder: Path, spec: HarvestSpec, site: Site, width: int, shard_contexts: int) -> dict:
    """The existing manifest if it matches this request, else a fresh one; a mismatch is an error."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    if path.is_file():
        return _check_settings(folder, _read_manifest(folder), spec, site, width)
    manifest = {**_settings(spec, site, width), "shard_contexts": shard_contexts, "shards": [],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    cache.write_json_atomic(path, manifest)
    return manifest


def _settings(spec: HarvestSpec, site: Site, width: int) -> dict:
    return {**spec.text_key(), "site": site.kind, "layer": site.layer, "hook": site.hook_name, "d": width}


def _check_settings(folder: Path, manifest: dict, spec: HarvestSpec, site: Site, width: int) -> dict:
    """``manifest`` if it was written for this request's text and site; else one error line naming what differs."""
    differs = sorted(key for key, value in _settings(spec, site, width).items() if manifest.get(key) != value)
    if differs:
        raise SaePaperError(f"activation cache {folder} was written for different settings ({', '.join(differs)}); "
                            "delete it to re-harvest")
    return manifest


def _append_shard(folder: Path, manifest: dict, rows: Tensor, kept: Tensor, contexts: int) -> None:
    manifest["shards"].append(_write_shard(folder, len(manifest["shards"]), rows, kept, contexts))
    cache.write_json_atomic(folder / MANIFEST, manifest)


def _write_shard(folder: Path, index: int, rows: Tensor, kept: Tensor, contexts: int) -> dict:
    """Write shard ``index`` (:func:`~sae_paper.data.cache.atomic_write`); return its manifest entry, checksum included."""
    from safetensors.torch import save_file

    name = f"shard_{index:05d}.safetensors"
    cache.atomic_write(folder / name, lambda tmp: save_file({"activations": rows.contiguous(),
                                                               "kept": kept.contiguous()}, tmp))
    return {"file": name, "contexts": contexts, "rows": len(rows), "kept": int(kept.sum()),
            "sha256": cache.sha256_file(folder / name)}
