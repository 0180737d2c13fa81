"""GaussianDistribution: initialisation, sampling, closed-form and sampled KL."""

from __future__ import annotations

import math
from collections.abc import Iterator

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


def test_kernel_sample_and_kl_are_those_of_the_unflattened_formulas() -> None:
    # Sampling and the KL run on flat views of a [O, I, kh, kw] kernel (much
    # faster on CPU); the values must be those of the shaped maths: the same
    # eps for the same key, and the same sums.
    dist = GaussianDistribution(
        (8, 4, 3, 3), mu_prior=0.1, std_prior=0.3, rho_init=-2.0, rngs=nnx.Rngs(0)
    )
    mu, rho = dist.mu[...], dist.rho[...]
    sigma = jax.nn.softplus(rho)
    eps = jax.random.normal(nnx.Rngs(sample=3).sample(), (8, 4, 3, 3))
    sample = dist.sample(nnx.Rngs(sample=3))
    assert sample.shape == (8, 4, 3, 3)
    np.testing.assert_allclose(sample, mu + sigma * eps, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dist.sigma, sigma, rtol=1e-6)
    expected_kl = np.sum(
        np.log(0.3 / sigma) + (sigma**2 + (mu - 0.1) ** 2) / (2 * 0.3**2) - 0.5
    )
    np.testing.assert_allclose(dist.kl_divergence(), expected_kl, rtol=1e-5)
    log_q = norm.logpdf(sample, mu, sigma)
    log_p = norm.logpdf(sample, 0.1, 0.3)
    np.testing.assert_allclose(
        dist.log_prob(sample), np.sum(log_q) - np.sum(log_p), rtol=1e-4
    )


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


# -- closed-form KL -------------------------------------------------------------


def _set_arrays(dist: GaussianDistribution, mu: np.ndarray, rho: np.ndarray) -> None:
    dist.mu.set_value(jnp.asarray(mu))
    dist.rho.set_value(jnp.asarray(rho))


def _direct_kl(
    mu: jax.Array, rho: jax.Array, mu_prior: float, std_prior: float
) -> jax.Array:
    """The textbook formula, written independently of the runtime."""
    sigma = jax.nn.softplus(rho)
    return jnp.sum(
        jnp.log(std_prior)
        - jnp.log(sigma)
        + (sigma**2 + (mu - mu_prior) ** 2) / (2 * std_prior**2)
        - 0.5
    )


def test_kl_divergence_matches_hand_computation() -> None:
    dist = GaussianDistribution((2,), mu_prior=0.05, std_prior=0.5, rngs=nnx.Rngs(0))
    sigmas, mus = (0.05, 0.2), (0.1, -0.2)
    rhos = [math.log(math.expm1(s)) for s in sigmas]
    _set_arrays(dist, np.array(mus, np.float32), np.array(rhos, np.float32))
    # KL(N(m, s^2) || N(0.05, 0.5^2)) = log(0.5 / s) + (s^2 + (m - 0.05)^2) / 0.5 - 1/2
    # = 2.302585 + 0.01 - 0.5 and 0.916291 + 0.205 - 0.5: 2.433876 in all.
    expected = sum(
        math.log(0.5 / s) + (s**2 + (m - 0.05) ** 2) / 0.5 - 0.5
        for s, m in zip(sigmas, mus, strict=True)
    )
    assert expected == pytest.approx(2.433876, abs=1e-6)
    value = dist.kl_divergence()
    assert value.shape == () and value.dtype == jnp.float32
    assert float(value) == pytest.approx(expected, rel=1e-6)
    # Equal distributions: zero.
    same = GaussianDistribution((3,), mu_prior=0.2, std_prior=0.3, rngs=nnx.Rngs(0))
    _set(same, mu=0.2, sigma=0.3)
    assert float(same.kl_divergence()) == pytest.approx(0.0, abs=1e-6)


def test_kl_divergence_is_the_mean_of_the_sample_estimate() -> None:
    dist = GaussianDistribution((5,), mu_prior=0.1, std_prior=0.4, rngs=nnx.Rngs(0))
    mu = np.array([-0.3, 0.0, 0.1, 0.25, 0.6], np.float32)
    rho = np.array([-3.0, -1.5, -0.5, 0.0, 0.5], np.float32)
    _set_arrays(dist, mu, rho)
    draws = 20_000
    sigma = np.log1p(np.exp(rho))
    eps = np.random.default_rng(0).standard_normal((draws, 5)).astype(np.float32)
    samples = jnp.asarray(mu + sigma * eps)
    estimates = np.asarray(jax.vmap(dist.log_prob)(samples), np.float64)
    standard_error = estimates.std() / math.sqrt(draws)
    closed = float(dist.kl_divergence())
    # The standard error is about 0.02 here (1% of the KL): a real test.
    assert standard_error < 0.05 * abs(closed)
    assert abs(estimates.mean() - closed) < 4 * standard_error


def test_kl_divergence_gradients_match_the_direct_formula() -> None:
    dist = GaussianDistribution((2, 3), mu_prior=-0.1, std_prior=0.7, rngs=nnx.Rngs(0))
    mu = np.linspace(-1.0, 1.0, 6, dtype=np.float32).reshape(2, 3)
    rho = np.linspace(-6.0, 4.0, 6, dtype=np.float32).reshape(2, 3)
    _set_arrays(dist, mu, rho)
    grads = nnx.grad(lambda d: d.kl_divergence())(dist)
    expected_mu, expected_rho = jax.grad(_direct_kl, argnums=(0, 1))(
        jnp.asarray(mu), jnp.asarray(rho), -0.1, 0.7
    )
    np.testing.assert_allclose(grads["mu"][...], expected_mu, rtol=1e-5)
    np.testing.assert_allclose(grads["rho"][...], expected_rho, rtol=1e-5)
    assert float(dist.kl_divergence()) == pytest.approx(
        float(_direct_kl(jnp.asarray(mu), jnp.asarray(rho), -0.1, 0.7)), rel=1e-6
    )


def _reference_kl_and_grads(
    mu: np.ndarray, rho: np.ndarray, mu_prior: float, std_prior: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """KL and its gradients in float64 numpy (``softplus`` torch's: linear above 20)."""
    mu, rho = mu.astype(np.float64), rho.astype(np.float64)
    sigma = np.where(rho > 20.0, rho, np.log1p(np.exp(np.minimum(rho, 20.0))))
    sigmoid = np.where(rho > 20.0, 1.0, 1.0 / (1.0 + np.exp(-rho)))
    kl = np.sum(
        math.log(std_prior)
        - np.log(sigma)
        + (sigma**2 + (mu - mu_prior) ** 2) / (2 * std_prior**2)
        - 0.5
    )
    d_mu = (mu - mu_prior) / std_prior**2
    d_rho = sigmoid * (sigma / std_prior**2 - 1.0 / sigma)
    return float(kl), d_mu, d_rho


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> Iterator[str]:
    """A floating dtype; JAX's float64 mode is on for the float64 case only."""
    previous = bool(jax.config.values["jax_enable_x64"])
    jax.config.update("jax_enable_x64", request.param == "float64")
    yield request.param
    jax.config.update("jax_enable_x64", previous)


def test_kl_divergence_is_finite_and_accurate_for_extreme_rho(dtype: str) -> None:
    rho = np.concatenate([np.linspace(-50.0, 50.0, 21), [-20.5, -19.5, 19.5, 20.5]])
    rho = rho.reshape(5, 5)
    mu = np.random.default_rng(0).uniform(-1.0, 1.0, rho.shape)
    dist = GaussianDistribution((5, 5), std_prior=0.1, rngs=nnx.Rngs(0))
    _set_arrays(dist, mu.astype(dtype), rho.astype(dtype))
    value, grads = nnx.value_and_grad(lambda d: d.kl_divergence())(dist)
    assert value.dtype == dtype
    assert bool(jnp.isfinite(value))
    std_prior = float(dist.std_prior[0])  # 0.1 in float32, as stored
    kl, d_mu, d_rho = _reference_kl_and_grads(
        mu.astype(dtype), rho.astype(dtype), 0.0, std_prior
    )
    # rho = 50 contributes 50^2 / 0.02 = 125,000 nats: float32 keeps 1e-6 of it.
    rtol = 1e-6 if dtype == "float32" else 1e-12
    assert float(value) == pytest.approx(kl, rel=rtol)
    for got, want in ((grads["mu"][...], d_mu), (grads["rho"][...], d_rho)):
        assert got.dtype == dtype and bool(jnp.isfinite(got).all())
        np.testing.assert_allclose(got, want, rtol=10 * rtol, atol=0)


def test_distribution_without_closed_form_raises_not_implemented() -> None:
    class _NoClosedForm(DistributionModule):
        def sample(self, rngs: nnx.Rngs | None = None) -> jax.Array:
            return jnp.zeros(2)

        def log_prob(self, x: jax.Array | None = None) -> jax.Array:
            return jnp.zeros(())

        @property
        def num_params(self) -> int:
            return 2

    with pytest.raises(NotImplementedError, match="_NoClosedForm"):
        _NoClosedForm().kl_divergence()
