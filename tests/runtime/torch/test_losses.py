"""KLDivergenceLoss and ELBOLoss."""

from __future__ import annotations

import pytest
import torch

from bnnc.runtime.torch import (
    LSTM,
    ELBOLoss,
    FixedLinear,
    KLDivergenceLoss,
    Linear,
)


class _TwoLayer(torch.nn.Module):
    """Linear(4, 3) -> relu -> Linear(3, 1): 15 + 4 = 19 random values."""

    def __init__(self) -> None:
        super().__init__()
        self.first = Linear(4, 3)
        self.second = Linear(3, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.second(torch.relu(self.first(x)))


def _layer_kls(model: _TwoLayer) -> tuple[torch.Tensor, torch.Tensor]:
    return model.first.kl_cost()[0], model.second.kl_cost()[0]


def test_kl_loss_divides_by_the_total_parameter_count() -> None:
    model = _TwoLayer()
    model(torch.randn(2, 4))
    first, second = _layer_kls(model)
    loss = KLDivergenceLoss()(model)
    torch.testing.assert_close(loss, (first + second) / 19)
    # The reference divided by the last layer's count (4): a different number.
    assert not torch.isclose(loss, (first + second) / 4)
    assert loss.shape == ()


def test_kl_loss_weight_and_sum_reduction() -> None:
    model = _TwoLayer()
    first, second = _layer_kls(model)
    torch.testing.assert_close(
        KLDivergenceLoss(weight=0.25)(model), 0.25 * (first + second) / 19
    )
    torch.testing.assert_close(KLDivergenceLoss(reduction="sum")(model), first + second)
    with pytest.raises(ValueError, match="reduction"):
        KLDivergenceLoss(reduction="max")  # type: ignore[arg-type]


def test_kl_loss_ignores_fixed_layers_and_counts_lstm_embedding() -> None:
    model = torch.nn.Sequential(FixedLinear(4, 3), Linear(3, 2))
    torch.testing.assert_close(KLDivergenceLoss()(model), model[1].kl_cost()[0] / 8)
    lstm = LSTM(20, 8, 16, 3)
    lstm_kl, lstm_count = lstm.kl_cost()
    emb_kl, emb_count = lstm.embedding.kl_cost()
    assert lstm_count + emb_count == 1651 + 160
    torch.testing.assert_close(
        KLDivergenceLoss()(lstm), (lstm_kl + emb_kl) / (lstm_count + emb_count)
    )


def test_kl_loss_without_bayesian_layers_is_zero_on_model_dtype() -> None:
    model = torch.nn.Sequential(FixedLinear(4, 3)).double()
    loss = KLDivergenceLoss()(model)
    assert loss.item() == 0.0 and loss.dtype == torch.float64 and loss.shape == ()
    assert KLDivergenceLoss()(_TwoLayer().double()).dtype == torch.float64


def test_elbo_forward_keeps_reference_signature() -> None:
    model = _TwoLayer()
    x, targets = torch.randn(5, 4), torch.randn(5, 1)
    outputs = model(x)
    elbo = ELBOLoss(torch.nn.MSELoss(), num_samples=3, kl_weight=0.5)
    expected = torch.nn.functional.mse_loss(outputs, targets) + 0.5 * (
        sum(_layer_kls(model)) / 19
    )
    torch.testing.assert_close(elbo(outputs, targets, model), expected)
    assert model.calls == 1  # forward scores the given outputs only


def test_elbo_monte_carlo_draws_num_samples_forward_passes() -> None:
    model = _TwoLayer()
    x, targets = torch.randn(5, 4), torch.randn(5, 1)
    elbo = ELBOLoss(torch.nn.MSELoss(), num_samples=4, kl_weight=0.1)

    torch.manual_seed(11)
    loss = elbo.monte_carlo(model, x, targets)
    assert model.calls == 4

    torch.manual_seed(11)
    per_sample = []
    for _ in range(4):
        outputs = model(x)
        kl = sum(_layer_kls(model)) / 19
        per_sample.append(torch.nn.functional.mse_loss(outputs, targets) + 0.1 * kl)
    torch.testing.assert_close(loss, torch.stack(per_sample).mean())
    assert len({round(v.item(), 6) for v in per_sample}) == 4  # four distinct draws

    loss.backward()
    for layer in (model.first, model.second):
        for dist in (layer.weights_distribution, layer.bias_distribution):
            assert torch.any(dist.mu.grad != 0) and torch.any(dist.rho.grad != 0)


def test_elbo_monte_carlo_with_several_inputs() -> None:
    class _Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = Linear(2, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.layer(a + b)

    elbo = ELBOLoss(torch.nn.MSELoss(), num_samples=2)
    loss = elbo.monte_carlo(
        _Pair(), (torch.ones(3, 2), torch.ones(3, 2)), torch.zeros(3, 1)
    )
    assert loss.shape == () and torch.isfinite(loss)
    with pytest.raises(ValueError, match="num_samples"):
        ELBOLoss(torch.nn.MSELoss(), num_samples=0)


def test_losses_stay_on_the_model_device() -> None:
    model = _TwoLayer().to("meta")
    outputs = model(torch.randn(2, 4, device="meta"))
    elbo = ELBOLoss(torch.nn.MSELoss())
    loss = elbo(outputs, torch.randn(2, 1, device="meta"), model)
    assert loss.device.type == "meta" and loss.shape == ()
