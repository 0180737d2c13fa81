"""Calibration and accuracy metrics for predicted class probabilities."""

from __future__ import annotations

import torch

__all__ = ["accuracy", "expected_calibration_error", "negative_log_likelihood"]


def _flatten(
    probs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reshape ``[..., C]`` probs and ``[...]`` labels to ``[N, C]`` and ``[N]``."""
    if probs.shape[:-1] != labels.shape:
        raise ValueError(
            f"probs {tuple(probs.shape)} and labels {tuple(labels.shape)} disagree"
        )
    return probs.reshape(-1, probs.shape[-1]), labels.reshape(-1).long()


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
) -> torch.Tensor:
    """Expected calibration error with equal-width confidence bins.

    The confidence of a prediction is its largest probability; bin ``b`` holds
    confidences in ``((b - 1) / n_bins, b / n_bins]``. The result is
    ``sum_b (|B_b| / N) * |accuracy(B_b) - mean confidence(B_b)|``.

    Args:
        probs: Class probabilities ``[..., C]``.
        labels: Integer labels ``[...]``.
        n_bins: Number of bins.

    Returns:
        A 0-d tensor in ``[0, 1]``.
    """
    probs, labels = _flatten(probs, labels)
    confidences, predictions = probs.max(dim=-1)
    correct = (predictions == labels).to(probs.dtype)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype, device=probs.device)
    bins = torch.bucketize(confidences, edges[1:-1], right=False)
    conf_sums = probs.new_zeros(n_bins).index_add_(0, bins, confidences)
    correct_sums = probs.new_zeros(n_bins).index_add_(0, bins, correct)
    return (correct_sums - conf_sums).abs().sum() / max(len(labels), 1)


def negative_log_likelihood(
    probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """Mean ``-log p(label)``, with probabilities clamped below at ``eps``."""
    probs, labels = _flatten(probs, labels)
    picked = probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -torch.log(picked.clamp_min(eps)).mean()


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of argmax predictions equal to ``labels`` (0-d tensor)."""
    probs, labels = _flatten(probs, labels)
    return (probs.argmax(dim=-1) == labels).to(probs.dtype).mean()
