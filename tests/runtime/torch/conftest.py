"""Shared settings of the PyTorch runtime tests (skipped when torch is absent)."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("torch") is None:  # torch is an optional extra
    collect_ignore_glob = ["test_*.py"]
else:
    import torch

    torch.set_num_threads(2)

    @pytest.fixture(autouse=True)
    def _seed() -> None:
        """Make every test's random draws reproducible."""
        torch.manual_seed(0)
