"""Fully connected layers: Bayesian :class:`Linear` and :class:`FixedLinear`."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from .base import DEFAULT_RNGS, FixedModule
from .distributions import DistributionModule
from .estimators import Estimator, WeightLayer

__all__ = ["FixedLinear", "Linear", "linear"]

PrecisionLike = lax.Precision | str | tuple[Any, Any] | None
DotGeneral = Any


@partial(jax.jit, static_argnames=("precision", "dot_general"))
def linear(
    inputs: jax.Array,
    weights: jax.Array,
    bias: jax.Array | None,
    precision: PrecisionLike = None,
    dot_general: DotGeneral = lax.dot_general,
) -> jax.Array:
    """``inputs @ weights.T + bias`` for inputs ``[*, in]``; the shared maths.

    Jitted (one kernel per shape when called eagerly; inlined under a
    transform).

    Args:
        inputs: Inputs ``[*, in]``.
        weights: Weights ``[out, in]`` (torch layout).
        bias: Bias ``[out]`` or None.
        precision: Passed to ``dot_general``.
        dot_general: The contraction (``jax.lax.dot_general`` by default).

    Returns:
        Outputs ``[*, out]``.
    """
    dimension_numbers = (((inputs.ndim - 1,), (1,)), ((), ()))
    outputs = dot_general(inputs, weights, dimension_numbers, precision=precision)
    if bias is not None:
        outputs = outputs + jnp.reshape(bias, (1,) * (outputs.ndim - 1) + (-1,))
    return outputs


class Linear(WeightLayer):
    """Bayesian fully connected layer: ``y = x W^T + b`` with sampled ``W``, ``b``.

    ``weights`` has shape ``(output_size, input_size)`` and ``bias`` shape
    ``(output_size,)`` (None when ``use_bias`` is False); both are
    :class:`~.distributions.Sample` variables resampled from ``rngs.sample()``
    on every call unless frozen. ``estimator`` chooses reparameterisation (one
    weight sample per call), local reparameterisation or flipout
    (:mod:`.estimators`).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        weights_distribution: DistributionModule | None = None,
        bias_distribution: DistributionModule | None = None,
        use_bias: bool = True,
        precision: PrecisionLike = None,
        dot_general: DotGeneral = lax.dot_general,
        rngs: nnx.Rngs = DEFAULT_RNGS,
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
            precision: Precision of the contraction.
            dot_general: The contraction function.
            rngs: Random streams for initialisation and sampling.
            mu_prior: Prior mean of the default distributions.
            std_prior: Prior standard deviation of the default distributions.
            mu_init: Initial posterior mean of the default distributions.
            rho_init: Initial posterior rho of the default distributions.
            estimator: ``"reparameterization"`` (default),
                ``"local_reparameterization"`` or ``"flipout"``; the last two
                need Gaussian distributions.
            **kwargs: Passed to ``nnx.Module``.

        Raises:
            ValueError: For an unknown estimator, or local reparameterisation
                or flipout with a non-Gaussian distribution.
        """
        super().__init__(**kwargs)
        self.input_size = input_size
        self.output_size = output_size
        self.use_bias = use_bias
        self.precision = precision
        self.dot_general = dot_general
        self.rngs = rngs
        self._register_weights_and_bias(
            (output_size, input_size),
            weights_distribution,
            bias_distribution,
            use_bias,
            rngs=rngs,
            mu_prior=mu_prior,
            std_prior=std_prior,
            mu_init=mu_init,
            rho_init=rho_init,
        )
        self._set_estimator(estimator)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Sample (unless frozen) and apply the layer to ``[*, input_size]`` inputs."""
        return self._apply_estimator(inputs, self._linear, 0)

    def _linear(
        self, inputs: jax.Array, weights: jax.Array, bias: jax.Array | None
    ) -> jax.Array:
        return linear(inputs, weights, bias, self.precision, self.dot_general)


class FixedLinear(FixedModule):
    """Deterministic twin of :class:`Linear`, initialised like ``torch.nn.Linear``.

    ``weights`` ``(output_size, input_size)`` and ``bias`` ``(output_size,)``
    are ``nnx.Param``, drawn from ``rngs.params()``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        use_bias: bool = True,
        precision: PrecisionLike = None,
        dot_general: DotGeneral = lax.dot_general,
        rngs: nnx.Rngs = DEFAULT_RNGS,
    ) -> None:
        """Create the layer (arguments as in :class:`Linear`)."""
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.use_bias = use_bias
        self.precision = precision
        self.dot_general = dot_general
        self.rngs = rngs
        self._create_weights_and_bias((output_size, input_size), use_bias, rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Apply the layer to ``[*, input_size]`` inputs."""
        return linear(
            inputs,
            self._current("weights"),
            self._current("bias"),
            self.precision,
            self.dot_general,
        )
