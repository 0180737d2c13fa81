#!/usr/bin/env bash
# Create .venv (if needed) and install bnnc with its torch, examples and dev extras,
# plus the benchmark baselines of bench/requirements.txt (with --no-deps: see there).
# Idempotent: re-installs only when pyproject.toml, constraints.txt or
# bench/requirements.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.bnnc-installed
want=$(cat pyproject.toml constraints.txt bench/requirements.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import bnnc.compiler, torch, jax, flax, optax, bayesian_torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[torch,jax,examples,dev]"
    .venv/bin/python -m pip install --quiet --no-deps -c constraints.txt -r bench/requirements.txt
    echo "$want" > "$stamp"
fi
