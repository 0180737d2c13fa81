#!/usr/bin/env bash
# The benchmark suite: bnnc against same-run baselines (deterministic torch.nn /
# nnx twins, the sampling floor, bayesian-torch), with the issue's targets.
#   scripts/bench.sh [--quick] [--models mlp,cnn,lstm] [--backends torch,compile,jax]
#                    [--figures train,predict,memory,params,compile] [--rounds N]
#                    [--json FILE] [--strict]
# Bootstraps .venv first (bnnc's extras and bench/requirements.txt, installed
# with --no-deps), then runs `python -m bench`; see bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m bench "$@"
