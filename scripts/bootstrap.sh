#!/usr/bin/env bash
# Create .venv (if needed) and install bnnc with its torch, examples and dev extras.
# Idempotent: re-installs only when pyproject.toml or constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.bnnc-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import bnnc.compiler, torch, jax, flax, optax" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[torch,jax,examples,dev]"
    echo "$want" > "$stamp"
fi
