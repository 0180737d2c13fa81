"""Calibration and accuracy metrics against hand-computed values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bnnc.runtime.torch import (
    accuracy,
    expected_calibration_error,
    negative_log_likelihood,
)

PROBS = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.35, 0.65], [0.55, 0.45]])
LABELS = torch.tensor([0, 1, 1, 0])


def test_ece_hand_computed() -> None:
    # Five bins of width 0.2. (0.8, 1]: conf 0.9, correct -> |1 - 0.9| * 1/4.
    # (0.6, 0.8]: conf 0.7 wrong, 0.65 right -> |0.5 - 0.675| * 2/4.
    # (0.4, 0.6]: conf 0.55 right -> |1 - 0.55| * 1/4.  Total 0.225.
    ece = expected_calibration_error(PROBS, LABELS, n_bins=5)
    assert ece.item() == pytest.approx(0.025 + 0.0875 + 0.1125)


def test_ece_bins_are_closed_on_the_right() -> None:
    # 0.6 belongs to (0.4, 0.6] with 0.55: |0.5 - 0.575| = 0.075. Were it put in
    # (0.6, 0.8], the ECE would be 0.525.
    probs = torch.tensor([[0.6, 0.4], [0.45, 0.55]], dtype=torch.float64)
    ece = expected_calibration_error(probs, torch.tensor([1, 1]), n_bins=5)
    assert ece.item() == pytest.approx(0.075)


def test_ece_matches_a_loop_over_bins() -> None:
    probs = torch.softmax(torch.randn(500, 4) * 2, dim=-1)
    labels = torch.randint(0, 4, (500,))
    confidences, predictions = probs.max(-1)
    correct = (predictions == labels).float()
    edges = torch.linspace(0, 1, 16)
    expected = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidences > low) & (confidences <= high)
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidences[in_bin].mean()).abs()
            expected += gap.item() * in_bin.float().mean().item()
    assert expected_calibration_error(probs, labels).item() == pytest.approx(
        expected, abs=1e-6
    )


def test_perfectly_calibrated_one_hot_predictions_have_zero_ece() -> None:
    probs = torch.eye(3)[torch.tensor([0, 2, 1])]
    assert expected_calibration_error(probs, torch.tensor([0, 2, 1])).item() == 0.0


def test_negative_log_likelihood() -> None:
    expected = -(math.log(0.9) + math.log(0.3) + math.log(0.65) + math.log(0.55)) / 4
    assert negative_log_likelihood(PROBS, LABELS).item() == pytest.approx(expected)
    zero = torch.tensor([[1.0, 0.0]])
    clamped = negative_log_likelihood(zero, torch.tensor([1]))
    assert clamped.item() == pytest.approx(-math.log(1e-12), rel=1e-5)


def test_accuracy_and_leading_dimensions() -> None:
    assert accuracy(PROBS, LABELS).item() == pytest.approx(0.75)
    batched = PROBS.reshape(2, 2, 2)
    assert accuracy(batched, LABELS.reshape(2, 2)).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="disagree"):
        accuracy(PROBS, LABELS[:3])
