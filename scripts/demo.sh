#!/usr/bin/env bash
# The main job: compile an example spec and train it on a dataset bundled with
# scikit-learn, printing its evaluation.
#   scripts/demo.sh [digits|diabetes] [--backend torch|jax] [runner options]
# digits (default): the Bayesian CNN on 8x8 digits; accuracy, NLL, calibration
#   error and predictive entropy on digits vs noise images.
# diabetes: heteroscedastic regression with a Normal output head; RMSE, NLL and
#   the coverage of the central 90% predictive interval.
set -euo pipefail
cd "$(dirname "$0")/.."
example=digits
case "${1:-}" in
    digits|diabetes) example=$1; shift ;;
esac
scripts/bootstrap.sh
exec .venv/bin/python "examples/train_${example}.py" "$@"
