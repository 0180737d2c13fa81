"""Learnable variational distributions over a layer's random tensors (Flax NNX).

Variable types used by the runtime:

- ``nnx.Param``: trainable values only (a distribution's ``mu`` and ``rho``; a
  ``Fixed*`` layer's weights). ``nnx.state(model, nnx.Param)`` and
  ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` therefore see nothing else.
- :class:`Sample`: the current draw of a random tensor (a layer's ``weights``,
  ``bias``, LSTM gates...), overwritten in place on every call.
- :class:`Prior`: the fixed prior mean and standard deviation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "DEFAULT_RNGS",
    "DistributionModule",
    "GaussianDistribution",
    "Prior",
    "Sample",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: The default ``rngs`` of every constructor, as in the reference API: ONE
#: ``nnx.Rngs(0)`` shared by every object built without its own ``rngs`` (so two
#: default layers still get different values). Pass ``rngs=nnx.Rngs(seed)`` for
#: results that do not depend on what was built before.
DEFAULT_RNGS = nnx.Rngs(0)


class Sample(nnx.Variable):
    """The current sampled value of a random tensor (not trainable).

    Kept apart from ``nnx.Param`` so that optimisers hold no moments for values
    that are overwritten on every call, and so that
    ``nnx.state(model, Sample)`` reads every layer's current weights.
    """


class Prior(nnx.Variable):
    """A fixed prior hyperparameter (``mu_prior``, ``std_prior``); not trainable."""


#: Above this ``rho``, ``softplus(rho)`` is ``rho`` itself (torch's threshold).
_SOFTPLUS_THRESHOLD = 20.0


def _sigma_primals(rho: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(exp(min(rho, 20)), softplus(rho), log(softplus(rho)))``.

    ``softplus`` is torch's (``rho`` itself above the threshold 20, else
    ``log1p(exp(rho))``), the same values as :func:`.functional.softplus`.
    ``log(softplus(rho))`` is the log of sigma clamped at the dtype's smallest
    normal number: exact wherever sigma is representable (``rho`` above about
    -87 in float32, -708 in float64; sigma is ``2e-22`` at ``rho = -50``) and
    finite below, where sigma underflows to zero (the samples are then
    ``mu``). One ``exp``, one ``log1p`` and one ``log`` per element, and no
    select in the log, so that XLA fuses it into the KL's reduction.
    """
    t = jnp.exp(jnp.minimum(rho, _SOFTPLUS_THRESHOLD))
    sigma = jnp.where(rho > _SOFTPLUS_THRESHOLD, rho, jnp.log1p(t))
    log_sigma = jnp.log(_clamp_tiny(sigma))
    return t, sigma, log_sigma


def _clamp_tiny(sigma: jax.Array) -> jax.Array:
    """``sigma`` clamped below at its dtype's smallest normal number."""
    return jnp.maximum(sigma, jnp.finfo(sigma.dtype).tiny)


@jax.custom_jvp
def _sigma_terms(rho: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sigma, log sigma)`` of the posterior, ``sigma = softplus(rho)``.

    With a hand-written derivative: ``d sigma = sigmoid(rho) d rho`` (1
    above the threshold, as torch; the sigmoid from the forward's ``exp``) and
    ``d log sigma = d sigma / sigma`` (sigma clamped as in the forward). That
    is the exact derivative wherever sigma is representable, finite
    everywhere, and cheap: automatic differentiation of the ``where``
    branches gave XLA a dozen extra elementwise passes over every ``rho`` in
    a training step, and a separate tail formula for ``d log sigma`` two more.
    """
    _, sigma, log_sigma = _sigma_primals(rho)
    return sigma, log_sigma


@_sigma_terms.defjvp
def _sigma_terms_jvp(
    primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    (rho,), (rho_dot,) = primals, tangents
    t, sigma, log_sigma = _sigma_primals(rho)
    sigmoid = jnp.where(rho > _SOFTPLUS_THRESHOLD, 1.0, t / (1.0 + t))
    sigma_dot = sigmoid * rho_dot
    return (sigma, log_sigma), (sigma_dot, sigma_dot / _clamp_tiny(sigma))


def _log_softplus(rho: jax.Array) -> jax.Array:
    """``log(softplus(rho))`` without underflow, with finite gradients everywhere."""
    return _sigma_terms(rho)[1]


def _normal_log_density(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Elementwise log N(x; mean, exp(log_std)**2).

    Written with ``log_std`` and ``z = (x - mean) * exp(-log_std)``, so that
    neither the value nor the gradient squares or divides by a tiny ``std``.
    """
    z = (x - mean) * jnp.exp(-log_std)
    return -_LOG_SQRT_2PI - log_std - 0.5 * z * z


# The maths below is jitted so that eager use compiles one kernel per shape
# instead of one per primitive; under an outer transform it is simply inlined.


@partial(jax.jit, static_argnums=(4,))
def _initial_values(
    mu_key: jax.Array,
    rho_key: jax.Array,
    mu_init: float,
    rho_init: float,
    shape: tuple[int, ...],
) -> tuple[jax.Array, jax.Array]:
    """``N(mu_init, 0.1**2)`` and ``N(rho_init, 0.1**2)`` values of ``shape``.

    As the torch runtime's ``normal_`` initialisation, from two keys.
    """
    mu = mu_init + 0.1 * jax.random.normal(mu_key, shape, jnp.float32)
    rho = rho_init + 0.1 * jax.random.normal(rho_key, shape, jnp.float32)
    return mu, rho


def _flat(x: jax.Array) -> jax.Array:
    """``x`` as a 1-D array (a free reshape of a row-major array).

    The elementwise maths of a random tensor runs on this view: XLA's CPU
    loops run along an array's last axis, and that of a convolution kernel
    (``OIHW``) is only ``kw`` wide (3), which made sampling, the KL terms and
    their gradients of a ``[32, 16, 3, 3]`` kernel about four times as slow as
    on the same 4608 values in a row.
    """
    return jnp.reshape(x, (-1,))


@jax.jit
def _reparameterised_sample(mu: jax.Array, rho: jax.Array, key: jax.Array) -> jax.Array:
    """``mu + softplus(rho) * eps`` with ``eps ~ N(0, 1)`` drawn from ``key``.

    Computed on flat views (:func:`_flat`). ``eps`` drawn flat has the same
    values as ``jax.random.normal(key, mu.shape)``: JAX's random bits depend
    on an element's row-major index only.
    """
    sigma, _ = _sigma_terms(_flat(rho))
    eps = jax.random.normal(key, (mu.size,), mu.dtype)
    return jnp.reshape(_flat(mu) + sigma * eps, mu.shape)


@jax.jit
def _kl_estimate(
    x: jax.Array,
    mu: jax.Array,
    rho: jax.Array,
    mu_prior: jax.Array,
    std_prior: jax.Array,
) -> jax.Array:
    """``sum log N(x; mu, softplus(rho)) - sum log N(x; mu_prior, std_prior)``."""
    dtype = jnp.result_type(x, mu, rho)  # float32 priors of a float64 posterior
    mu_prior, std_prior = mu_prior.astype(dtype), std_prior.astype(dtype)
    if mu_prior.size == 1 and std_prior.size == 1 and x.shape == mu.shape:
        x, mu, rho = _flat(x), _flat(mu), _flat(rho)  # faster loops, same sums
    log_posterior = _normal_log_density(x, mu, _log_softplus(rho))
    log_prior = _normal_log_density(x, mu_prior, jnp.log(std_prior))
    return jnp.sum(log_posterior) - jnp.sum(log_prior)


@jax.jit
def _kl_closed_form(
    mu: jax.Array, rho: jax.Array, mu_prior: jax.Array, std_prior: jax.Array
) -> jax.Array:
    """``KL(N(mu, softplus(rho)**2) || N(mu_prior, std_prior**2))`` summed.

    The sum over elements of ``log(std_prior) - log(sigma) + (sigma**2 +
    (mu - mu_prior)**2) / (2 std_prior**2) - 1/2``, written as
    ``n (log(std_prior) - 1/2) + sum(sigma**2 + (mu - mu_prior)**2) /
    (2 std_prior**2) - sum log(sigma)``: two plain reductions that XLA
    fuses with the elementwise work (a scalar inside the sum makes XLA's CPU
    backend materialise it as a full array). ``sigma`` and ``log(sigma)`` come
    from :func:`_sigma_terms`, so the value and the gradients are finite for
    every ``rho``.
    """
    dtype = jnp.result_type(mu, rho)  # float32 priors of a float64 posterior
    mu_prior, std_prior = mu_prior.astype(dtype), std_prior.astype(dtype)
    if std_prior.size != 1:  # a prior scale per element: the plain formula
        sigma, log_sigma = _sigma_terms(rho)
        deviation = mu - mu_prior
        scaled = (sigma * sigma + deviation * deviation) / (2.0 * std_prior**2)
        terms = jnp.log(std_prior) - log_sigma + scaled - 0.5
        return jnp.sum(jnp.broadcast_to(terms, mu.shape))
    # Flat views (:func:`_flat`): the same sums over every element, faster.
    sigma, log_sigma = _sigma_terms(_flat(rho))
    if mu_prior.size == 1:
        deviation = _flat(mu) - jnp.reshape(mu_prior, ())
    else:
        deviation = _flat(mu - mu_prior)
    std = jnp.reshape(std_prior, ())
    squares = jnp.sum(sigma * sigma + deviation * deviation)
    constant = mu.size * (jnp.log(std) - 0.5)
    return constant + squares / (2.0 * std * std) - jnp.sum(log_sigma)


class DistributionModule(nnx.Module, ABC):
    """Abstract base of learnable distributions (variational posteriors).

    Subclasses implement :meth:`sample`, :meth:`log_prob` and the
    :attr:`num_params` property (a property here, a method in the torch
    runtime, as in the respective references), and may implement
    :meth:`kl_divergence` (a closed-form KL to the prior); without it the KL
    cost falls back to the one-sample estimate :meth:`log_prob`.
    """

    @abstractmethod
    def sample(self, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Draw one sample shaped like the distribution's parameters."""

    @abstractmethod
    def log_prob(self, x: jax.Array | None = None) -> jax.Array:
        """Return a scalar log-probability of ``x`` (a fresh sample if None)."""

    @property
    @abstractmethod
    def num_params(self) -> int:
        """The number of random values the distribution describes."""

    def kl_divergence(self) -> jax.Array:
        """Closed-form ``KL(q || p)`` of the posterior to the prior (a 0-d array).

        Raises:
            NotImplementedError: Always, in this base class: a distribution
                without a closed form is scored with :meth:`log_prob` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form KL divergence"
        )


class GaussianDistribution(DistributionModule):
    """Diagonal Gaussian posterior ``N(mu, softplus(rho)**2)`` with a Gaussian prior.

    ``mu`` and ``rho`` are ``nnx.Param`` initialised as ``N(mu_init, 0.1)`` and
    ``N(rho_init, 0.1)`` from ``rngs.params()``; the prior
    ``N(mu_prior, std_prior**2)`` is stored in the :class:`Prior` variables
    ``mu_prior`` and ``std_prior`` (shape ``[1]``, as the torch buffers).
    ``rngs`` is kept as ``self.rngs`` and used by :meth:`sample` when no other
    is given; samples draw from ``rngs.sample()`` (the ``sample`` stream if the
    ``Rngs`` has one, else its default stream).

    Same maths as the torch runtime: sigma is torch's softplus (stable for
    large ``rho``), the log-densities use a Python constant for
    ``log(sqrt(2 pi))``, and :meth:`log_prob` uses ``log sigma`` computed as a
    log-softplus and never squares sigma, so it and its gradients stay finite
    for ``rho`` from about ``-88`` up in float32 (tested on ``[-50, 50]``)
    and float64.
    """

    def __init__(
        self,
        shape: tuple[int, ...] | int,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        rngs: nnx.Rngs = DEFAULT_RNGS,
        **kwargs: Any,
    ) -> None:
        """Create the distribution.

        Args:
            shape: Shape of the random tensor (an int is read as ``(shape,)``).
            mu_prior: Mean of the Gaussian prior.
            std_prior: Standard deviation of the Gaussian prior.
            mu_init: Mean of the initial values of ``mu``.
            rho_init: Mean of the initial values of ``rho``.
            rngs: Random streams for initialisation and default sampling.
            **kwargs: Passed to ``nnx.Module``.
        """
        super().__init__(**kwargs)
        size = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        self.shape = shape
        self.mu_init = mu_init
        self.rho_init = rho_init
        self.rngs = rngs
        self.mu_prior = Prior(jnp.array([float(mu_prior)], dtype=jnp.float32))
        self.std_prior = Prior(jnp.array([float(std_prior)], dtype=jnp.float32))
        mu, rho = _initial_values(
            rngs.params(), rngs.params(), float(mu_init), float(rho_init), size
        )
        self.mu = nnx.Param(mu)
        self.rho = nnx.Param(rho)

    @property
    def sigma(self) -> jax.Array:
        """Posterior standard deviation ``softplus(rho)``.

        The values of :func:`.functional.softplus`, with the cheaper
        hand-written derivative of :func:`_sigma_terms`.
        """
        rho = self.rho[...]
        return jnp.reshape(_sigma_terms(_flat(rho))[0], rho.shape)

    def sample(self, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Draw ``mu + softplus(rho) * eps`` with ``eps ~ N(0, 1)`` (reparameterised).

        Args:
            rngs: Random streams; the key is ``rngs.sample()``. Defaults to the
                ``rngs`` given at construction.

        Returns:
            An array shaped like ``mu``, differentiable with respect to ``mu``
            and ``rho``.
        """
        rngs = self.rngs if rngs is None else rngs
        return _reparameterised_sample(self.mu[...], self.rho[...], rngs.sample())

    def log_prob(self, x: jax.Array | None = None) -> jax.Array:
        """One-sample estimate of KL(q || p): ``sum log q(x) - sum log p(x)``.

        Args:
            x: Value to evaluate; a fresh sample is drawn when None.

        Returns:
            A 0-d array.
        """
        if x is None:
            x = self.sample()
        return _kl_estimate(
            jnp.asarray(x),
            self.mu[...],
            self.rho[...],
            self.mu_prior[...],
            self.std_prior[...],
        )

    def kl_divergence(self) -> jax.Array:
        """Closed-form ``KL(N(mu, sigma**2) || N(mu_prior, std_prior**2))``, summed.

        The sum over elements of ``log(std_prior) - log(sigma) + (sigma**2 +
        (mu - mu_prior)**2) / (2 std_prior**2) - 1/2`` with
        ``sigma = softplus(rho)``: the expectation of :meth:`log_prob` over
        samples, without its sampling noise, and independent of any sample.
        ``log(sigma)`` is a log-softplus, so the value and its gradients are
        finite for ``rho`` from about ``-88`` up in float32 (tested on
        ``[-50, 50]``) and in float64.

        Returns:
            A 0-d array, differentiable with respect to ``mu`` and ``rho``.
        """
        return _kl_closed_form(
            self.mu[...], self.rho[...], self.mu_prior[...], self.std_prior[...]
        )

    @property
    def num_params(self) -> int:
        """The number of elements of ``mu``."""
        return int(self.mu[...].size)

    def __call__(self) -> jax.Array:
        """Draw a sample from the construction-time ``rngs`` (as :meth:`sample`)."""
        return self.sample()
