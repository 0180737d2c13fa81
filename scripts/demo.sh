#!/usr/bin/env bash
# The main job: compile examples/digits.bnn to PyTorch and train it on
# scikit-learn's bundled 8x8 digits, printing accuracy, NLL, calibration and
# predictive entropy on in- vs out-of-distribution inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
mkdir -p build
.venv/bin/bnnc compile examples/digits.bnn --backend torch -o build/digits_torch.py
exec .venv/bin/python examples/train_digits.py --model build/digits_torch.py "$@"
