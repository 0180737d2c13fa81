#!/usr/bin/env bash
# The main job: compile examples/digits.bnn and train it on scikit-learn's bundled
# 8x8 digits, printing accuracy, NLL, calibration and predictive entropy on in-
# vs out-of-distribution inputs. Extra arguments go to examples/train_digits.py,
# e.g. `--backend jax` to compile and train the same spec with JAX/Flax NNX.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python examples/train_digits.py "$@"
