"""Gradient estimators of the Bayesian weight layers: Linear, Conv1d, Conv2d.

The same estimators, names and semantics as the torch runtime's
``bnnc.runtime.torch.estimators`` (see ``docs/runtime.md``):

- ``"reparameterization"`` (the default): one weight sample per call, shared
  by every example of the batch.
- ``"local_reparameterization"``: each output element drawn from
  ``N(op(x, mu) + b_mu, op(x**2, sigma**2) + sigma_b**2)``.
- ``"flipout"``: ``op(x, mu) + b + op(x * s_in, sigma * eps) * s_out`` with one
  shared ``eps`` and random signs per example (and channel; shared over a
  convolution's positions); the bias is sampled as usual.

Keys come from the layer's ``rngs.sample()`` stream. Neither alternative
draws a full weight sample, so the :class:`~.distributions.Sample` variables
``weights`` / ``bias`` are not updated by their calls; frozen, every estimator
uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from .base import BayesianModule, KLEstimator
from .distributions import DistributionModule, GaussianDistribution

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
Apply = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]


def check_estimator(
    estimator: str,
    weights_distribution: DistributionModule | None,
    bias_distribution: DistributionModule | None,
) -> Estimator:
    """Return ``estimator`` if it is valid for a layer with these distributions.

    Raises:
        ValueError: For an unknown estimator, or for local reparameterisation
            or flipout with a distribution that is not a
            :class:`~.distributions.GaussianDistribution`.
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
    """Base of ``Linear``, ``Conv1d`` and ``Conv2d``: the :attr:`estimator` choice.

    With local reparameterisation or flipout, calls leave ``weights`` /
    ``bias`` as they were; :meth:`freeze` on an unfrozen layer draws new ones
    from the current posterior; :meth:`kl_cost` with ``"sample"`` returns the
    closed form unless frozen. As in the torch runtime.

    Attributes:
        estimator: ``"reparameterization"``, ``"local_reparameterization"``
            or ``"flipout"`` (a static attribute; fixed at construction).
    """

    estimator: Estimator = DEFAULT_ESTIMATOR

    def _set_estimator(self, estimator: str) -> None:
        """Validate and store the estimator (after the distributions exist)."""
        self.estimator = check_estimator(
            estimator,
            getattr(self, "weights_distribution", None),
            getattr(self, "bias_distribution", None),
        )

    def _apply_estimator(
        self, inputs: jax.Array, apply: Apply, shared_dims: int
    ) -> jax.Array:
        """The forward pass under :attr:`estimator`.

        Args:
            inputs: The layer's inputs.
            apply: The layer's linear map, ``apply(inputs, weights, bias)``.
            shared_dims: Trailing axes that share one flipout sign (a
                convolution's spatial axes; 0 for a linear layer).
        """
        if self.frozen or self.estimator == "reparameterization":
            self._resample()
            return apply(inputs, self._current("weights"), self._current("bias"))
        weights: GaussianDistribution = self.weights_distribution  # type: ignore[assignment]
        bias: GaussianDistribution | None = self.bias_distribution  # type: ignore[assignment]
        if self.estimator == "local_reparameterization":
            key = self.rngs.sample()
            return local_reparameterization(inputs, apply, weights, bias, key)
        bias_value = None if bias is None else bias.sample(self.rngs)
        key = self.rngs.sample()
        return flipout(inputs, apply, weights, bias_value, shared_dims, key)

    def _samples_stale(self) -> bool:
        return not self.frozen and self.estimator != DEFAULT_ESTIMATOR

    def freeze(self) -> None:
        """Fix samples and stop gradients; see the class notes on estimators."""
        if self._samples_stale():
            for name, distribution, _ in self.random_tensors():
                self._store(name, distribution.sample(self.rngs))
        super().freeze()

    def kl_cost(self, estimator: KLEstimator = "closed_form") -> tuple[jax.Array, int]:
        """As :meth:`~.base.BayesianModule.kl_cost`; see the class notes."""
        if estimator == "sample" and self._samples_stale():
            estimator = "closed_form"
        return super().kl_cost(estimator)


def local_reparameterization(
    inputs: jax.Array,
    apply: Apply,
    weights: GaussianDistribution,
    bias: GaussianDistribution | None,
    key: jax.Array,
) -> jax.Array:
    """Outputs drawn from ``N(op(x, mu) + b_mu, op(x**2, sigma**2) + sigma_b**2)``.

    The variance is clamped at the dtype's smallest normal number before the
    square root, so outputs with zero variance have a finite gradient.
    """
    w_sigma = weights.sigma
    mean = apply(inputs, weights.mu[...], None if bias is None else bias.mu[...])
    variance = apply(
        inputs * inputs,
        w_sigma * w_sigma,
        None if bias is None else jnp.square(bias.sigma),
    )
    std = jnp.sqrt(jnp.maximum(variance, jnp.finfo(variance.dtype).tiny))
    return mean + std * jax.random.normal(key, mean.shape, mean.dtype)


def flipout(
    inputs: jax.Array,
    apply: Apply,
    weights: GaussianDistribution,
    bias_value: jax.Array | None,
    shared_dims: int,
    key: jax.Array,
) -> jax.Array:
    """``op(x, mu) + b + op(x * s_in, sigma * eps) * s_out`` with random signs."""
    eps_key, in_key, out_key = jax.random.split(key, 3)
    mu = weights.mu[...]
    mean = apply(inputs, mu, bias_value)
    perturbation = weights.sigma * jax.random.normal(eps_key, mu.shape, mu.dtype)
    signs_in = _signs(in_key, inputs.shape, shared_dims, inputs.dtype)
    noise = apply(inputs * signs_in, perturbation, None)
    return mean + noise * _signs(out_key, noise.shape, shared_dims, noise.dtype)


def _signs(
    key: jax.Array, shape: tuple[int, ...], shared_dims: int, dtype: jnp.dtype
) -> jax.Array:
    """Uniform random signs of ``shape``, size 1 on the last ``shared_dims`` axes."""
    kept = len(shape) - shared_dims
    return jax.random.rademacher(key, (*shape[:kept], *(1,) * shared_dims), dtype)
