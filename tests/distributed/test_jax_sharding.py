"""Data-parallel training of a generated JAX/NNX model over 2 host devices.

``jax_train.py`` runs in a subprocess, because XLA reads
``--xla_force_host_platform_device_count`` only when JAX starts its CPU
backend: the pytest process may have started it already, with one device. It
trains ``regressor.bnn`` with the batch sharded along the ``data`` axis of a
2-device mesh and the model and optimizer state replicated, next to an
unsharded copy built with the same seeds, and reports what is checked here:
equal losses, gradients, weight samples and parameters at every step, and
shardings that really split the batch and replicate the state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jax")
pytest.importorskip("flax.nnx")
pytest.importorskip("optax")

SCRIPT = Path(__file__).with_name("jax_train.py")
DEVICE_FLAG = "--xla_force_host_platform_device_count"
TOL = 1e-6


def _env() -> dict[str, str]:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").split()
    flags = [flag for flag in flags if not flag.startswith(DEVICE_FLAG)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{DEVICE_FLAG}=2"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_host_devices(report) -> None:
    assert report["devices"] == 2


def test_batch_is_split_across_the_devices(report) -> None:
    for step in report["steps"]:
        assert step["batch_spec"] == "P('data',)"
        # [device id, rows, features]: each device holds half of the 16 rows.
        assert step["batch_shards"] == [[0, 8, 6], [1, 8, 6]]


def test_state_is_replicated(report) -> None:
    assert report["state_replicated"]  # model, optimizer and rng state
    for step in report["steps"]:
        assert step["loss_replicated"]
        assert step["grads_replicated"]
    assert report["ref_devices"] == [0]  # the reference lives on one device


def test_gradients_are_all_reduced(report) -> None:
    # Each device differentiates its half of the batch; one all-reduce sums.
    assert report["all_reduces"] >= 1


def test_sharded_step_equals_unsharded_step(report) -> None:
    for step in report["steps"]:
        assert step["loss"] == pytest.approx(step["ref_loss"], rel=TOL)
        assert step["grad_norm"] > 0.1
        assert step["grad_diff"] < TOL
        assert step["sample_diff"] < TOL  # the same weights were drawn
        assert step["param_diff"] < TOL
    assert report["params_moved"] > 1e-2  # and it did train
