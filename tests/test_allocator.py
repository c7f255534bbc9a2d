"""The book's processes keep freed memory for reuse (sae_paper.book.allocator): set here, passed on, user's own kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sae_paper.book.allocator import ENV, TUNABLES

GLIBC = os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc") if hasattr(os, "confstr") else False
pytestmark = pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")

STEPS = """
import json, resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    from sae_paper.book.allocator import keep_freed_memory
    keep_freed_memory()
from sae_paper.core.sae import TiedSAE
from sae_paper.core.train import make_optimizer, train_step
sae = TiedSAE(576, 2304, alpha=1e-3)
optimizer = make_optimizer(sae, 1e-3)
x = torch.randn(128 * 40, 576, generator=torch.Generator().manual_seed(0))
train_step(sae, optimizer, x[:128])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for start in range(128, len(x), 128):
    train_step(sae, optimizer, x[start:start + 128])
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before,
                  "weights": sae.M.detach().double().sum().item(), "bias": sae.b.detach().double().sum().item()}))
"""


def _python(code: str, *args: str, env: dict | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if k != ENV} if env is None else env
    return subprocess.run([sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True,
                          check=True).stdout


def test_training_steps_fault_far_less_and_compute_the_same_bytes():
    """The runner's own process (the harvest) is set at run time by mallopt: an SAE's training steps, which free their
    tensors and ask for the same sizes again, stop landing on fresh pages; the weights they make are the same."""
    plain, kept = (json.loads(_python(STEPS, mode)) for mode in ("plain", "keep"))
    assert kept["faults"] * 3 < plain["faults"], (plain, kept)
    assert (kept["weights"], kept["bias"]) == (plain["weights"], plain["bias"])


def test_the_processes_it_starts_get_the_tunables_and_a_users_own_setting_is_kept():
    show = f"""
import json, subprocess, sys
from sae_paper.book.allocator import keep_freed_memory
added = keep_freed_memory()
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['{ENV}'])"], capture_output=True, text=True)
print(json.dumps(added))
print(child.stdout.strip())
"""
    added, child = _python(show).splitlines()
    assert json.loads(added) == list(TUNABLES)
    assert child == ":".join(f"{name}={size}" for name, (size, _) in TUNABLES.items())
    mine = "glibc.malloc.trim_threshold=4096"
    added, child = _python(show, env={**{k: v for k, v in os.environ.items() if k != ENV}, ENV: mine}).splitlines()
    assert json.loads(added) == ["glibc.malloc.mmap_threshold"]
    assert child == f"{mine}:glibc.malloc.mmap_threshold={TUNABLES['glibc.malloc.mmap_threshold'][0]}"
