"""Gradient estimators of Linear / Conv1d / Conv2d: unbiased, lower variance.

Every estimator must give each example the outputs' exact marginal
distribution (mean ``op(x, mu) + b_mu``, variance ``op(x**2, sigma**2) +
sigma_b**2``), and local reparameterisation and flipout must give gradients of
lower variance than plain reparameterisation on a fixed problem.

Measured on the fixed problem of :func:`test_gradient_variance_is_lower`
(64 examples, sigma = softplus(-1.5) ~ 0.20, MSE loss against a teacher
layer's outputs, 256 draws), the variance over draws of d loss / d mu and
d loss / d rho of the weights, summed over parameters, as a fraction of
reparameterisation's (the JAX runtime's test builds the same problem from its
own random data; see its table):

================  ========  ========  ========  ========
estimator         gradient  Linear    Conv1d    Conv2d
================  ========  ========  ========  ========
local reparam.    d mu      0.23      0.019     0.014
local reparam.    d rho     0.037     0.005     0.002
flipout           d mu      0.24      0.033     0.028
flipout           d rho     0.30      0.26      0.16
================  ========  ========  ========  ========

Flipout keeps more of the rho gradient's variance: the MSE loss squares each
output's own noise, and that term, ``eps**2 * sigma * sum_n x_n**2``, is
shared by the batch whatever the signs (with targets independent of the
inputs it is most of the variance, and the ratio rises to 0.3-0.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from bnnc.runtime.torch import (
    Conv1d,
    Conv2d,
    DistributionModule,
    GaussianDistribution,
    Linear,
    mc_samples,
)
from bnnc.runtime.torch.base import samples_not_stored
from bnnc.runtime.torch.estimators import ESTIMATORS, WeightLayer

LAYERS = ("Linear", "Conv1d", "Conv2d")
ALTERNATIVES = ("local_reparameterization", "flipout")


def _layer(kind: str, estimator: str, **options: object) -> WeightLayer:
    if kind == "Linear":
        return Linear(5, 3, estimator=estimator, **options)  # type: ignore[arg-type]
    if kind == "Conv1d":
        return Conv1d(4, 4, 3, padding=1, groups=2, estimator=estimator, **options)  # type: ignore[arg-type]
    return Conv2d(
        2, 3, (3, 2), stride=(1, 2), padding=1, estimator=estimator, **options
    )  # type: ignore[arg-type]


def _inputs(kind: str, batch: int) -> torch.Tensor:
    shape = {"Linear": (batch, 5), "Conv1d": (batch, 4, 6), "Conv2d": (batch, 2, 4, 5)}
    return torch.randn(shape[kind])


def _set_posterior(layer: WeightLayer, rho: float) -> None:
    """Spread-out means and a visible sigma, the same for every estimator."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for distribution in (layer.weights_distribution, layer.bias_distribution):
            assert isinstance(distribution, GaussianDistribution)
            distribution.mu.copy_(
                torch.randn(distribution.mu.shape, generator=generator) * 0.5
            )
            distribution.rho.fill_(rho)


def _apply(layer: WeightLayer) -> Callable[..., torch.Tensor]:
    if isinstance(layer, Linear):
        return F.linear
    conv = F.conv1d if isinstance(layer, Conv1d) else F.conv2d
    return lambda x, w, b: conv(
        x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups
    )


def _moments(layer: WeightLayer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance of each output element."""
    apply = _apply(layer)
    weights, bias = layer.weights_distribution, layer.bias_distribution
    with torch.no_grad():
        mean = apply(x, weights.mu, bias.mu)
        variance = apply(x * x, weights.sigma**2, bias.sigma**2)
    return mean, variance


# -- construction ------------------------------------------------------------


class _Laplace(DistributionModule):
    """A non-Gaussian posterior: no mu / sigma for the estimators to use."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(shape))

    def sample(self) -> torch.Tensor:
        return self.loc + torch.distributions.Laplace(0.0, 1.0).sample(self.loc.shape)

    def log_prob(self, x: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(())

    def num_params(self) -> int:
        return self.loc.numel()


def test_estimator_is_validated_at_construction() -> None:
    assert ESTIMATORS == ("reparameterization", "local_reparameterization", "flipout")
    assert Linear(2, 3).estimator == "reparameterization"
    with pytest.raises(ValueError, match=r"estimator must be one of .*not 'lrt'"):
        Linear(2, 3, estimator="lrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not 'Flipout'"):
        Conv2d(1, 1, 3, estimator="Flipout")  # type: ignore[arg-type]
    for estimator in ALTERNATIVES:
        with pytest.raises(
            ValueError, match=f"estimator='{estimator}' needs a GaussianDistribution"
        ):
            Linear(2, 3, _Laplace((3, 2)), estimator=estimator)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="bias_distribution is a _Laplace"):
            Conv1d(1, 3, 2, bias_distribution=_Laplace((3,)), estimator=estimator)  # type: ignore[arg-type]
    # Reparameterisation takes any distribution.
    layer = Linear(2, 3, _Laplace((3, 2)))
    assert layer(torch.ones(1, 2)).shape == (1, 3)
    assert "estimator='flipout'" in repr(Linear(2, 3, estimator="flipout"))
    assert "estimator" not in repr(Linear(2, 3))


# -- unbiased: the outputs' marginal distribution ----------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", LAYERS)
def test_outputs_have_the_exact_mean_and_variance(kind: str, estimator: str) -> None:
    """Monte Carlo mean and variance of every output element within 5 standard errors.

    The draws are vectorised (``mc_samples``: ``torch.func.vmap`` with
    ``randomness="different"``), so this also checks each estimator under vmap.
    """
    layer = _layer(kind, estimator)
    _set_posterior(layer, rho=-1.0)
    x = _inputs(kind, batch=3)
    draws = 4000
    samples = mc_samples(layer, x, num_samples=draws)
    mean, variance = _moments(layer, x)
    assert samples.shape == (draws, *mean.shape)
    z_mean = (samples.mean(0) - mean) / torch.sqrt(variance / draws)
    assert z_mean.abs().max() < 5.0
    # For Gaussian outputs the sample variance has standard error var * sqrt(2/(n-1)).
    z_var = (samples.var(0) - variance) / (variance * math.sqrt(2 / (draws - 1)))
    assert z_var.abs().max() < 5.0


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", LAYERS)
def test_examples_share_noise_only_under_reparameterization(
    kind: str, estimator: str
) -> None:
    """Two identical examples: identical outputs with one weight sample per call;
    with local reparameterisation, uncorrelated; with flipout, correlated only
    through the bias (one sample per call): ``sigma_b**2 / variance``."""
    layer = _layer(kind, estimator)
    _set_posterior(layer, rho=-1.0)
    one = _inputs(kind, batch=1)
    x = one.expand(2, *one.shape[1:])
    draws = 4000
    samples = mc_samples(layer, x, num_samples=draws).flatten(2)
    mean, variance = _moments(layer, x)
    noise = samples - mean.flatten(1)
    correlation = (noise[:, 0] * noise[:, 1]).mean(0) / variance[0].flatten()
    if estimator == "reparameterization":
        torch.testing.assert_close(samples[:, 0], samples[:, 1])
        return
    expected = torch.zeros_like(correlation)
    if estimator == "flipout":
        bias_variance = layer.bias_distribution.sigma.detach() ** 2
        per_channel = variance[0].reshape(len(bias_variance), -1)
        expected = (bias_variance[:, None] / per_channel).flatten()
    # mean(a * b) / var of n Gaussian pairs with correlation r has standard
    # error sqrt((1 + r**2) / n).
    limit = 5 * torch.sqrt((1 + expected**2) / draws)
    assert ((correlation - expected).abs() < limit).all()


# -- gradient variance -------------------------------------------------------


def _gradient_draws(
    kind: str, estimator: str, draws: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``draws`` gradients of an MSE loss on a fixed batch, w.r.t. mu and rho."""
    torch.manual_seed(1)
    if kind == "Linear":
        layer: WeightLayer = Linear(16, 8, estimator=estimator)  # type: ignore[arg-type]
        x = torch.randn(64, 16)
    elif kind == "Conv1d":
        layer = Conv1d(3, 4, 3, padding=1, estimator=estimator)  # type: ignore[arg-type]
        x = torch.randn(64, 3, 10)
    else:
        layer = Conv2d(3, 4, 3, padding=1, estimator=estimator)  # type: ignore[arg-type]
        x = torch.randn(64, 3, 6, 6)
    _set_posterior(layer, rho=-1.5)
    # A teacher layer of the same shape gives the targets: residuals that
    # depend on the inputs, as early in training.
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(layer.weights.shape, generator=generator) * 0.5
    target = _apply(layer)(x, teacher, None)
    params = {
        "weights_distribution.mu": layer.weights_distribution.mu.detach(),
        "weights_distribution.rho": layer.weights_distribution.rho.detach(),
    }

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = torch.func.functional_call(layer, params, (x,))
        return F.mse_loss(outputs, target)

    def one(_: torch.Tensor) -> dict[str, torch.Tensor]:
        return torch.func.grad(loss)(params)

    torch.manual_seed(3)
    with samples_not_stored():
        grads = torch.func.vmap(one, randomness="different")(torch.arange(draws))
    return grads["weights_distribution.mu"], grads["weights_distribution.rho"]


@pytest.mark.parametrize("kind", LAYERS)
def test_gradient_variance_is_lower(kind: str) -> None:
    """Summed variance of d loss / d mu and d rho: see the table in the module docs."""
    draws = 256
    variance: dict[str, tuple[float, float]] = {}
    means: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for estimator in ESTIMATORS:
        d_mu, d_rho = _gradient_draws(kind, estimator, draws)
        variance[estimator] = (d_mu.var(0).sum().item(), d_rho.var(0).sum().item())
        means[estimator] = (d_mu.mean(0), d_rho.mean(0))
    base_mu, base_rho = variance["reparameterization"]
    for estimator in ALTERNATIVES:
        mu_ratio = variance[estimator][0] / base_mu
        rho_ratio = variance[estimator][1] / base_rho
        assert mu_ratio < 0.4, (estimator, mu_ratio)
        assert rho_ratio < (0.2 if estimator == "local_reparameterization" else 0.5), (
            estimator,
            rho_ratio,
        )
    # The estimators estimate the same gradient: the mean gradients agree
    # within the standard error of reparameterisation's mean (the largest).
    for index, base in enumerate(variance["reparameterization"]):
        reference = means["reparameterization"][index]
        standard_error = math.sqrt(base / draws / reference.numel())
        for estimator in ALTERNATIVES:
            difference = means[estimator][index] - reference
            assert difference.pow(2).mean().sqrt() < 5 * standard_error, estimator


# -- frozen layers, KL cost --------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("kind", LAYERS)
def test_frozen_layers_use_the_stored_samples(kind: str, estimator: str) -> None:
    layer = _layer(kind, estimator)
    _set_posterior(layer, rho=-1.0)
    x = _inputs(kind, batch=4)
    layer.freeze()
    expected = _apply(layer)(x, layer.weights, layer.bias)
    first, second = layer(x), layer(x)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, expected)
    assert not first.requires_grad
    layer.freeze()  # freezing again keeps the samples
    assert torch.equal(layer(x), first)
    layer.unfreeze()
    assert not torch.equal(layer(x), first)


@pytest.mark.parametrize("estimator", ALTERNATIVES)
def test_forward_keeps_samples_and_freeze_draws_from_the_current_posterior(
    estimator: str,
) -> None:
    layer = Linear(6, 4, estimator=estimator)  # type: ignore[arg-type]
    stored = layer.weights.clone(), layer.bias.clone()
    with torch.no_grad():
        layer.weights_distribution.mu.fill_(5.0)  # the posterior moves on
        layer.bias_distribution.mu.fill_(-5.0)
    layer(torch.randn(3, 6)).sum().backward()
    # The forward pass drew no weight sample.
    assert torch.equal(layer.weights, stored[0]) and torch.equal(layer.bias, stored[1])
    layer.freeze()
    sigma = layer.weights_distribution.sigma.max().item()
    assert (layer.weights - 5.0).abs().max() < 6 * sigma + 0.5
    assert (layer.bias + 5.0).abs().max() < 6 * sigma + 0.5


@pytest.mark.parametrize("estimator", ALTERNATIVES)
def test_sample_kl_is_the_closed_form_without_a_current_sample(estimator: str) -> None:
    layer = Conv2d(2, 3, 3, estimator=estimator, rho_init=-2.0)  # type: ignore[arg-type]
    layer(torch.randn(2, 2, 5, 5))
    closed, count = layer.kl_cost()
    sample, same_count = layer.kl_cost("sample")
    assert count == same_count == 3 * 2 * 9 + 3
    torch.testing.assert_close(sample, closed)
    # Frozen, the forward uses the stored samples: the sample estimate is theirs.
    layer.freeze()
    expected = layer.weights_distribution.log_prob(layer.weights)
    expected = expected + layer.bias_distribution.log_prob(layer.bias)
    torch.testing.assert_close(layer.kl_cost("sample")[0], expected)
    assert not torch.allclose(layer.kl_cost("sample")[0], closed)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_tiny_sigma_gives_the_mean_and_finite_gradients(estimator: str) -> None:
    """sigma -> 0: every estimator is the deterministic layer at mu."""
    layer = Conv2d(2, 3, 3, padding=1, estimator=estimator, rho_init=-60.0)  # type: ignore[arg-type]
    x = torch.randn(2, 2, 4, 4)
    x[0] = 0.0  # zero inputs: zero variance
    out = layer(x)
    expected = F.conv2d(
        x, layer.weights_distribution.mu, layer.bias_distribution.mu, padding=1
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    out.square().sum().backward()
    for parameter in layer.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


def test_no_bias_and_unbatched_inputs() -> None:
    for estimator in ESTIMATORS:
        linear = Linear(3, 2, use_bias=False, estimator=estimator)  # type: ignore[arg-type]
        assert linear(torch.randn(7, 2, 3)).shape == (7, 2, 2)
        conv = Conv1d(2, 4, 3, use_bias=False, estimator=estimator)  # type: ignore[arg-type]
        assert conv(torch.randn(2, 6)).shape == (4, 4)  # unbatched [C, L]
        conv2 = Conv2d(2, 4, 3, estimator=estimator)  # type: ignore[arg-type]
        assert conv2(torch.randn(2, 5, 5)).shape == (4, 3, 3)


# -- torch.compile -----------------------------------------------------------


class _Net(torch.nn.Module):
    def __init__(self, estimator: str) -> None:
        super().__init__()
        self.conv1 = Conv1d(2, 4, 3, padding=1, estimator=estimator)  # type: ignore[arg-type]
        self.conv2 = Conv2d(1, 2, 3, padding=1, estimator=estimator)  # type: ignore[arg-type]
        self.head = Linear(4 * 6 + 2 * 16, 3, estimator=estimator)  # type: ignore[arg-type]

    def forward(self, signal: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(signal)).flatten(1)
        b = torch.relu(self.conv2(image)).flatten(1)
        return self.head(torch.cat([a, b], dim=1))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_training_step_under_torch_compile(estimator: str) -> None:
    """fullgraph compile (aot_eager) of forward, KL and backward: same numbers."""
    from bnnc.runtime.torch import total_kl

    model = _Net(estimator)
    signal, image = torch.randn(4, 2, 6), torch.randn(4, 1, 4, 4)

    def step(signal: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        kl, count = total_kl(model)
        return model(signal, image).square().mean() + kl / count

    torch.manual_seed(5)
    eager = step(signal, image)
    eager_grads = torch.autograd.grad(eager, list(model.parameters()))
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.manual_seed(5)
    loss = compiled(signal, image)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, eager)
    for grad, expected in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(grad, expected)
    # A second draw differs; frozen, compiled equals eager exactly.
    assert not torch.equal(compiled(signal, image), loss)
    for module in model.modules():
        if isinstance(module, WeightLayer):
            module.freeze()
    with torch.no_grad():
        torch.testing.assert_close(compiled(signal, image), step(signal, image))
