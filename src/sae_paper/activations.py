"""Activation sources for training: an in-memory tensor, or a harvested disk cache.

Both give the same interface, :class:`ActivationBatches`: ``d_in``, ``n_rows`` and
``batches(batch_size, seed=, epoch=)``, which yields float32 ``[batch, d_in]`` tensors in
an order fixed by ``(seed, epoch)``, so a resumed training run sees the same batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sae_paper import SaePaperError
from sae_paper.data import iter_contexts
from sae_paper.models import Site
from sae_paper.models import model_spec as find_model_spec
from sae_paper.paths import cache_dir


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
#   manifest.json             what was harvested, and each shard's rows and sha256
#   shard_00000.safetensors   one tensor "activations" [rows, d]
# A harvest writes every requested site in lockstep from one forward pass that stops at
# the deepest layer needed. Each shard is written to a temporary name and renamed, then
# the manifest is rewritten, so an interrupted harvest resumes after its last whole shard.

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class HarvestSpec:
    """What an activation cache holds; its folder is keyed by these fields."""

    model: str
    source: str
    split: str
    n_tokens: int
    context_length: int
    dtype: str
    seed: int
    max_document_tokens: int | None = 512

    def folder(self) -> Path:
        key = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        return cache_dir("activations", self.model) / f"{self.source}-{self.split}-{key}"

    @property
    def tokens_per_context(self) -> int:
        return self.context_length - 1  # position 0 (BOS) is never harvested

    @property
    def n_contexts(self) -> int:
        return -(-self.n_tokens // self.tokens_per_context)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


class ActivationCache:
    """One site's harvested activations on disk, checked against its manifest when opened."""

    def __init__(self, folder: Path, *, verify: bool = True):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise SaePaperError(f"no activation cache at {self.folder} (missing {MANIFEST}); run `sae-paper harvest`")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            raise SaePaperError(f"activation cache manifest {manifest_path} is corrupt (not JSON); delete {self.folder} to re-harvest") from None
        if not self.manifest.get("complete"):
            raise SaePaperError(f"activation cache {self.folder} is incomplete; rerun the harvest to resume it")
        self.d_in = int(self.manifest["d"])
        self.n_rows = sum(shard["rows"] for shard in self.manifest["shards"])
        if verify:
            for shard in self.manifest["shards"]:
                _check_shard(self.folder, shard)

    def shard(self, index: int) -> Tensor:
        from safetensors.torch import load_file

        return load_file(self.folder / self.manifest["shards"][index]["file"])["activations"]

    def read_all(self) -> Tensor:
        """Every row, float32 ``[n_rows, d_in]`` (for evaluation-sized caches)."""
        return torch.cat([self.shard(i).float() for i in range(len(self.manifest["shards"]))])

    def batches(self, batch_size: int, *, seed: int, epoch: int, buffer_shards: int = 2) -> Iterator[Tensor]:
        """Shuffled float32 batches without loading the whole cache: shards in a seeded order,
        rows shuffled within a buffer of ``buffer_shards`` shards."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.manifest["shards"]), generator=generator).tolist()
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
        raise SaePaperError(f"activation cache shard {path} is missing; rerun the harvest to rebuild it")
    if _sha256(path) != shard["sha256"]:
        raise SaePaperError(
            f"activation cache shard {path} is corrupt (checksum mismatch); delete that file and rerun the harvest to rebuild it"
        )


def harvest(
    model,
    spec: HarvestSpec,
    sites: Sequence[Site],
    *,
    batch_size: int = 32,
    shard_contexts: int = 256,
    progress: bool = True,
) -> dict[Site, ActivationCache]:
    """Activations of ``sites`` over ``spec``'s text, from one forward pass per batch, cached on disk.

    A complete cache is reused as it is; an interrupted one resumes after its last whole shard.
    ``model`` is a TransformerBridge from :func:`sae_paper.models.load_model` for ``spec.model``
    (or ``None`` when every site is known to be cached already).
    """
    model_spec = find_model_spec(spec.model)
    sites = sorted({site.check(model_spec) for site in sites})
    root = spec.folder()
    folders = {site: root / str(site) for site in sites}
    manifests = {site: _start_manifest(folders[site], spec, site, site.width(model_spec)) for site in sites}
    if all(manifest["complete"] for manifest in manifests.values()):
        return {site: ActivationCache(folders[site]) for site in sites}
    if model is None:
        raise SaePaperError("the activation cache is not complete and no model was given to harvest it")

    # Resume from the shards every site has (they are written in lockstep).
    done_shards = min(len(m["shards"]) for m in manifests.values())
    for site, manifest in manifests.items():
        del manifest["shards"][done_shards:]
        for shard in manifest["shards"]:
            _check_shard(folders[site], shard)
    rows_done = sum(shard["rows"] for shard in manifests[sites[0]]["shards"])
    contexts_done = rows_done // spec.tokens_per_context

    stream = iter_contexts(
        spec.source, model.tokenizer, context_length=spec.context_length, bos_token_id=model_spec.bos_token_id,
        split=spec.split, seed=spec.seed, max_document_tokens=spec.max_document_tokens,
    )
    for _ in range(contexts_done):
        next(stream, None)
    stop_at_layer = max(site.layer for site in sites) + 1
    dtype = getattr(torch, spec.dtype)
    bar = tqdm(total=spec.n_tokens, initial=rows_done, unit="tok", unit_scale=True, disable=not progress,
               desc=f"harvest {spec.model} {','.join(map(str, sites))}")
    pending: dict[Site, list[Tensor]] = {site: [] for site in sites}
    captured: dict[Site, Tensor] = {}

    def capture(site: Site):
        def hook(activation: Tensor, hook) -> Tensor:
            captured[site] = activation[:, 1:].reshape(-1, activation.shape[-1]).to(dtype)
            return activation
        return hook

    hooks = [(site.hook_name, capture(site)) for site in sites]
    contexts_left = spec.n_contexts - contexts_done
    with torch.inference_mode():
        while contexts_left > 0:
            chunk = [context for _, context in zip(range(min(shard_contexts, contexts_left)), stream)]
            if not chunk:
                raise SaePaperError(f"text source {spec.source} ran out after {spec.n_contexts - contexts_left} contexts")
            tokens = torch.stack(chunk)
            for start in range(0, len(tokens), batch_size):
                model.run_with_hooks(tokens[start : start + batch_size], stop_at_layer=stop_at_layer, fwd_hooks=hooks)
                for site in sites:
                    pending[site].append(captured[site].cpu())
                bar.update(min(len(tokens[start : start + batch_size]) * spec.tokens_per_context, spec.n_tokens - bar.n))
            contexts_left -= len(tokens)
            for site in sites:
                rows = torch.cat(pending[site])
                rows_total = sum(s["rows"] for s in manifests[site]["shards"])
                rows = rows[: spec.n_tokens - rows_total]
                _append_shard(folders[site], manifests[site], rows)
                pending[site] = []
    bar.close()
    for site in sites:
        manifests[site]["complete"] = True
        _write_json_atomic(folders[site] / MANIFEST, manifests[site])
    return {site: ActivationCache(folders[site], verify=False) for site in sites}


def _start_manifest(folder: Path, spec: HarvestSpec, site: Site, width: int) -> dict:
    """The existing manifest if it matches this request, else a fresh one; a mismatch is an error."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {"format": FORMAT_VERSION, **asdict(spec), "site": site.kind, "layer": site.layer,
                "hook": site.hook_name, "d": width}
    path = folder / MANIFEST
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise SaePaperError(f"activation cache manifest {path} is corrupt (not JSON); delete {folder} to re-harvest") from None
        differs = sorted(key for key, value in expected.items() if manifest.get(key) != value)
        if differs:
            raise SaePaperError(
                f"activation cache {folder} was written for different settings ({', '.join(differs)}); "
                f"delete it to re-harvest"
            )
        return manifest
    manifest = {**expected, "shards": [], "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write_json_atomic(path, manifest)
    return manifest


def _append_shard(folder: Path, manifest: dict, rows: Tensor) -> None:
    from safetensors.torch import save_file

    name = f"shard_{len(manifest['shards']):05d}.safetensors"
    tmp = folder / (name + ".tmp")
    save_file({"activations": rows.contiguous()}, tmp)
    os.replace(tmp, folder / name)
    manifest["shards"].append({"file": name, "rows": len(rows), "sha256": _sha256(folder / name)})
    _write_json_atomic(folder / MANIFEST, manifest)
