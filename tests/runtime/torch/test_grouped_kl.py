"""The grouped closed-form KL of small Gaussian tensors (grouped_kl.py)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from bnnc.runtime.torch import GaussianDistribution, Linear, distributions, total_kl
from bnnc.runtime.torch.distributions import groupable
from bnnc.runtime.torch.grouped_kl import _GaussianGroupKL, _Plan


def _reference_kl(model: torch.nn.Module) -> torch.Tensor:
    """Sum of torch.distributions' Normal-Normal KL over every distribution."""
    total = torch.zeros((), dtype=torch.float64)
    for module in model.modules():
        if isinstance(module, GaussianDistribution):
            q = Normal(module.mu, torch.nn.functional.softplus(module.rho))
            p = Normal(module.mu_prior, module.std_prior)
            total = total + kl_divergence(q, p).sum().double()
    return total


def _model(seed: int = 0) -> torch.nn.Sequential:
    """Small layers with different priors (one with a non-zero prior mean)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        Linear(6, 5, std_prior=0.5),
        Linear(5, 4, mu_prior=0.2, std_prior=2.0),
        Linear(4, 3, use_bias=False),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GaussianDistribution):
                module.mu.normal_(0.0, 1.0)
                module.rho.uniform_(-4.0, 1.0)
    return model


def _gradients(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def test_small_tensors_are_grouped_and_large_ones_are_not() -> None:
    small = GaussianDistribution((10, 10))
    large = GaussianDistribution((distributions.SMALL_NUMEL + 1,))

    class Subclass(GaussianDistribution):
        pass

    assert groupable(small)
    assert not groupable(large)
    assert not groupable(Subclass((3,)))


def test_grouped_kl_and_its_gradients_equal_the_reference() -> None:
    model = _model()
    kl, count = total_kl(model)
    assert count == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3
    reference = _reference_kl(model)
    torch.testing.assert_close(kl.double(), reference, rtol=1e-5, atol=1e-5)
    grads = _gradients(model, 0.7 * kl)
    expected = _gradients(model, 0.7 * reference.float())
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_grouped_and_per_tensor_training_steps_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same noise gives the same loss and gradients on both paths."""
    inputs = torch.randn(8, 6)

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model = _model(seed=3)
        torch.manual_seed(11)
        outputs = model(inputs)
        kl, _ = total_kl(model)
        loss = outputs.square().mean() + 1e-2 * kl
        return loss, _gradients(model, loss)

    grouped_loss, grouped_grads = step()
    monkeypatch.setattr(distributions, "SMALL_NUMEL", 0)  # every tensor fused
    fused_loss, fused_grads = step()
    torch.testing.assert_close(grouped_loss, fused_loss)
    for got, want in zip(grouped_grads, fused_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_small_tensor_samples_the_reparameterised_value() -> None:
    dist = GaussianDistribution((4, 3), rho_init=-1.0)
    torch.manual_seed(5)
    value, kl = dist.sample_with_kl()
    assert kl is None  # total_kl evaluates it with the other small tensors
    torch.manual_seed(5)
    expected = dist.mu + torch.nn.functional.softplus(dist.rho) * torch.randn(4, 3)
    torch.testing.assert_close(value, expected)
    assert value.requires_grad


def test_group_gradients_pass_gradcheck_in_float64() -> None:
    torch.manual_seed(2)
    members = [
        GaussianDistribution((3, 2), mu_prior=0.3, std_prior=0.5).double(),
        GaussianDistribution((4,), std_prior=2.0).double(),
    ]
    plan = _Plan((), members)
    mus = [m.mu.detach().clone().requires_grad_(True) for m in members]
    rhos = [
        torch.empty_like(m.rho).uniform_(-3.0, 1.0).requires_grad_(True)
        for m in members
    ]
    assert torch.autograd.gradcheck(
        lambda *tensors: _GaussianGroupKL.apply(plan, *tensors), (*mus, *rhos)
    )


def test_float32_and_float64_layers_are_separate_groups() -> None:
    model = _model()
    model[1].double()
    inputs = torch.randn(2, 6)
    model[2](model[1](model[0](inputs).double()).float())
    kl, _ = total_kl(model)
    torch.testing.assert_close(kl.double(), _reference_kl(model), rtol=1e-5, atol=1e-5)
    assert len(model.__dict__["_grouped_kl_plans"]) == 2


def test_the_group_follows_a_changed_prior_and_a_replaced_layer() -> None:
    model = _model()
    total_kl(model)
    with torch.no_grad():
        model[0].weights_distribution.std_prior.fill_(3.0)
        model[1].bias_distribution.mu_prior.fill_(-1.0)
    torch.testing.assert_close(
        total_kl(model)[0].double(), _reference_kl(model), rtol=1e-5, atol=1e-5
    )
    model[2] = Linear(4, 3, std_prior=0.05)
    torch.testing.assert_close(
        total_kl(model)[0].double(), _reference_kl(model), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rho", [-50.0, -20.0, 0.0, 20.0, 50.0])
def test_grouped_kl_is_finite_over_the_rho_range(
    dtype: torch.dtype, rho: float
) -> None:
    model = _model().to(dtype)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GaussianDistribution):
                module.rho.fill_(rho)
    kl, _ = total_kl(model)
    exact = sum(
        module.kl_divergence()
        for module in model.modules()
        if isinstance(module, GaussianDistribution)
    )
    torch.testing.assert_close(kl, exact, rtol=1e-5, atol=1e-3)
    for tensor in (kl, *_gradients(model, kl)):
        assert torch.isfinite(tensor).all()


def test_without_gradients_the_closed_form_is_used_per_tensor() -> None:
    model = _model()
    with torch.no_grad():
        kl, _ = total_kl(model)
    assert "_grouped_kl_plans" not in model.__dict__
    torch.testing.assert_close(kl.double(), _reference_kl(model), rtol=1e-5, atol=1e-5)
