"""Shared fixtures: seeded RNGs, a scratch cache per test, the small random Pythia model.

Test tiers (see README): unit tests use hand-set tensors; integration tests load
``pythia-70m-deduped-random`` (built from the shared configs, ~2 s); tests marked
``slow`` load the real SmolLM2 (its first conversion takes ~45 s, then it is cached in
the model cache, which the scratch cache deliberately does not replace).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sae_paper.data.paths import model_cache_dir


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def scratch_cache(tmp_path, monkeypatch) -> Path:
    """Each test writes activations and SAEs to its own folder; converted models stay shared."""
    models = model_cache_dir()
    monkeypatch.setenv("SAE_PAPER_MODEL_CACHE", str(models))
    monkeypatch.setenv("SAE_PAPER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def pythia_random():
    from sae_paper.data.models import load_model

    return load_model("pythia-70m-deduped-random", device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    from sae_paper.data.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture
def one_thread():
    """Run torch single-threaded for the test: the SAE tests use tiny tensors, for which a
    second thread only adds synchronisation, and on a shared 2-core machine an intra-op
    thread that is not scheduled stalls every op (10x slower). Results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """The base URL of llama-cpp-python's own OpenAI-compatible server, started on 127.0.0.1 with SmolLM2-135M's
    GGUF (``--logits_all true``: echo logprobs) for the session and stopped at its end. Skipped, saying why, only
    where the server is not installed (scripts/setup.sh installs it from ../shared/wheels)."""
    import importlib.util
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    try:
        installed = importlib.util.find_spec("llama_cpp.server") is not None
    except ImportError:
        installed = False
    if not installed:
        pytest.skip("llama-cpp-python's server is not installed (scripts/setup.sh installs it from ../shared/wheels)")
    from sae_paper.data.models import smollm2_gguf_path

    with socket.socket() as probe:  # a free port, given back just before the server takes it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--logits_all", "true",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
