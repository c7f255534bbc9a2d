"""Content hashes of what a score depends on: a decomposition, a site's activations, the fragments.

Scores are cached by what they are computed from (:func:`~sae_paper.analysis.autointerp.scoring.score_decomposition`),
not by the names of the notebook's objects: a retrained SAE, a refitted ICA or another fragment
pool gives another key by itself, with no setting to forget. Hashing is cheap beside scoring (an
SAE's weights are megabytes; a 2,000-fragment pool's activations, 300 MB, hash in well under a
second) and a tensor or fragment pool hashed once is remembered for as long as it lives, so the
methods scored on one site's activations hash them once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import weakref
from typing import Any

import torch
from torch import Tensor

_SEEN: dict[int, tuple[weakref.ref, tuple, str]] = {}


def _remembered(obj: Any, state: tuple, compute) -> str:
    """``compute()``, kept for ``obj`` while it lives and its ``state`` (shape, in-place version) is unchanged."""
    found = _SEEN.get(id(obj))
    if found is not None and found[0]() is obj and found[1] == state:
        return found[2]
    digest = compute()
    key = id(obj)
    _SEEN[key] = (weakref.ref(obj, lambda _, key=key: _SEEN.pop(key, None)), state, digest)
    return digest


def tensor_digest(tensor: Tensor) -> str:
    """sha256 of a tensor's dtype, shape and values."""
    def compute() -> str:
        digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    return _remembered(tensor, (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor._version), compute)


def fingerprint(value: Any) -> str:
    """sha256 of an object's class and everything it holds: tensors by value, modules by their state,
    settings by ``repr``, nested objects field by field (a decomposition, a backend's settings)."""
    digest = hashlib.sha256()

    def visit(item: Any) -> None:
        if isinstance(item, Tensor):
            digest.update(tensor_digest(item).encode())
        elif isinstance(item, torch.nn.Module):
            digest.update(type(item).__qualname__.encode())
            visit(dict(item.state_dict()))
        elif isinstance(item, (str, int, float, bool, type(None))):
            digest.update(repr(item).encode())
        elif isinstance(item, (list, tuple)):
            digest.update(b"[")
            for element in item:
                visit(element)
            digest.update(b"]")
        elif isinstance(item, dict):
            for name in sorted(item, key=str):
                if not str(name).startswith("_"):  # private: handles, keys, open models
                    digest.update(str(name).encode() + b"=")
                    visit(item[name])
        elif dataclasses.is_dataclass(item):
            digest.update(type(item).__qualname__.encode())
            visit({f.name: getattr(item, f.name) for f in dataclasses.fields(item)})
        elif hasattr(item, "__dict__"):
            digest.update(type(item).__qualname__.encode())
            visit(vars(item))
        else:
            digest.update(repr(item).encode())

    visit(value)
    return digest.hexdigest()


def fragments_digest(fragments) -> str:
    """sha256 of a fragment pool's token ids and token texts (what the explainer and simulator read)."""
    return _remembered(fragments, (), lambda: hashlib.sha256(
        tensor_digest(fragments.tokens).encode() + json.dumps(fragments.token_strings).encode()).hexdigest())
