"""Monte Carlo prediction: predictive moments and uncertainty decompositions.

Every helper evaluates the model ``num_samples`` times under
``torch.no_grad()``; unfrozen Bayesian layers draw fresh weights on each
evaluation, so the samples are draws from the approximate posterior
predictive. (A frozen model gives ``num_samples`` identical outputs.) Models
returning a tuple, such as :class:`~bnnc.runtime.torch.LSTM`, contribute their
first element.

:func:`mc_samples` is vectorised: ``torch.func.vmap`` with
``randomness="different"`` evaluates the ``num_samples`` copies in one call,
so every Bayesian layer draws a batch of weights at once and each matmul or
convolution becomes a batched one, instead of ``num_samples`` Python-level
passes. Each copy sees the whole batch, exactly as a separate call would, so
batch statistics (``batch_norm``) keep their meaning. The layers' current
samples (``layer.weights``) are left as they were. ``vectorize=False`` calls
the model in a Python loop instead (and leaves the last draw as the current
samples), as the JAX runtime's option of the same name does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch

from .base import (
    freeze_all,
    per_example_samples,
    samples_not_stored,
    total_kl,
    unfreeze_all,
)

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
    "sample_outputs",
    "total_kl",
    "unfreeze_all",
]

DEFAULT_NUM_SAMPLES = 32


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, (tuple, list)) else output


def _vectorizes_well(model: torch.nn.Module) -> bool:
    return all(getattr(m, "vectorizes_well", True) for m in model.modules())


def sample_outputs(
    model: torch.nn.Module,
    inputs: tuple[Any, ...],
    num_samples: int,
    extract: Callable[[Any], Any] = _first,
    *,
    vectorize: bool | None = None,
    joint: bool = True,
) -> Any:
    """``num_samples`` evaluations of ``extract(model(*inputs))``, stacked on axis 0.

    ``extract`` turns one output into a tensor or a tuple of tensors (stacked
    element by element). Always under ``torch.no_grad()``.

    Args:
        vectorize: ``torch.func.vmap`` (True), a Python loop (False), or
            None: vmap unless a module of the model declares
            ``vectorizes_well = False`` (the LSTM, whose per-step matmuls
            batch worse on CPU than they loop).
        joint: True: the examples of one sample share every weight (joint
            posterior samples). False: only each example's marginal
            predictive is needed, and vectorised sampling may use
            :func:`~.base.per_example_samples`.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, not {num_samples}")
    if vectorize is None:
        vectorize = _vectorizes_well(model)
    with torch.no_grad():
        if vectorize:

            def one(_: torch.Tensor) -> Any:
                return extract(model(*inputs))

            with (
                samples_not_stored(),
                per_example_samples() if not joint else nullcontext(),
            ):
                index = torch.arange(num_samples)
                return torch.func.vmap(one, randomness="different")(index)
        outputs = [extract(model(*inputs)) for _ in range(num_samples)]
    if isinstance(outputs[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*outputs, strict=True))
    return torch.stack(outputs)


def mc_samples(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    vectorize: bool | None = None,
    joint: bool = True,
) -> torch.Tensor:
    """Stack ``num_samples`` outputs of ``model(*inputs)`` into ``[S, ...]``.

    Args:
        model: The model; tuple outputs contribute their first element.
        *inputs: Its inputs.
        num_samples: Number of posterior samples ``S``.
        vectorize: Evaluate the samples at once with ``torch.func.vmap``
            (True), call the model ``S`` times in a loop (False: less
            memory, and works for models with operations vmap cannot
            batch), or choose (None, the default: vmap unless the model
            has an LSTM).
        joint: True (default): sample ``s`` of every example comes from the
            same weights. False: only per-example marginals are exact (see
            :func:`~.base.per_example_samples`), which is what the
            predictive helpers below need, and faster.
    """
    return sample_outputs(model, inputs, num_samples, vectorize=vectorize, joint=joint)


def predictive_mean_std(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    vectorize: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the outputs over samples (regression).

    The standard deviation is the population one (``correction=0``), so one
    sample gives zero rather than NaN.
    """
    samples = mc_samples(
        model, *inputs, num_samples=num_samples, vectorize=vectorize, joint=False
    )
    return samples.mean(dim=0), samples.std(dim=0, correction=0)


def predictive_probs(
    model: torch.nn.Module,
    *inputs: torch.Tensor,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    vectorize: bool | None = None,
) -> torch.Tensor:
    """Posterior predictive class probabilities: the mean softmax of the logits."""
    logits = mc_samples(
        model, *inputs, num_samples=num_samples, vectorize=vectorize, joint=False
    )
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
    vectorize: bool | None = None,
) -> ClassificationUncertainty:
    """Predictive probabilities with total, aleatoric and epistemic uncertainty."""
    logits = mc_samples(
        model, *inputs, num_samples=num_samples, vectorize=vectorize, joint=False
    )
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
