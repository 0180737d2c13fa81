"""GaussianDistribution: initialisation, sampling and the one-sample KL estimate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.scipy.stats import norm

from bnnc.runtime.jax import DistributionModule, GaussianDistribution, Prior


def _set(dist: GaussianDistribution, mu: float, sigma: float) -> None:
    """Set every mu to ``mu`` and rho so that softplus(rho) == ``sigma``."""
    rho = math.log(math.expm1(sigma))
    dist.mu.set_value(jnp.asarray(np.full(dist.mu.shape, mu, np.float32)))
    dist.rho.set_value(jnp.asarray(np.full(dist.rho.shape, rho, np.float32)))


def test_distribution_module_is_abstract() -> None:
    with pytest.raises(TypeError):
        DistributionModule()  # type: ignore[abstract]


def test_variables_and_defaults() -> None:
    dist = GaussianDistribution((3, 2), rngs=nnx.Rngs(0))
    assert dist.shape == (3, 2)
    params = nnx.state(dist, nnx.Param)
    assert set(params.keys()) == {"mu", "rho"}
    assert set(nnx.state(dist, Prior).keys()) == {"mu_prior", "std_prior"}
    assert dist.mu.shape == dist.rho.shape == (3, 2)
    assert dist.mu_prior.shape == dist.std_prior.shape == (1,)
    assert float(dist.mu_prior[0]) == 0.0
    assert float(dist.std_prior[0]) == pytest.approx(0.1)
    assert dist.num_params == 6  # a property, as in the JAX reference
    assert GaussianDistribution(5, rngs=nnx.Rngs(0)).num_params == 5


def test_initialisation_statistics() -> None:
    # 20,000 draws each: standard error of the mean 0.1/141 = 7e-4, tolerance 5e-3.
    dist = GaussianDistribution(
        (200, 100), mu_init=0.5, rho_init=-3.0, rngs=nnx.Rngs(1)
    )
    mu, rho = np.asarray(dist.mu[...]), np.asarray(dist.rho[...])
    assert mu.mean() == pytest.approx(0.5, abs=5e-3)
    assert mu.std() == pytest.approx(0.1, abs=5e-3)
    assert rho.mean() == pytest.approx(-3.0, abs=5e-3)
    assert rho.std() == pytest.approx(0.1, abs=5e-3)


def test_same_seed_same_values_and_custom_prior() -> None:
    a = GaussianDistribution((4,), mu_prior=0.3, std_prior=2.0, rngs=nnx.Rngs(3))
    b = GaussianDistribution((4,), rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(a.mu[...], b.mu[...])
    np.testing.assert_array_equal(a.sample(), b.sample())
    assert float(a.mu_prior[0]) == pytest.approx(0.3)
    assert float(a.std_prior[0]) == pytest.approx(2.0)


def test_sample_mean_and_std_over_many_draws() -> None:
    # eps is i.i.d. across elements, so one draw of 20,000 elements tests the
    # same statistics as 20,000 draws of one element.
    dist = GaussianDistribution((4, 5000), rngs=nnx.Rngs(0))
    _set(dist, mu=1.0, sigma=0.5)
    draws = np.asarray(dist.sample(nnx.Rngs(sample=5)))
    # Standard error of the mean 0.5/sqrt(5000) = 7e-3 per row; tolerance 0.03.
    np.testing.assert_allclose(draws.mean(1), np.full(4, 1.0), atol=0.03)
    np.testing.assert_allclose(draws.std(1), np.full(4, 0.5), atol=0.03)


def test_sample_is_reparameterised_and_uses_the_sample_stream() -> None:
    dist = GaussianDistribution((3,), rho_init=-1.0, rngs=nnx.Rngs(0))
    sample = dist.sample(nnx.Rngs(sample=7))
    eps = jax.random.normal(nnx.Rngs(sample=7).sample(), (3,))
    sigma = jax.nn.softplus(dist.rho[...])
    np.testing.assert_allclose(sample, dist.mu[...] + sigma * eps, rtol=1e-6)

    grads = nnx.grad(lambda d: jnp.sum(d.sample(nnx.Rngs(sample=7))))(dist)
    np.testing.assert_allclose(grads["mu"][...], np.ones(3))
    expected = eps * jax.nn.sigmoid(dist.rho[...])
    np.testing.assert_allclose(grads["rho"][...], expected, rtol=1e-5)


def test_sample_differs_between_calls_and_defaults_to_own_rngs() -> None:
    dist = GaussianDistribution((5,), rho_init=0.0, rngs=nnx.Rngs(0))
    assert not np.array_equal(dist.sample(), dist.sample())
    assert not np.array_equal(dist(), dist())
    # The reference's call style: an explicit Rngs.
    assert dist.sample(nnx.Rngs(1)).shape == (5,)


def test_log_prob_matches_hand_computation() -> None:
    dist = GaussianDistribution(
        (3, 4), mu_prior=0.2, std_prior=0.5, rho_init=-1.0, rngs=nnx.Rngs(0)
    )
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    sigma = np.log1p(np.exp(np.asarray(dist.rho[...], np.float64)))
    expected = (
        norm.logpdf(x, dist.mu[...], sigma).sum() - norm.logpdf(x, 0.2, 0.5).sum()
    )
    value = dist.log_prob(x)
    assert value.shape == ()
    assert float(value) == pytest.approx(float(expected), rel=1e-5)


def test_log_prob_without_argument_uses_a_fresh_sample() -> None:
    dist = GaussianDistribution((6,), rho_init=-1.0, rngs=nnx.Rngs(0, sample=3))
    value = dist.log_prob()
    replay = GaussianDistribution((6,), rho_init=-1.0, rngs=nnx.Rngs(0, sample=3))
    x = replay.sample()
    assert float(value) == pytest.approx(float(dist.log_prob(x)), rel=1e-6)


def test_log_prob_is_an_unbiased_kl_estimate() -> None:
    n = 200_000
    dist = GaussianDistribution((n,), rngs=nnx.Rngs(0))
    _set(dist, mu=0.05, sigma=0.05)
    # KL(N(0.05, 0.05^2) || N(0, 0.1^2)) per element, about 0.443 nats.
    exact = (math.log(0.1 / 0.05) + (0.05**2 + 0.05**2) / (2 * 0.1**2) - 0.5) * n
    # The summed estimate has a std of about 0.58 * sqrt(n) = 260 nats (0.3%).
    assert float(dist.log_prob()) == pytest.approx(exact, rel=0.015)


def test_log_prob_gradients_reach_mu_and_rho() -> None:
    dist = GaussianDistribution((3,), rngs=nnx.Rngs(0))
    grads = nnx.grad(lambda d: d.log_prob())(dist)
    assert set(grads.keys()) == {"mu", "rho"}
    assert np.all(np.asarray(grads["rho"][...]) != 0)


def test_large_rho_does_not_overflow() -> None:
    # log1p(exp(rho)), the reference's sigma, is inf for rho = 100 in float32.
    dist = GaussianDistribution((2,), rho_init=100.0, rngs=nnx.Rngs(0))
    assert np.all(np.isfinite(dist.sample()))
    assert np.isfinite(dist.log_prob())
    assert np.all(np.isinf(jnp.log1p(jnp.exp(dist.rho[...]))))
