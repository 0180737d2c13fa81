"""Monte Carlo prediction: predictive moments and uncertainty decompositions.

Every helper calls the model ``num_samples`` times under ``torch.no_grad()``;
unfrozen Bayesian layers draw fresh weights on each call, so the samples are
draws from the approximate posterior predictive. (A frozen model gives
``num_samples`` identical outputs.) Models returning a tuple, such as
:class:`~bnnc.runtime.torch.LSTM`, contribute their first element.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .base import freeze_all, total_kl, unfreeze_all

__all__ = [
    "ClassificationUncertainty",
    "classification_uncertainty",
    "expected_entropy",
    "freeze_all",
    "mc_samples",
    "mutual_information",
    "predictive_entropy",
    "predictive_mean_std",
    "predictive_probs",
    "total_kl",
    "unfreeze_all",
]

DEFAULT_NUM_SAMPLES = 32


def mc_samples(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
) -> torch.Tensor:
    """Stack ``num_samples`` outputs of ``model(*inputs)`` into ``[S, ...]``."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, not {num_samples}")
    outputs = []
    with torch.no_grad():
        for _ in range(num_samples):
            output = model(*inputs)
            if isinstance(output, (tuple, list)):
                output = output[0]
            outputs.append(output)
    return torch.stack(outputs)


def predictive_mean_std(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the outputs over samples (regression).

    The standard deviation is the population one (``correction=0``), so one
    sample gives zero rather than NaN.
    """
    samples = mc_samples(model, *inputs, num_samples=num_samples)
    return samples.mean(dim=0), samples.std(dim=0, correction=0)


def predictive_probs(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
) -> torch.Tensor:
    """Posterior predictive class probabilities: the mean softmax of the logits."""
    logits = mc_samples(model, *inputs, num_samples=num_samples)
    return torch.softmax(logits, dim=-1).mean(dim=0)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy ``-sum_c p_c log p_c`` (nats) over the last dimension.

    Terms with ``p_c = 0`` count as zero.
    """
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def expected_entropy(prob_samples: torch.Tensor) -> torch.Tensor:
    """Aleatoric uncertainty: the mean over samples (dim 0) of each sample's entropy."""
    return predictive_entropy(prob_samples).mean(dim=0)


def mutual_information(prob_samples: torch.Tensor) -> torch.Tensor:
    """Epistemic uncertainty (BALD): predictive entropy minus expected entropy.

    Args:
        prob_samples: Per-sample class probabilities ``[S, ..., C]``.

    Returns:
        Tensor ``[...]``, clamped at zero against rounding.
    """
    total = predictive_entropy(prob_samples.mean(dim=0))
    return (total - expected_entropy(prob_samples)).clamp_min(0.0)


class ClassificationUncertainty(NamedTuple):
    """Result of :func:`classification_uncertainty`; entropies in nats."""

    probs: torch.Tensor
    """Predictive probabilities ``[..., C]``."""
    predictive_entropy: torch.Tensor
    """Total uncertainty: entropy of ``probs``."""
    aleatoric: torch.Tensor
    """Expected entropy of the per-sample probabilities."""
    mutual_information: torch.Tensor
    """Epistemic uncertainty: total minus aleatoric."""


def classification_uncertainty(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
) -> ClassificationUncertainty:
    """Predictive probabilities with total, aleatoric and epistemic uncertainty."""
    logits = mc_samples(model, *inputs, num_samples=num_samples)
    prob_samples = torch.softmax(logits, dim=-1)
    probs = prob_samples.mean(dim=0)
    total = predictive_entropy(probs)
    aleatoric = expected_entropy(prob_samples)
    return ClassificationUncertainty(
        probs=probs,
        predictive_entropy=total,
        aleatoric=aleatoric,
        mutual_information=(total - aleatoric).clamp_min(0.0),
    )
