"""A side virtualenv with SAELens and SAEBench, for the slow tests that check our exports with them.

SAELens 6.x requires transformer-lens < 4 and we use transformer-lens 4's
``TransformerBridge``, so the two cannot share an environment. The first slow test that
needs it creates ``<model cache>/side-venvs/<pins>/`` (the model cache is the one the
test suite keeps between runs), installing torch first from the same pin as ours, so
pip takes the CPU build already on disk instead of a CUDA one, and removing torchvision
(pulled in by SAEBench, unused by its core eval, and built against another torch). The
folder is keyed by the pins and marked complete only after every step succeeded;
later runs reuse it. Scripts in ``tests/side/`` run in it and talk to the tests through
files (JSON and safetensors), never through imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sae_paper.data.paths import model_cache_dir

TORCH = "torch==2.13.0"
PINS = (TORCH, "sae-lens==6.54.12", "sae-bench==0.6.0", "transformer-lens<4")
SIDE_SCRIPTS = Path(__file__).parent / "side"
INSTALL_TIMEOUT_S = 1800


def side_python() -> Path:
    """The side venv's interpreter, created on first use (minutes), or skip with pip's own words."""
    key = "-".join(pin.replace("==", "").replace("<", "-lt") for pin in PINS)
    folder = model_cache_dir("side-venvs", key)
    python = folder / "bin" / "python"
    if (folder / "complete").is_file():
        return python
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    started = time.perf_counter()
    pip = [str(staging / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    constraints = staging / "constraints.txt"
    for step in (
        [sys.executable, "-m", "venv", str(staging)],
        [*pip, "install", TORCH],
        [*pip, "install", "-c", str(constraints), *PINS[1:]],
        [*pip, "uninstall", "-y", "torchvision"],
    ):
        if "-c" in step:
            constraints.write_text(TORCH + "\n")  # keeps torch at our pin whatever SAEBench's deps ask for
        done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if done.returncode != 0:
            tail = " | ".join(line for line in (done.stdout + done.stderr).splitlines()[-4:] if line.strip())
            pytest.skip(f"cannot create the SAELens/SAEBench side venv ({' '.join(step[-3:])}): {tail[:400]}")
    (staging / "complete").write_text(f"{' '.join(PINS)}\ncreated in {time.perf_counter() - started:.0f} s\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return python


def run_side(script: str, *args: str, cwd: Path | None = None, timeout: int = 900) -> dict:
    """Run ``tests/side/<script>`` in the side venv; return the JSON it prints last.

    The hub is off (``HF_HUB_OFFLINE``): everything it loads comes from files the test wrote.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(side_python()), str(SIDE_SCRIPTS / script), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{script} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
