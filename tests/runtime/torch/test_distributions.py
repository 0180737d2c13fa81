"""GaussianDistribution: initialisation, sampling and the one-sample KL estimate."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from bnnc.runtime.torch import DistributionModule, GaussianDistribution


def _set(dist: GaussianDistribution, mu: float, sigma: float) -> None:
    """Set every mu to ``mu`` and rho so that softplus(rho) == ``sigma``."""
    with torch.no_grad():
        dist.mu.fill_(mu)
        dist.rho.fill_(math.log(math.expm1(sigma)))


def test_distribution_module_is_abstract() -> None:
    with pytest.raises(TypeError):
        DistributionModule()  # type: ignore[abstract]


def test_parameters_buffers_and_defaults() -> None:
    dist = GaussianDistribution((3, 2))
    assert dist.shape == (3, 2)
    assert dict(dist.named_parameters()).keys() == {"mu", "rho"}
    assert dist.mu.shape == dist.rho.shape == (3, 2)
    assert dist.mu_prior.shape == dist.std_prior.shape == (1,)
    assert dist.mu_prior.item() == 0.0
    assert dist.std_prior.item() == pytest.approx(0.1)
    assert dist.num_params() == 6
    assert GaussianDistribution(5).num_params() == 5


def test_initialisation_statistics() -> None:
    # 20,000 draws each: standard error of the mean 0.1/141 = 7e-4, tolerance 5e-3.
    dist = GaussianDistribution((200, 100), mu_init=0.5, rho_init=-3.0)
    assert dist.mu.mean().item() == pytest.approx(0.5, abs=5e-3)
    assert dist.mu.std().item() == pytest.approx(0.1, abs=5e-3)
    assert dist.rho.mean().item() == pytest.approx(-3.0, abs=5e-3)
    assert dist.rho.std().item() == pytest.approx(0.1, abs=5e-3)


def test_custom_prior_is_stored() -> None:
    dist = GaussianDistribution((2,), mu_prior=0.3, std_prior=2.0)
    assert dist.mu_prior.item() == pytest.approx(0.3)
    assert dist.std_prior.item() == pytest.approx(2.0)


def test_sample_mean_and_std_over_many_draws() -> None:
    dist = GaussianDistribution((4,))
    _set(dist, mu=1.0, sigma=0.5)
    with torch.no_grad():
        draws = torch.stack([dist.sample() for _ in range(20_000)])
    # Standard error of the mean 0.5/sqrt(20000) = 3.5e-3; of the std ~2.5e-3.
    # Tolerance 0.02 (over 5 standard errors) per element.
    torch.testing.assert_close(draws.mean(0), torch.full((4,), 1.0), atol=0.02, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.full((4,), 0.5), atol=0.02, rtol=0)


def test_sample_is_reparameterised() -> None:
    dist = GaussianDistribution((3,))
    torch.manual_seed(7)
    sample = dist.sample()
    torch.manual_seed(7)
    eps = torch.randn(3)
    sigma = torch.nn.functional.softplus(dist.rho)
    torch.testing.assert_close(sample, dist.mu + sigma * eps)
    sample.sum().backward()
    torch.testing.assert_close(dist.mu.grad, torch.ones(3))
    torch.testing.assert_close(dist.rho.grad, eps * torch.sigmoid(dist.rho.detach()))


def test_sample_differs_between_calls() -> None:
    dist = GaussianDistribution((5,), rho_init=0.0)
    assert not torch.equal(dist.sample(), dist.sample())


def test_log_prob_matches_torch_normal() -> None:
    dist = GaussianDistribution((3, 4), mu_prior=0.2, std_prior=0.5, rho_init=-1.0)
    x = torch.randn(3, 4)
    sigma = torch.nn.functional.softplus(dist.rho)
    expected = (
        Normal(dist.mu, sigma).log_prob(x).sum()
        - Normal(torch.tensor(0.2), torch.tensor(0.5)).log_prob(x).sum()
    )
    torch.testing.assert_close(dist.log_prob(x), expected)
    assert dist.log_prob(x).shape == ()


def test_log_prob_without_argument_uses_a_fresh_sample() -> None:
    dist = GaussianDistribution((6,), rho_init=-1.0)
    torch.manual_seed(3)
    value = dist.log_prob()
    torch.manual_seed(3)
    x = dist.sample()
    torch.testing.assert_close(value, dist.log_prob(x))


def test_log_prob_is_an_unbiased_kl_estimate() -> None:
    dist = GaussianDistribution((500,))
    _set(dist, mu=0.05, sigma=0.05)
    exact = kl_divergence(Normal(0.05, 0.05), Normal(0.0, 0.1)) * 500
    with torch.no_grad():
        estimates = torch.stack([dist.log_prob() for _ in range(400)])
    # Per-draw std is about 13 nats; the mean of 400 has a standard error ~0.7;
    # tolerance 3 nats on an exact KL of about 222 nats.
    assert estimates.mean().item() == pytest.approx(exact.item(), abs=3.0)


def test_log_prob_gradients_reach_mu_and_rho() -> None:
    dist = GaussianDistribution((3,))
    dist.log_prob().backward()
    assert dist.mu.grad is not None and dist.rho.grad is not None
    assert torch.all(dist.rho.grad != 0)


def test_large_rho_does_not_overflow() -> None:
    # log1p(exp(rho)), the reference's sigma, is inf for rho = 100 in float32.
    dist = GaussianDistribution((2,), rho_init=100.0)
    assert torch.isfinite(dist.sample()).all()
    assert torch.isfinite(dist.log_prob())
    assert torch.isinf(torch.log1p(torch.exp(dist.rho))).all()


def test_double_precision() -> None:
    dist = GaussianDistribution((2, 2)).double()
    x = torch.randn(2, 2, dtype=torch.float64)
    assert dist.sample().dtype == torch.float64
    assert dist.log_prob(x).dtype == torch.float64


def test_no_host_side_constants() -> None:
    # On the meta device any CPU tensor mixed in (like the reference's pi) fails.
    dist = GaussianDistribution((3,)).to("meta")
    assert dist.sample().device.type == "meta"
    assert dist.log_prob().device.type == "meta"
