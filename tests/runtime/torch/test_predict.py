"""Monte Carlo prediction helpers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from bnnc.runtime.torch import (
    LSTM,
    ClassificationUncertainty,
    FixedLinear,
    Linear,
    classification_uncertainty,
    expected_entropy,
    freeze_all,
    mc_samples,
    mutual_information,
    predictive_entropy,
    predictive_mean_std,
    predictive_probs,
    total_kl,
    unfreeze_all,
)
from bnnc.runtime.torch.functional import batch_norm


class _Scripted(torch.nn.Module):
    """Returns the given outputs in turn, ignoring its input (loop mode only)."""

    def __init__(self, outputs: list[list[float]]) -> None:
        super().__init__()
        self.outputs = [torch.tensor(o) for o in outputs]
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return out + 0 * x.sum()


def _net() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        FixedLinear(3, 8), torch.nn.ReLU(), Linear(8, 4, rho_init=-1.0)
    )


def test_mc_samples_stacks_fresh_draws_without_grad() -> None:
    model = _net()
    samples = mc_samples(model, torch.randn(5, 3), num_samples=6)
    assert samples.shape == (6, 5, 4) and not samples.requires_grad
    assert not torch.equal(samples[0], samples[1])
    freeze_all(model)
    frozen = mc_samples(model, torch.randn(5, 3), num_samples=3)
    assert torch.equal(frozen[0], frozen[1]) and torch.equal(frozen[1], frozen[2])
    with pytest.raises(ValueError, match="num_samples"):
        mc_samples(model, torch.randn(5, 3), num_samples=0)


def test_mc_samples_takes_first_element_of_tuple_outputs() -> None:
    lstm = LSTM(10, 4, 5, 3)
    samples = mc_samples(lstm, torch.randint(0, 10, (2, 4, 1)), num_samples=3)
    assert samples.shape == (3, 2, 3)


def test_predictive_mean_std_hand_computed() -> None:
    model = _Scripted([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0], [7.0, 10.0]])
    mean, std = predictive_mean_std(
        model, torch.zeros(1), num_samples=4, vectorize=False
    )
    assert model.calls == 4
    torch.testing.assert_close(mean, torch.tensor([4.0, 10.0]))
    # Population std of 1, 3, 5, 7: sqrt(5).
    torch.testing.assert_close(std, torch.tensor([math.sqrt(5.0), 0.0]))


def test_predictive_probs_is_the_mean_softmax() -> None:
    logits = [[0.0, 0.0], [math.log(3.0), 0.0]]  # softmax: [.5, .5] and [.75, .25]
    probs = predictive_probs(
        _Scripted(logits), torch.zeros(1), num_samples=2, vectorize=False
    )
    torch.testing.assert_close(probs, torch.tensor([0.625, 0.375]))


def test_entropies_hand_computed() -> None:
    uniform = torch.full((4,), 0.25)
    assert predictive_entropy(uniform).item() == pytest.approx(math.log(4))
    assert predictive_entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    samples = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    assert expected_entropy(samples).item() == pytest.approx(math.log(2) / 2)


def test_mutual_information_of_identical_and_disagreeing_samples() -> None:
    same = torch.tensor([[0.7, 0.3]] * 5)
    assert mutual_information(same).item() == pytest.approx(0.0, abs=1e-7)
    disagree = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert mutual_information(disagree).item() == pytest.approx(math.log(2))
    batch = torch.rand(8, 6, 3).softmax(-1)
    assert torch.all(mutual_information(batch) >= 0)


def test_classification_uncertainty_decomposes_entropy() -> None:
    logits = [[10.0, -10.0], [-10.0, 10.0]]  # two confident, opposite samples
    result = classification_uncertainty(
        _Scripted(logits), torch.zeros(1), num_samples=2, vectorize=False
    )
    assert isinstance(result, ClassificationUncertainty)
    torch.testing.assert_close(result.probs, torch.tensor([0.5, 0.5]))
    assert result.predictive_entropy.item() == pytest.approx(math.log(2))
    assert result.aleatoric.item() == pytest.approx(0.0, abs=1e-6)
    assert result.mutual_information.item() == pytest.approx(math.log(2), abs=1e-6)


def test_classification_uncertainty_on_a_real_model() -> None:
    model = _net()
    x = torch.randn(7, 3)
    result = classification_uncertainty(model, x, num_samples=5)
    assert result.probs.shape == (7, 4)
    torch.testing.assert_close(result.probs.sum(-1), torch.ones(7))
    torch.testing.assert_close(
        result.predictive_entropy, result.aleatoric + result.mutual_information
    )


def test_freeze_all_unfreeze_all_and_total_kl() -> None:
    model = torch.nn.Sequential(Linear(3, 4), torch.nn.Sequential(LSTM(10, 2, 3, 1)))
    freeze_all(model)
    lstm = model[1][0]
    assert model[0].frozen and lstm.frozen and lstm.embedding.frozen
    unfreeze_all(model)
    assert not (model[0].frozen or lstm.frozen or lstm.embedding.frozen)
    kl, count = total_kl(model)
    parts = [model[0].kl_cost(), lstm.kl_cost(), lstm.embedding.kl_cost()]
    torch.testing.assert_close(kl, sum(p[0] for p in parts))
    assert count == sum(p[1] for p in parts) == 16 + (4 * (3 * 5 + 3) + 4) + 20


def _replay_loop(model: torch.nn.Module, inputs: torch.Tensor, draws: list) -> list:
    """Outputs of ``model`` with each recorded draw set as the frozen weights."""
    outputs = []
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    for index in range(len(draws[0][1])):
        for layer, (_, values) in zip(layers, draws, strict=True):
            layer.weights = values[index]["weights"]
            layer.bias = values[index]["bias"]
            layer.frozen = True
        outputs.append(model(inputs))
    return outputs


def test_vectorised_mc_samples_equal_separate_passes_with_the_same_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        Linear(3, 6, rho_init=-1.0), torch.nn.Tanh(), Linear(6, 2, rho_init=-1.0)
    )
    inputs = torch.randn(4, 3)
    recorded: list = []
    draw = Linear._draw

    def recording_draw(self: Linear) -> dict[str, torch.Tensor]:
        values = draw(self)
        recorded.append((self, values))
        return values

    monkeypatch.setattr(Linear, "_draw", recording_draw)
    stored = model[0].weights.clone()
    samples = mc_samples(model, inputs, num_samples=5)
    assert torch.equal(model[0].weights, stored)  # current samples untouched
    monkeypatch.setattr(Linear, "_draw", draw)
    # Under vmap each layer drew once, a batch of 5 weight tensors.
    assert [layer for layer, _ in recorded] == [model[0], model[2]]
    draws = [
        (
            layer,
            [
                {
                    name: torch._C._functorch.get_unwrapped(value)[i]
                    for name, value in values.items()
                }
                for i in range(5)
            ],
        )
        for layer, values in recorded
    ]
    expected = torch.stack(_replay_loop(model, inputs, draws))
    torch.testing.assert_close(samples, expected)


def test_vectorised_and_loop_mc_samples_have_the_same_distribution() -> None:
    torch.manual_seed(1)
    model = _net()
    inputs = torch.randn(2, 3)
    vectorised = mc_samples(model, inputs, num_samples=4000)
    loop = mc_samples(model, inputs, num_samples=4000, vectorize=False)
    # Standard error of a mean over 4000 draws: std / 63; tolerance 4 of them.
    tolerance = 4 * loop.std(dim=0) / math.sqrt(4000)
    assert torch.all((vectorised.mean(0) - loop.mean(0)).abs() < tolerance)
    ratio = vectorised.std(dim=0) / loop.std(dim=0)
    assert torch.all((ratio - 1).abs() < 0.1)


def test_vectorised_mc_keeps_batch_statistics_per_sample() -> None:
    # batch_norm couples the examples of a batch: each sample must see the
    # whole batch alone, as a separate call would.
    torch.manual_seed(2)

    class Normalised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = Linear(3, 4, rho_init=-1.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return batch_norm(self.layer(x))  # what generated code calls

    samples = mc_samples(Normalised(), torch.randn(16, 3), num_samples=6)
    zeros = torch.zeros(6, 4)
    torch.testing.assert_close(samples.mean(dim=1), zeros, atol=1e-5, rtol=0)
    assert samples.std(dim=(0, 1)).min() > 0.1  # the samples do differ


def test_per_example_sampling_keeps_each_examples_predictive() -> None:
    # Two copies of one input: joint samples give them the same outputs
    # (shared weights); per-example samples give independent draws of the
    # same distribution, from one mean/variance evaluation of the first layer.
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        Linear(3, 5, rho_init=-1.0), torch.nn.Tanh(), FixedLinear(5, 2)
    )
    inputs = torch.randn(1, 3).repeat(2, 1)
    joint = mc_samples(model, inputs, num_samples=4000)
    torch.testing.assert_close(joint[:, 0], joint[:, 1])
    marginal = mc_samples(model, inputs, num_samples=4000, joint=False)
    assert not torch.allclose(marginal[:, 0], marginal[:, 1])
    correlation = torch.corrcoef(torch.stack([marginal[:, 0, 0], marginal[:, 1, 0]]))
    assert abs(correlation[0, 1].item()) < 0.1
    tolerance = 4 * joint.std(dim=0) / math.sqrt(4000)
    assert torch.all((marginal.mean(0) - joint.mean(0)).abs() < tolerance)
    ratio = marginal.std(dim=0) / joint.std(dim=0)
    assert torch.all((ratio - 1).abs() < 0.1)


def test_predictive_helpers_match_the_loop_in_distribution() -> None:
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        FixedLinear(3, 6), torch.nn.ReLU(), Linear(6, 4, rho_init=-1.5)
    )
    inputs = torch.randn(5, 3)
    fast = predictive_probs(model, inputs, num_samples=3000)
    slow = predictive_probs(model, inputs, num_samples=3000, vectorize=False)
    torch.testing.assert_close(fast, slow, atol=0.02, rtol=0)
    mean, std = predictive_mean_std(model, inputs, num_samples=3000)
    loop_mean, loop_std = predictive_mean_std(
        model, inputs, num_samples=3000, vectorize=False
    )
    torch.testing.assert_close(
        mean, loop_mean, atol=4 * loop_std.max().item() / 50, rtol=0
    )
    torch.testing.assert_close(std, loop_std, rtol=0.1, atol=0)


def test_lstm_models_loop_by_default() -> None:
    lstm = LSTM(10, 4, 5, 3)
    calls = []
    lstm.register_forward_hook(lambda *args: calls.append(1))
    mc_samples(lstm, torch.randint(0, 10, (2, 4)), num_samples=3)
    assert len(calls) == 3  # one call per sample, not one vmapped call
