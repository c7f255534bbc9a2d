"""The book's processes keep the memory they free for their next tensors, instead of handing it back to the OS.

Why: glibc's ``malloc`` serves a block above its mmap threshold (128 KiB at first, raised as blocks
are freed, to at most 32 MiB) from a fresh ``mmap``, and gives memory at the top of its heap back
once more than its trim threshold is free. A training step or a forward pass frees its tensors
and asks for the same sizes again, so each step's tensors landed on fresh pages, each page a fault
and a zeroing in the kernel: a cold default build measured 99 million minor page faults and 249 s
of system time beside 3,032 s of user time (8 %), on work no result depends on. With the thresholds
fixed (mmap only above 32 MiB, trim only above 1 GiB free), an SAE's training makes 16 thousand faults
where it made 150 to 300 thousand, and a forward pass about a quarter of them
(``benchmarks/allocator_faults.py``). The bytes computed are the same: torch asks for its own
alignment, whoever serves the memory.

:func:`keep_freed_memory` sets them in this process (``mallopt``) and, through ``GLIBC_TUNABLES``,
in every process it starts (the lanes, their kernels, torchrun's ranks). A tunable the user set
already is left as it is. Off glibc it does nothing. The price: a process holds up to 1 GiB it no
longer uses until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV = "GLIBC_TUNABLES"
TUNABLES = {"glibc.malloc.mmap_threshold": (32 << 20, -3), "glibc.malloc.trim_threshold": (1 << 30, -1)}
"""Tunable → (bytes, its ``mallopt`` parameter: ``M_MMAP_THRESHOLD`` -3, ``M_TRIM_THRESHOLD`` -1)."""


def keep_freed_memory() -> list[str]:
    """Set :data:`TUNABLES` for this process and the ones it starts, each unless already in ``GLIBC_TUNABLES``;
    return the tunables set (none off glibc)."""
    path = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(path).mallopt if path else None
    except (OSError, AttributeError):  # not glibc: no mallopt
        mallopt = None
    if mallopt is None:
        return []
    current = [part for part in os.environ.get(ENV, "").split(":") if part]
    given = {part.split("=", 1)[0] for part in current}
    added = [name for name in TUNABLES if name not in given]
    for name in added:
        size, parameter = TUNABLES[name]
        mallopt(parameter, size)
    if added:
        os.environ[ENV] = ":".join(current + [f"{name}={TUNABLES[name][0]}" for name in added])
    return added
