"""Shared settings of the JAX runtime tests (skipped when jax/flax are absent)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

if (
    importlib.util.find_spec("jax") is None or importlib.util.find_spec("flax") is None
):  # jax and flax are an optional extra
    collect_ignore_glob = ["test_*.py"]
else:
    import jax

    _FLAG = "jax_disable_most_optimizations"

    @pytest.fixture(autouse=True)
    def _fast_compilation() -> Iterator[None]:
        """Compile with few XLA optimisations: the tests run many tiny kernels once.

        XLA's CPU compile time dominates these tests (each new shape is a new
        kernel); unoptimised kernels compile in about half the time and compute
        the same values to float32 rounding.
        """
        previous = bool(jax.config.values.get(_FLAG, False))
        jax.config.update(_FLAG, True)
        yield
        jax.config.update(_FLAG, previous)
