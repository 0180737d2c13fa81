"""Gradient estimators of the Bayesian weight layers: Linear, Conv1d, Conv2d.

A layer's ``estimator`` chooses how its forward pass turns the Gaussian
posterior ``N(mu, sigma**2)`` of the weights into outputs:

- ``"reparameterization"`` (the default): one weight sample
  ``W = mu + sigma * eps`` per call, shared by every example of the batch
  (the reference's behaviour).
- ``"local_reparameterization"`` (Kingma et al., 2015): the pre-activations
  are Gaussian given the inputs, ``N(op(x, mu) + b_mu, op(x**2, sigma**2) +
  sigma_b**2)``, and are sampled directly, independently per output element
  (``op`` is the layer's linear map: a matmul or a convolution).
- ``"flipout"`` (Wen et al., 2018): one shared perturbation
  ``dW = sigma * eps`` per call, decorrelated across examples by random signs,
  ``op(x, mu) + op(x * s_in, dW) * s_out + b`` with ``s_in``, ``s_out``
  uniform in ``{-1, +1}`` per example (and per channel; shared across the
  spatial positions of a convolution), and the bias sampled as usual.

Both alternatives give every example the same marginal distribution of its
outputs as reparameterisation, with gradients whose variance falls with the
batch size (the examples' weight noise is no longer shared). Neither draws a
full weight sample, so ``layer.weights`` and ``layer.bias`` are not updated by
their forward passes. When the layer is frozen every estimator uses the
stored samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch

from .base import BayesianModule, per_example_mode
from .distributions import DistributionModule, GaussianDistribution, KLEstimator

__all__ = [
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "Estimator",
    "WeightLayer",
    "check_estimator",
]

#: How a Bayesian weight layer's forward pass samples (see the module docs).
Estimator = Literal["reparameterization", "local_reparameterization", "flipout"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
DEFAULT_ESTIMATOR: Estimator = "reparameterization"

#: ``apply(inputs, weights, bias)``: the layer's linear map (matmul, convolution).
Apply = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def check_estimator(
    estimator: str,
    weights_distribution: DistributionModule | None,
    bias_distribution: DistributionModule | None,
) -> Estimator:
    """Return ``estimator`` if it is valid for a layer with these distributions.

    Raises:
        ValueError: For an unknown estimator, or for local reparameterisation
            or flipout with a distribution that is not a
            :class:`~.distributions.GaussianDistribution` (they need its
            ``mu`` and ``sigma``).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, "
            f"not {estimator!r}"
        )
    if estimator != DEFAULT_ESTIMATOR:
        for what, distribution in (
            ("weights_distribution", weights_distribution),
            ("bias_distribution", bias_distribution),
        ):
            if distribution is not None and not isinstance(
                distribution, GaussianDistribution
            ):
                raise ValueError(
                    f"estimator={estimator!r} needs a GaussianDistribution (its mu "
                    f"and sigma); {what} is a {type(distribution).__name__}; use "
                    "estimator='reparameterization' for other distributions"
                )
    return estimator  # type: ignore[return-value]


class WeightLayer(BayesianModule):
    """Base of ``Linear``, ``Conv1d`` and ``Conv2d``: random ``weights`` and ``bias``.

    Adds the :attr:`estimator` choice to :class:`~.base.BayesianModule`.
    With local reparameterisation or flipout:

    - the forward pass draws no weight sample, so ``weights`` / ``bias`` keep
      the values they had (from construction, an earlier reparameterised
      call or :meth:`freeze`);
    - :meth:`freeze` on an unfrozen layer draws new samples from the current
      posterior (the stored ones may come from an older one), and frozen, the
      layer uses them like any other;
    - :meth:`kl_cost` with ``estimator="sample"`` has no sample of this call
      to evaluate and returns the closed form (unless frozen).

    Attributes:
        estimator: ``"reparameterization"``, ``"local_reparameterization"``
            or ``"flipout"``; fixed at construction.
    """

    weights_distribution: DistributionModule
    bias_distribution: DistributionModule | None
    estimator: Estimator = DEFAULT_ESTIMATOR

    def _set_estimator(self, estimator: str) -> None:
        """Validate and store the estimator (after the distributions exist)."""
        self.estimator = check_estimator(
            estimator, self.weights_distribution, self.bias_distribution
        )

    def _apply_estimator(
        self, inputs: torch.Tensor, apply: Apply, shared_dims: int
    ) -> torch.Tensor:
        """The forward pass under :attr:`estimator`.

        Args:
            inputs: The layer's inputs.
            apply: The layer's linear map, ``apply(inputs, weights, bias)``.
            shared_dims: Trailing input/output axes that share one flipout
                sign (the spatial axes of a convolution; 0 for a linear layer).
        """
        estimator = self.estimator
        if (
            not self.frozen
            and per_example_mode()
            and _same_for_every_sample(inputs)
            and isinstance(self.weights_distribution, GaussianDistribution)
            and isinstance(self.bias_distribution, (GaussianDistribution, type(None)))
        ):
            # Vectorised prediction of per-example statistics: one mean and
            # variance for all samples instead of one pass per weight sample.
            estimator = "local_reparameterization"
        if self.frozen or estimator == "reparameterization":
            values = self._draw()
            return apply(inputs, values["weights"], values.get("bias"))
        weights: GaussianDistribution = self.weights_distribution  # type: ignore[assignment]
        bias: GaussianDistribution | None = self.bias_distribution  # type: ignore[assignment]
        if estimator == "local_reparameterization":
            return local_reparameterization(inputs, apply, weights, bias)
        bias_value = None if bias is None else bias.sample_with_kl()[0]
        return flipout(inputs, apply, weights, bias_value, shared_dims)

    def _samples_stale(self) -> bool:
        return not self.frozen and self.estimator != DEFAULT_ESTIMATOR

    def freeze(self) -> None:
        """Fix samples and stop gradients; see the class notes on estimators."""
        if self._samples_stale():
            for name in self._random_names:
                setattr(self, name, None)  # freeze() draws what is missing
        super().freeze()

    def _kl_terms(
        self, estimator: KLEstimator, deferred: list[GaussianDistribution] | None
    ) -> tuple[list[torch.Tensor], int]:
        """As the base class; ``"sample"`` reads as the closed form while the
        stored samples are stale (see the class notes)."""
        if estimator == "sample" and self._samples_stale():
            estimator = "closed_form"
        return super()._kl_terms(estimator, deferred)

    def _estimator_repr(self) -> str:
        if self.estimator == DEFAULT_ESTIMATOR:
            return ""
        return f", estimator={self.estimator!r}"


def _same_for_every_sample(inputs: torch.Tensor) -> bool:
    """Inside ``vmap``, whether ``inputs`` is not batched (equal for all samples)."""
    return (
        torch._C._functorch.peek_interpreter_stack() is not None
        and not torch._C._functorch.is_batchedtensor(inputs)
    )


def local_reparameterization(
    inputs: torch.Tensor,
    apply: Apply,
    weights: GaussianDistribution,
    bias: GaussianDistribution | None,
) -> torch.Tensor:
    """Outputs sampled from ``N(op(x, mu) + b_mu, op(x**2, sigma**2) + sigma_b**2)``.

    One standard normal per output element. The variance is clamped at the
    dtype's smallest normal number before the square root, so outputs with
    zero variance (all-zero inputs, padding) have a finite gradient.
    """
    w_sigma = weights.sigma
    mean = apply(inputs, weights.mu, None if bias is None else bias.mu)
    variance = apply(
        inputs * inputs,
        w_sigma * w_sigma,
        None if bias is None else bias.sigma.square(),
    )
    std = torch.sqrt(variance.clamp_min(torch.finfo(variance.dtype).tiny))
    return torch.addcmul(mean, std, torch.randn_like(mean))


def flipout(
    inputs: torch.Tensor,
    apply: Apply,
    weights: GaussianDistribution,
    bias_value: torch.Tensor | None,
    shared_dims: int,
) -> torch.Tensor:
    """``op(x, mu) + b + op(x * s_in, sigma * eps) * s_out`` with random signs.

    ``eps`` (one draw, the shape of the weights) is shared by the batch;
    ``s_in`` and ``s_out`` are independent random signs per example and
    channel (per row of a linear layer's input), constant over the last
    ``shared_dims`` axes.
    """
    mean = apply(inputs, weights.mu, bias_value)
    perturbation = weights.sigma * torch.randn_like(weights.rho)
    noise = apply(inputs * _signs(inputs, shared_dims), perturbation, None)
    return torch.addcmul(mean, noise, _signs(noise, shared_dims))


def _signs(like: torch.Tensor, shared_dims: int) -> torch.Tensor:
    """Independent uniform signs shaped like ``like``, size 1 on the last axes."""
    view = like
    for axis in range(1, shared_dims + 1):
        view = view.narrow(-axis, 0, 1)
    flips = (torch.rand_like(view) < 0.5).to(like.dtype)
    return 1.0 - 2.0 * flips
