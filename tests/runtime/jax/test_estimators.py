"""Gradient estimators of the JAX runtime's Linear / Conv1d / Conv2d.

The same checks as ``tests/runtime/torch/test_estimators.py``: every estimator
gives each output element its exact mean and variance; local
reparameterisation and flipout give gradients of lower variance than plain
reparameterisation on a fixed problem of the same construction (64 examples,
sigma ~ 0.20, MSE to a teacher layer's outputs, 256 draws; the data come from
JAX's generator, not torch's). Measured here, as fractions of
reparameterisation's summed variance (d mu, d rho):

================  ===============  ===============  ===============
estimator         Linear           Conv1d           Conv2d
================  ===============  ===============  ===============
local reparam.    0.23, 0.038      0.019, 0.005     0.014, 0.002
flipout           0.23, 0.35       0.031, 0.16      0.028, 0.17
================  ===============  ===============  ===============

The torch test measures 0.23 / 0.037, 0.019 / 0.005, 0.014 / 0.002 and
0.24 / 0.30, 0.033 / 0.26, 0.028 / 0.16: the same up to the data drawn and the
Monte Carlo error of a variance ratio from 256 draws (largest for flipout's
rho gradient, whose variance is dominated by a few shared terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnc.runtime.jax import (
    Conv1d,
    Conv2d,
    DistributionModule,
    GaussianDistribution,
    Linear,
    mc_samples,
    total_kl,
)
from bnnc.runtime.jax.conv import conv1d, conv2d
from bnnc.runtime.jax.estimators import ESTIMATORS, WeightLayer
from bnnc.runtime.jax.linear import linear

LAYERS = ("Linear", "Conv1d", "Conv2d")
ALTERNATIVES = ("local_reparameterization", "flipout")


def _layer(kind: str, estimator: str, seed: int = 0, **options: object) -> WeightLayer:
    rngs = nnx.Rngs(seed)
    if kind == "Linear":
        return Linear(5, 3, rngs=rngs, estimator=estimator, **options)  # type: ignore[arg-type]
    if kind == "Conv1d":
        return Conv1d(
            4, 4, 3, padding=1, groups=2, rngs=rngs, estimator=estimator, **options
        )  # type: ignore[arg-type]
    return Conv2d(  # type: ignore[misc]
        2,
        3,
        (3, 2),
        stride=(1, 2),
        padding=1,
        rngs=rngs,
        estimator=estimator,
        **options,
    )


def _inputs(kind: str, batch: int, seed: int = 1) -> jax.Array:
    shape = {"Linear": (batch, 5), "Conv1d": (batch, 4, 6), "Conv2d": (batch, 2, 4, 5)}
    return jax.random.normal(jax.random.key(seed), shape[kind])


def _set_posterior(layer: WeightLayer, rho: float) -> None:
    """Spread-out means and a visible sigma, the same for every estimator."""
    keys = iter(jax.random.split(jax.random.key(7), 2))
    for distribution in (layer.weights_distribution, layer.bias_distribution):
        assert isinstance(distribution, GaussianDistribution)
        shape = distribution.mu[...].shape
        distribution.mu.set_value(0.5 * jax.random.normal(next(keys), shape))
        distribution.rho.set_value(jnp.full(shape, rho))


def _apply(layer: WeightLayer) -> Callable[..., jax.Array]:
    if isinstance(layer, Linear):
        return linear
    conv = conv1d if isinstance(layer, Conv1d) else conv2d
    return lambda x, w, b: conv(
        x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups
    )


def _moments(layer: WeightLayer, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    apply = _apply(layer)
    weights, bias = layer.weights_distribution, layer.bias_distribution
    mean = apply(x, weights.mu[...], bias.mu[...])
    variance = apply(x * x, weights.sigma**2, bias.sigma**2)
    return mean, variance


class _Laplace(DistributionModule):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.loc = nnx.Param(jnp.zeros(shape))

    def sample(self, rngs: nnx.Rngs | None = None) -> jax.Array:
        key = (rngs or nnx.Rngs(0)).sample()
        return self.loc[...] + jax.random.laplace(key, self.loc[...].shape)

    def log_prob(self, x: jax.Array | None = None) -> jax.Array:
        return jnp.zeros(())

    @property
    def num_params(self) -> int:
        return int(self.loc[...].size)


def test_estimator_is_validated_at_construction() -> None:
    assert ESTIMATORS == ("reparameterization", "local_reparameterization", "flipout")
    assert Linear(2, 3, rngs=nnx.Rngs(0)).estimator == "reparameterization"
    with pytest.raises(ValueError, match=r"estimator must be one of .*not 'lrt'"):
        Linear(2, 3, rngs=nnx.Rngs(0), estimator="lrt")  # type: ignore[arg-type]
    for estimator in ALTERNATIVES:
        with pytest.raises(ValueError, match="weights_distribution is a _Laplace"):
            Linear(2, 3, _Laplace((3, 2)), rngs=nnx.Rngs(0), estimator=estimator)  # type: ignore[arg-type]
    assert Linear(2, 3, _Laplace((3, 2)), rngs=nnx.Rngs(0))(jnp.ones((1, 2))).shape == (
        1,
        3,
    )


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", LAYERS)
def test_outputs_have_the_exact_mean_and_variance(kind: str, estimator: str) -> None:
    """Vectorised draws (``mc_samples``: ``jax.vmap`` under ``jax.jit``)."""
    layer = _layer(kind, estimator)
    _set_posterior(layer, rho=-1.0)
    x = _inputs(kind, batch=3)
    draws = 4000
    samples = np.asarray(mc_samples(layer, x, num_samples=draws))
    mean, variance = (np.asarray(a) for a in _moments(layer, x))
    assert samples.shape == (draws, *mean.shape)
    z_mean = (samples.mean(0) - mean) / np.sqrt(variance / draws)
    assert np.abs(z_mean).max() < 5.0
    z_var = (samples.var(0, ddof=1) - variance) / (
        variance * math.sqrt(2 / (draws - 1))
    )
    assert np.abs(z_var).max() < 5.0


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_examples_share_noise_only_under_reparameterization(estimator: str) -> None:
    layer = _layer("Conv1d", estimator)
    _set_posterior(layer, rho=-1.0)
    x = jnp.broadcast_to(_inputs("Conv1d", batch=1), (2, 4, 6))
    draws = 4000
    samples = np.asarray(mc_samples(layer, x, num_samples=draws)).reshape(draws, 2, -1)
    mean, variance = (np.asarray(a) for a in _moments(layer, x))
    noise = samples - mean.reshape(2, -1)
    correlation = (noise[:, 0] * noise[:, 1]).mean(0) / variance[0].reshape(-1)
    if estimator == "reparameterization":
        np.testing.assert_allclose(samples[:, 0], samples[:, 1], atol=1e-6)
        return
    expected = np.zeros_like(correlation)
    if estimator == "flipout":
        bias_variance = np.asarray(layer.bias_distribution.sigma) ** 2
        expected = (bias_variance[:, None] / variance[0]).reshape(-1)
    limit = 5 * np.sqrt((1 + expected**2) / draws)
    assert (np.abs(correlation - expected) < limit).all()


def _gradient_draws(kind: str, estimator: str, draws: int) -> tuple[jax.Array, ...]:
    """``draws`` gradients of an MSE loss on a fixed batch, w.r.t. mu and rho."""
    if kind == "Linear":
        layer: WeightLayer = Linear(16, 8, rngs=nnx.Rngs(1), estimator=estimator)  # type: ignore[arg-type]
        shape: tuple[int, ...] = (64, 16)
    elif kind == "Conv1d":
        layer = Conv1d(3, 4, 3, padding=1, rngs=nnx.Rngs(1), estimator=estimator)  # type: ignore[arg-type]
        shape = (64, 3, 10)
    else:
        layer = Conv2d(3, 4, 3, padding=1, rngs=nnx.Rngs(1), estimator=estimator)  # type: ignore[arg-type]
        shape = (64, 3, 6, 6)
    _set_posterior(layer, rho=-1.5)
    x = jax.random.normal(jax.random.key(11), shape)
    teacher_shape = layer.weights_distribution.mu[...].shape
    teacher = 0.5 * jax.random.normal(jax.random.key(2), teacher_shape)
    target = _apply(layer)(x, teacher, None)
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params: nnx.State, key: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, params, rest, copy=True)
        for _, stream in nnx.iter_graph(model):
            if isinstance(stream, nnx.RngStream):
                stream.key.set_value(key)
                stream.count.set_value(jnp.zeros((), stream.count.get_value().dtype))
        return jnp.mean((model(x) - target) ** 2)

    keys = jax.random.split(jax.random.key(3), draws)
    grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, keys)
    weights = grads["weights_distribution"]
    return weights["mu"][...], weights["rho"][...]


@pytest.mark.parametrize("kind", LAYERS)
def test_gradient_variance_is_lower(kind: str) -> None:
    draws = 256
    variance: dict[str, tuple[float, float]] = {}
    means: dict[str, tuple[jax.Array, jax.Array]] = {}
    for estimator in ESTIMATORS:
        d_mu, d_rho = _gradient_draws(kind, estimator, draws)
        variance[estimator] = (
            float(d_mu.var(0, ddof=1).sum()),
            float(d_rho.var(0, ddof=1).sum()),
        )
        means[estimator] = (d_mu.mean(0), d_rho.mean(0))
    base_mu, base_rho = variance["reparameterization"]
    for estimator in ALTERNATIVES:
        mu_ratio = variance[estimator][0] / base_mu
        rho_ratio = variance[estimator][1] / base_rho
        assert mu_ratio < 0.4, (estimator, mu_ratio)
        limit = 0.2 if estimator == "local_reparameterization" else 0.5
        assert rho_ratio < limit, (estimator, rho_ratio)
    for index, base in enumerate(variance["reparameterization"]):
        reference = means["reparameterization"][index]
        standard_error = math.sqrt(base / draws / reference.size)
        for estimator in ALTERNATIVES:
            difference = means[estimator][index] - reference
            assert float(jnp.sqrt(jnp.mean(difference**2))) < 5 * standard_error


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", LAYERS)
def test_frozen_layers_use_the_stored_samples(kind: str, estimator: str) -> None:
    layer = _layer(kind, estimator)
    _set_posterior(layer, rho=-1.0)
    x = _inputs(kind, batch=4)
    layer.freeze()
    expected = _apply(layer)(x, layer.weights[...], layer.bias[...])
    first, second = layer(x), layer(x)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, expected, atol=1e-6)
    layer.freeze()
    np.testing.assert_array_equal(layer(x), first)
    layer.unfreeze()
    assert not np.array_equal(layer(x), first)


@pytest.mark.parametrize("estimator", ALTERNATIVES)
def test_calls_keep_samples_and_freeze_draws_from_the_current_posterior(
    estimator: str,
) -> None:
    layer = Linear(6, 4, rngs=nnx.Rngs(0), estimator=estimator)  # type: ignore[arg-type]
    stored = np.asarray(layer.weights[...]), np.asarray(layer.bias[...])
    layer.weights_distribution.mu.set_value(jnp.full((4, 6), 5.0))
    layer.bias_distribution.mu.set_value(jnp.full((4,), -5.0))
    layer(jnp.ones((3, 6)))
    np.testing.assert_array_equal(layer.weights[...], stored[0])
    np.testing.assert_array_equal(layer.bias[...], stored[1])
    layer.freeze()
    assert float(jnp.abs(layer.weights[...] - 5.0).max()) < 0.5
    assert float(jnp.abs(layer.bias[...] + 5.0).max()) < 0.5


@pytest.mark.parametrize("estimator", ALTERNATIVES)
def test_sample_kl_is_the_closed_form_without_a_current_sample(estimator: str) -> None:
    layer = Conv2d(2, 3, 3, rngs=nnx.Rngs(0), estimator=estimator, rho_init=-2.0)  # type: ignore[arg-type]
    layer(jnp.ones((2, 2, 5, 5)))
    closed, count = layer.kl_cost()
    sample, same_count = layer.kl_cost("sample")
    assert count == same_count == 3 * 2 * 9 + 3
    np.testing.assert_allclose(sample, closed, rtol=1e-6)
    layer.freeze()
    expected = layer.weights_distribution.log_prob(layer.weights[...])
    expected = expected + layer.bias_distribution.log_prob(layer.bias[...])
    np.testing.assert_allclose(layer.kl_cost("sample")[0], expected, rtol=1e-6)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_tiny_sigma_gives_the_mean_and_finite_gradients(estimator: str) -> None:
    layer = Conv2d(
        2, 3, 3, padding=1, rngs=nnx.Rngs(0), estimator=estimator, rho_init=-60.0
    )  # type: ignore[arg-type]
    x = jax.random.normal(jax.random.key(0), (2, 2, 4, 4)).at[0].set(0.0)
    expected = conv2d(
        x,
        layer.weights_distribution.mu[...],
        layer.bias_distribution.mu[...],
        (1, 1),
        (1, 1),
        (1, 1),
        1,
    )
    np.testing.assert_allclose(layer(x), expected, atol=1e-6)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer)
    for leaf in jax.tree.leaves(grads):
        assert bool(jnp.isfinite(leaf).all())


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_training_step_under_nnx_jit(estimator: str) -> None:
    """A jitted step (forward, KL, gradients) gives the eager numbers."""

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv = Conv1d(2, 4, 3, padding=1, rngs=rngs, estimator=estimator)  # type: ignore[arg-type]
            self.head = Linear(24, 3, rngs=rngs, estimator=estimator)  # type: ignore[arg-type]

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.head(jax.nn.relu(self.conv(x)).reshape(x.shape[0], -1))

    def loss(model: Net, x: jax.Array) -> jax.Array:
        kl, count = total_kl(model)
        return jnp.mean(model(x) ** 2) + kl / count

    x = jax.random.normal(jax.random.key(4), (5, 2, 6))
    eager_model, jit_model = Net(nnx.Rngs(9)), Net(nnx.Rngs(9))
    eager = nnx.value_and_grad(loss)(eager_model, x)
    jitted = nnx.jit(nnx.value_and_grad(loss))(jit_model, x)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-5)
    for got, want in zip(
        jax.tree.leaves(jitted[1]), jax.tree.leaves(eager[1]), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The next draw differs (the keys advanced).
    again = nnx.jit(nnx.value_and_grad(loss))(jit_model, x)
    assert float(again[0]) != float(jitted[0])
