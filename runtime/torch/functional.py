"""Functional ops that generated code calls and torch lacks in the needed form."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise over the last axis to zero mean and unit variance (no affine)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def batch_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each channel (axis 1) with the current batch's statistics.

    No running statistics and no affine parameters: the result depends only on
    the batch, in training and evaluation alike.
    """
    return F.batch_norm(x, None, None, training=True, eps=eps)


def reshape_batch(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Reshape each example to ``shape``, keeping the batch axis (-1 allowed)."""
    return torch.unflatten(torch.flatten(x, 1), 1, tuple(shape))
