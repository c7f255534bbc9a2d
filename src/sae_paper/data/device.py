"""The one place a device is chosen: ``RunConfig.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) resolved here.

Everything that places a model, an SAE or a batch (``data/models.py``, training, the metrics,
the fragment pass, patching, the case studies) asks :func:`resolve_device`, so a run on a GPU box
and one on a laptop differ only in this setting. ``auto`` is CUDA when torch sees a GPU, else
the CPU. Under ``torchrun`` a bare ``cuda`` (or ``auto`` on a GPU box) means ``cuda:LOCAL_RANK``:
each rank gets its own GPU. The device never enters a cache key: it says where a result is
computed, not what it is (``tests/test_device.py`` checks that no other module picks a device).
"""

from __future__ import annotations

import os
import re

import torch
from torch import Tensor

from sae_paper.errors import SaePaperError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
"""The accepted spellings of ``RunConfig.device``."""


def check_device(name: str) -> str:
    """``name`` if it is a device setting this library accepts; else one error line."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise SaePaperError(f"device {name!r}: must be auto, cpu, cuda or cuda:N")
    return name


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (the one question of this kind the package asks, here)."""
    return torch.cuda.is_available()


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device a setting names: ``auto`` (or None) is CUDA when available, else CPU; a bare
    ``cuda`` is ``cuda:LOCAL_RANK`` under torchrun. A CUDA device without a GPU is one error line."""
    if isinstance(name, torch.device):
        return name
    name = check_device("auto" if name is None else name)
    if name == "auto":
        name = "cuda" if cuda_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not cuda_available():
        raise SaePaperError(f"device {name!r} asked for, but torch sees no CUDA GPU here; use device=auto or cpu")
    index = int(name.partition(":")[2] or os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise SaePaperError(f"device cuda:{index} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def to_device(batch: Tensor, device: torch.device) -> Tensor:
    """``batch`` on ``device``: through pinned memory with a non-blocking copy when that is a GPU (the copy
    then overlaps the previous step), unchanged on the CPU."""
    if device.type != "cuda" or batch.device == device:
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


def device_type(device: str | torch.device) -> str:
    """``cpu``, ``cuda``, ...: the kind of device a setting or a torch device names (what a choice made per kind of
    device, such as the training step's kernel, keys on); no GPU is needed to ask."""
    return torch.device(device).type


def harvest_dtype(device: str | torch.device | None, stored: str) -> str | None:
    """The precision a harvest runs the model in: the dtype its cache stores on a GPU (half-precision matmuls are
    fast there, and the rows are kept in that dtype anyway), None (float32) on the CPU, where half precision is slow
    and the CPU book's cached activations were computed in float32 and then stored."""
    return stored if device_type(resolve_device(device)) == "cuda" else None


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously), so a timing around it is true; nothing on the CPU."""
    if device_type(device) == "cuda":
        torch.cuda.synchronize(device)


def fused_adam_runs_on(device: torch.device) -> bool:
    """Whether torch's single-kernel (fused) Adam runs on this device type (the CPU and CUDA)."""
    return device.type in ("cpu", "cuda")


def gpu_name() -> str | None:
    """The first GPU's name, for provenance records (None without one)."""
    return torch.cuda.get_device_name(0) if cuda_available() else None
