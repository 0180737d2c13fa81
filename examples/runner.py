"""Shared plumbing of the example runners: compile a spec, import it, train.

The runners (``train_digits.py``, ``train_diabetes.py``) compile a ``.bnn``
spec for the chosen backend into ``build/`` with bnnc's Python API, import the
generated module like any other, and train it with a progress bar.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm import tqdm

import bnnc
from bnnc.compiler import api

ROOT = Path(__file__).resolve().parents[1]


def compile_model(spec: Path, backend: str, out_dir: Path) -> ModuleType:
    """Compile ``spec`` for ``backend`` into ``out_dir`` and import the module."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{spec.stem}_{backend}.py"
    api.write_atomically(target, bnnc.compile(spec, backend=backend))
    print(f"compiled {spec.name} -> {target} ({backend})")
    module_spec = importlib.util.spec_from_file_location(target.stem, target)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"cannot import {target}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module


def batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled epoch of index batches."""
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def run_epochs(
    epoch: Callable[[np.random.Generator], float], epochs: int, seed: int
) -> None:
    """Run ``epochs`` epochs with a progress bar showing the last batch's loss."""
    rng = np.random.default_rng(seed)
    with tqdm(
        total=epochs, desc="training", unit="epoch", file=sys.stdout, ncols=80
    ) as bar:
        for _ in range(epochs):
            bar.set_postfix(loss=f"{epoch(rng):.3f}")
            bar.update()
