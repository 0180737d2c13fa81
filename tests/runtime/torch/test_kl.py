"""The closed-form Gaussian KL and the fused sample-and-KL training path."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from bnnc.runtime.torch import (
    ELBOLoss,
    GaussianDistribution,
    KLDivergenceLoss,
    Linear,
    distributions,
    total_kl,
)
from bnnc.runtime.torch.distributions import (
    _GaussianSampleKL,
    _KLRecord,
    _PriorTerms,
)


@pytest.fixture
def fused_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor, small ones included, takes the fused sample-and-KL path."""
    monkeypatch.setattr(distributions, "SMALL_NUMEL", 0)


def _distribution(
    seed: int = 0, shape: tuple[int, ...] = (6, 5)
) -> GaussianDistribution:
    torch.manual_seed(seed)
    dist = GaussianDistribution(shape, mu_prior=0.3, std_prior=0.5, rho_init=-1.0)
    with torch.no_grad():
        dist.mu.normal_(0.0, 1.0)
        dist.rho.uniform_(-3.0, 1.0)
    return dist


def _torch_kl(dist: GaussianDistribution) -> torch.Tensor:
    q = Normal(dist.mu, torch.nn.functional.softplus(dist.rho))
    p = Normal(dist.mu_prior, dist.std_prior)
    return kl_divergence(q, p).sum()


def test_closed_form_matches_torch_distributions_and_a_hand_value() -> None:
    dist = _distribution()
    torch.testing.assert_close(dist.kl_divergence(), _torch_kl(dist))
    # One element by hand: q = N(1, 0.5^2), p = N(0, 1):
    # log(1/0.5) + (0.25 + 1) / 2 - 1/2 = log 2 + 0.125.
    one = GaussianDistribution(1, std_prior=1.0)
    with torch.no_grad():
        one.mu.fill_(1.0)
        one.rho.fill_(math.log(math.expm1(0.5)))
    assert one.kl_divergence().item() == pytest.approx(math.log(2.0) + 0.125, abs=1e-6)


def test_closed_form_is_the_mean_of_the_one_sample_estimate() -> None:
    dist = _distribution(shape=(4, 3))
    with torch.no_grad():
        draws = torch.stack([dist.log_prob() for _ in range(20_000)])
    exact = dist.kl_divergence().item()
    standard_error = draws.std().item() / math.sqrt(draws.numel())
    assert draws.mean().item() == pytest.approx(exact, abs=5 * standard_error)


@pytest.mark.usefixtures("fused_everywhere")
def test_fused_sample_and_kl_have_the_reference_values_and_gradients() -> None:
    dist = _distribution(seed=3)
    torch.manual_seed(7)
    value, kl = dist.sample_with_kl()
    torch.manual_seed(7)
    reference_value = dist.mu + torch.nn.functional.softplus(
        dist.rho
    ) * torch.randn_like(dist.rho)
    torch.testing.assert_close(value, reference_value)
    torch.testing.assert_close(kl, _torch_kl(dist))
    weights = torch.randn_like(value)
    (grad_mu, grad_rho) = torch.autograd.grad(
        (value * weights).sum() + 0.7 * kl, (dist.mu, dist.rho)
    )
    reference = torch.autograd.grad(
        (reference_value * weights).sum() + 0.7 * _torch_kl(dist), (dist.mu, dist.rho)
    )
    torch.testing.assert_close(grad_mu, reference[0])
    torch.testing.assert_close(grad_rho, reference[1])


def test_fused_gradients_pass_gradcheck_in_float64() -> None:
    torch.manual_seed(4)
    mu = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    rho = torch.empty(3, 2, dtype=torch.float64).uniform_(-3, 1).requires_grad_(True)
    mu_prior = torch.tensor([0.3], dtype=torch.float64)
    std_prior = torch.tensor([0.5], dtype=torch.float64)

    def fused(mu: torch.Tensor, rho: torch.Tensor) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)  # the same eps on every evaluation
        record = _KLRecord(mu, rho)
        prior = _PriorTerms((), mu_prior, std_prior, mu.numel())
        return _GaussianSampleKL.apply(mu, rho, prior, record)

    assert torch.autograd.gradcheck(fused, (mu, rho))


@pytest.mark.usefixtures("fused_everywhere")
def test_the_kl_of_a_training_step_is_evaluated_once_and_then_recomputed() -> None:
    torch.manual_seed(0)
    layer = Linear(5, 4, std_prior=0.3)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(2, 5))
    dist = layer.weights_distribution
    remembered = dist.kl_divergence()
    assert dist.kl_divergence() is remembered  # evaluated with the sample
    first, _ = layer.kl_cost()
    first.backward()
    # After backward the remembered graph is spent: a new KL is computed.
    assert dist.kl_divergence() is not remembered
    second, _ = layer.kl_cost()
    torch.testing.assert_close(second, first)
    optimiser.step()  # mu and rho change in place: the KL must follow them
    third, _ = layer.kl_cost()
    expected = sum(_torch_kl(dist) for _, dist, _ in layer.random_tensors())
    torch.testing.assert_close(third, expected)
    assert third.item() != pytest.approx(first.item())


def test_remembered_kl_after_load_state_dict_is_not_reused() -> None:
    torch.manual_seed(0)
    layer, other = Linear(3, 2), Linear(3, 2)
    layer(torch.randn(1, 3))
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer.kl_cost()[0], other.kl_cost()[0])


def test_layers_with_a_remembered_kl_copy_and_pickle() -> None:
    torch.manual_seed(0)
    layer = Linear(3, 2)
    layer(torch.randn(4, 3))
    clone = copy.deepcopy(layer)
    restored = pickle.loads(pickle.dumps(layer))
    for model in (clone, restored):
        torch.testing.assert_close(model.kl_cost()[0], layer.kl_cost()[0].detach())


def test_estimators_of_the_losses() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(Linear(4, 3), Linear(3, 2))
    inputs, targets = torch.randn(8, 4), torch.randint(0, 2, (8,))
    outputs = model(inputs)
    sample_kl, count = total_kl(model, "sample")
    exact_kl, _ = total_kl(model)
    assert sample_kl.item() != pytest.approx(exact_kl.item())
    torch.testing.assert_close(
        KLDivergenceLoss(estimator="sample")(model), sample_kl / count
    )
    torch.testing.assert_close(KLDivergenceLoss()(model), exact_kl / count)
    loss = ELBOLoss(torch.nn.CrossEntropyLoss(), kl_weight=0.5, kl_estimator="sample")
    expected = (
        torch.nn.functional.cross_entropy(outputs, targets) + 0.5 * sample_kl / count
    )
    torch.testing.assert_close(loss(outputs, targets, model), expected)
    with pytest.raises(ValueError, match="KL estimator"):
        KLDivergenceLoss(estimator="analytic")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rho", [-50.0, -20.0, 0.0, 20.0, 50.0])
@pytest.mark.usefixtures("fused_everywhere")
def test_closed_form_and_fused_path_finite_over_the_rho_range(
    dtype: torch.dtype, rho: float
) -> None:
    dist = GaussianDistribution((3, 3)).to(dtype)
    with torch.no_grad():
        dist.rho.fill_(rho)
    exact = dist.kl_divergence()
    grads = torch.autograd.grad(exact, (dist.mu, dist.rho))
    value, fused = dist.sample_with_kl()
    torch.testing.assert_close(fused, exact, rtol=1e-5, atol=1e-3)
    fused_grads = torch.autograd.grad(value.sum() + fused, (dist.mu, dist.rho))
    for tensor in (exact, fused, value, *grads, *fused_grads):
        assert torch.isfinite(tensor).all()


@pytest.mark.usefixtures("fused_everywhere")
def test_fused_kl_follows_a_changed_prior() -> None:
    torch.manual_seed(0)
    dist = _distribution()
    dist.sample_with_kl()
    with torch.no_grad():
        dist.mu_prior.fill_(-0.4)
        dist.std_prior.fill_(2.0)
    _, kl = dist.sample_with_kl()
    torch.testing.assert_close(kl, _torch_kl(dist))
    dist.load_state_dict({**dist.state_dict(), "mu_prior": torch.tensor([0.0])})
    _, kl = dist.sample_with_kl()
    torch.testing.assert_close(kl, _torch_kl(dist))
    _, kl = dist.double().sample_with_kl()
    assert kl.dtype == torch.float64
    torch.testing.assert_close(kl, _torch_kl(dist))
