#!/usr/bin/env bash
# ruff's lint, ruff's format check and mypy over the tree, as CI runs them (.ci/run, before pytest).
# Settings live in pyproject.toml ([tool.ruff], [tool.mypy]); the tools come with scripts/setup.sh
# (the `test` extra). Runs all three and fails if any one does. To fix: `.venv/bin/ruff check --fix .`
# (safe fixes only) and `.venv/bin/ruff format .`.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
exit "$status"
