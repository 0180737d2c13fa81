"""Fully connected layers: Bayesian :class:`Linear` and :class:`FixedLinear`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import FixedModule
from .distributions import DistributionModule
from .estimators import Estimator, WeightLayer

__all__ = ["FixedLinear", "Linear", "linear"]


def linear(
    inputs: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``inputs @ weights.T + bias`` for inputs shaped ``[*, in]``; the shared maths."""
    return F.linear(inputs, weights, bias)


class Linear(WeightLayer):
    """Bayesian fully connected layer: ``y = x W^T + b`` with sampled ``W``, ``b``.

    ``weights`` has shape ``(output_size, input_size)`` and ``bias`` shape
    ``(output_size,)`` (None when ``use_bias`` is False). ``estimator``
    chooses reparameterisation (one weight sample per call), local
    reparameterisation or flipout (:mod:`.estimators`).
    """

    weights: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        input_size: int,
        output_size: int,
        weights_distribution: DistributionModule | None = None,
        bias_distribution: DistributionModule | None = None,
        use_bias: bool = True,
        *,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        estimator: Estimator = "reparameterization",
        **kwargs: Any,
    ) -> None:
        """Create the layer and draw initial weights.

        Args:
            input_size: Number of input features.
            output_size: Number of output features.
            weights_distribution: Distribution of the weights; a
                :class:`GaussianDistribution` built from the prior/posterior
                keywords when None.
            bias_distribution: Distribution of the bias (same default).
            use_bias: Whether to add a bias.
            mu_prior: Prior mean of the default distributions.
            std_prior: Prior standard deviation of the default distributions.
            mu_init: Initial posterior mean of the default distributions.
            rho_init: Initial posterior rho of the default distributions.
            estimator: ``"reparameterization"`` (default),
                ``"local_reparameterization"`` or ``"flipout"``; the last two
                need Gaussian distributions.
            **kwargs: Passed to ``torch.nn.Module``.

        Raises:
            ValueError: For an unknown estimator, or local reparameterisation
                or flipout with a non-Gaussian distribution.
        """
        super().__init__(**kwargs)
        self.input_size = input_size
        self.output_size = output_size
        self.use_bias = use_bias
        self._register_weights_and_bias(
            (output_size, input_size),
            weights_distribution,
            bias_distribution,
            use_bias,
            mu_prior=mu_prior,
            std_prior=std_prior,
            mu_init=mu_init,
            rho_init=rho_init,
        )
        self._set_estimator(estimator)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Sample (unless frozen) and apply the layer to ``[*, input_size]`` inputs."""
        return self._apply_estimator(inputs, linear, 0)

    def extra_repr(self) -> str:
        """Sizes, for ``print(module)``."""
        return (
            f"{self.input_size}, {self.output_size}, use_bias={self.use_bias}"
            f"{self._estimator_repr()}"
        )


class FixedLinear(FixedModule):
    """Deterministic twin of :class:`Linear`, initialised like ``torch.nn.Linear``."""

    weights: torch.nn.Parameter
    bias: torch.nn.Parameter | None

    def __init__(
        self, input_size: int, output_size: int, use_bias: bool = True
    ) -> None:
        """Create the layer.

        Args:
            input_size: Number of input features.
            output_size: Number of output features.
            use_bias: Whether to add a bias.
        """
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.use_bias = use_bias
        self._create_weights_and_bias((output_size, input_size), use_bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the layer to ``[*, input_size]`` inputs."""
        return linear(inputs, self.weights, self.bias)

    def extra_repr(self) -> str:
        """Sizes, for ``print(module)``."""
        return f"{self.input_size}, {self.output_size}, use_bias={self.use_bias}"
