"""Calibration and accuracy metrics against hand-computed values."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from bnnc.runtime.jax import (
    accuracy,
    expected_calibration_error,
    negative_log_likelihood,
)

PROBS = jnp.array([[0.9, 0.1], [0.7, 0.3], [0.35, 0.65], [0.55, 0.45]])
LABELS = jnp.array([0, 1, 1, 0])


def test_ece_hand_computed() -> None:
    # Five bins of width 0.2. (0.8, 1]: conf 0.9, correct -> |1 - 0.9| * 1/4.
    # (0.6, 0.8]: conf 0.7 wrong, 0.65 right -> |0.5 - 0.675| * 2/4.
    # (0.4, 0.6]: conf 0.55 right -> |1 - 0.55| * 1/4.  Total 0.225.
    ece = expected_calibration_error(PROBS, LABELS, n_bins=5)
    assert float(ece) == pytest.approx(0.025 + 0.0875 + 0.1125, rel=1e-5)


def test_ece_bins_are_closed_on_the_right() -> None:
    # 0.6 belongs to (0.4, 0.6] with 0.55: |0.5 - 0.575| = 0.075. Were it put in
    # (0.6, 0.8], the ECE would be 0.525.
    probs = jnp.array([[0.6, 0.4], [0.45, 0.55]])
    ece = expected_calibration_error(probs, jnp.array([1, 1]), n_bins=5)
    assert float(ece) == pytest.approx(0.075, rel=1e-5)


def test_ece_matches_a_loop_over_bins() -> None:
    rng = np.random.default_rng(0)
    logits = 2 * rng.standard_normal((500, 4))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs = probs.astype(np.float32)
    labels = rng.integers(0, 4, (500,))
    confidences, predictions = probs.max(-1), probs.argmax(-1)
    correct = (predictions == labels).astype(np.float64)
    expected = 0.0
    for low, high in itertools.pairwise(np.linspace(0, 1, 16, dtype=np.float32)):
        in_bin = (confidences > low) & (confidences <= high)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidences[in_bin].mean())
            expected += gap * in_bin.mean()
    value = expected_calibration_error(jnp.asarray(probs), jnp.asarray(labels))
    assert float(value) == pytest.approx(expected, abs=1e-5)


def test_perfectly_calibrated_one_hot_predictions_have_zero_ece() -> None:
    probs = np.eye(3, dtype=np.float32)[[0, 2, 1]]
    assert float(expected_calibration_error(probs, jnp.array([0, 2, 1]))) == 0.0


def test_negative_log_likelihood_and_accuracy() -> None:
    expected = -(math.log(0.9) + math.log(0.3) + math.log(0.65) + math.log(0.55)) / 4
    assert float(negative_log_likelihood(PROBS, LABELS)) == pytest.approx(
        expected, rel=1e-5
    )
    clamped = negative_log_likelihood(jnp.array([[1.0, 0.0]]), jnp.array([1]))
    assert float(clamped) == pytest.approx(-math.log(1e-12), rel=1e-5)
    assert float(accuracy(PROBS, LABELS)) == pytest.approx(0.75)
    batched = PROBS.reshape(2, 2, 2)
    assert float(accuracy(batched, LABELS.reshape(2, 2))) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="disagree"):
        accuracy(PROBS, LABELS[:3])
