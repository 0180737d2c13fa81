"""Calibration and accuracy metrics for predicted class probabilities (JAX)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["accuracy", "expected_calibration_error", "negative_log_likelihood"]


def _flatten(probs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reshape ``[..., C]`` probs and ``[...]`` labels to ``[N, C]`` and ``[N]``."""
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    if probs.shape[:-1] != labels.shape:
        raise ValueError(
            f"probs {tuple(probs.shape)} and labels {tuple(labels.shape)} disagree"
        )
    return probs.reshape(-1, probs.shape[-1]), labels.reshape(-1).astype(jnp.int32)


def expected_calibration_error(
    probs: jax.Array, labels: jax.Array, n_bins: int = 15
) -> jax.Array:
    """Expected calibration error with equal-width confidence bins.

    The confidence of a prediction is its largest probability; bin ``b`` holds
    confidences in ``((b - 1) / n_bins, b / n_bins]``. The result is
    ``sum_b (|B_b| / N) * |accuracy(B_b) - mean confidence(B_b)|``.

    Args:
        probs: Class probabilities ``[..., C]``.
        labels: Integer labels ``[...]``.
        n_bins: Number of bins.

    Returns:
        A 0-d array in ``[0, 1]``.
    """
    probs, labels = _flatten(probs, labels)
    confidences = jnp.max(probs, axis=-1)
    predictions = jnp.argmax(probs, axis=-1)
    correct = (predictions == labels).astype(probs.dtype)
    edges = jnp.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype)
    bins = jnp.searchsorted(edges[1:-1], confidences, side="left")
    conf_sums = jnp.zeros(n_bins, probs.dtype).at[bins].add(confidences)
    correct_sums = jnp.zeros(n_bins, probs.dtype).at[bins].add(correct)
    return jnp.sum(jnp.abs(correct_sums - conf_sums)) / max(labels.shape[0], 1)


def negative_log_likelihood(
    probs: jax.Array, labels: jax.Array, eps: float = 1e-12
) -> jax.Array:
    """Mean ``-log p(label)``, with probabilities clamped below at ``eps``."""
    probs, labels = _flatten(probs, labels)
    picked = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
    return -jnp.mean(jnp.log(jnp.maximum(picked, eps)))


def accuracy(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of argmax predictions equal to ``labels`` (0-d array)."""
    probs, labels = _flatten(probs, labels)
    return jnp.mean((jnp.argmax(probs, axis=-1) == labels).astype(probs.dtype))
