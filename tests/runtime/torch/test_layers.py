"""Bayesian layers and their fixed twins: maths, sampling, freezing and KL cost."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F

from bnnc.runtime.torch import (
    LSTM,
    BayesianModule,
    Conv1d,
    Conv2d,
    Embedding,
    FixedConv1d,
    FixedConv2d,
    FixedEmbedding,
    FixedLinear,
    FixedLSTM,
    GaussianDistribution,
    Linear,
)

# -- helpers ------------------------------------------------------------------


def _reference_lstm(
    ids: torch.Tensor, table: torch.Tensor, layer: LSTM | FixedLSTM
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference's loop: one matmul per gate per step."""
    x = table[ids]
    h = torch.zeros(ids.shape[0], layer.hidden_size)
    c = torch.zeros(ids.shape[0], layer.hidden_size)
    for t in range(ids.shape[1]):
        z = torch.cat([x[:, t], h], dim=1)
        f = torch.sigmoid(z @ layer.wf.T + layer.bf)
        i = torch.sigmoid(z @ layer.wi.T + layer.bi)
        g = torch.tanh(z @ layer.wc.T + layer.bc)
        o = torch.sigmoid(z @ layer.wo.T + layer.bo)
        c = c * f + g * i
        h = o * torch.tanh(c)
    return h @ layer.wv.T + layer.bv, h, c


def _widen(layer: BayesianModule) -> None:
    """Give every posterior a visible spread (sigma ~ 0.3) and spread-out means."""
    with torch.no_grad():
        for module in layer.modules():
            if isinstance(module, GaussianDistribution):
                module.mu.normal_(0.0, 0.5)
                module.rho.fill_(-1.0)


def _mus_and_rhos(layer: BayesianModule) -> list[torch.Tensor]:
    return [
        p
        for name, p in layer.named_parameters()
        if name.endswith(".mu") or name.endswith(".rho")
    ]


def _layers() -> dict[str, tuple[BayesianModule, tuple[torch.Tensor, ...]]]:
    """One small instance of each Bayesian layer with a matching input."""
    return {
        "linear": (Linear(4, 3), (torch.randn(2, 4),)),
        "conv1d": (Conv1d(2, 3, 3), (torch.randn(2, 2, 7),)),
        "conv2d": (Conv2d(2, 3, 3), (torch.randn(2, 2, 6, 6),)),
        "embedding": (Embedding(10, 4), (torch.tensor([[1, 2], [3, 9]]),)),
        "lstm": (LSTM(10, 4, 5, 3), (torch.randint(0, 10, (2, 4, 1)),)),
    }


def _output(layer: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    out = layer(*inputs)
    return out[0] if isinstance(out, tuple) else out


LAYER_NAMES = list(_layers())


# -- Linear -------------------------------------------------------------------


def test_linear_shapes_and_maths() -> None:
    layer = Linear(4, 3)
    assert layer.weights.shape == (3, 4) and layer.bias.shape == (3,)
    x = torch.randn(5, 2, 4)
    y = layer(x)
    assert y.shape == (5, 2, 3)
    # The buffers hold exactly the sample the call used.
    torch.testing.assert_close(y, F.linear(x, layer.weights, layer.bias))


def test_linear_without_bias() -> None:
    layer = Linear(4, 3, use_bias=False)
    assert layer.bias is None and layer.bias_distribution is None
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer(x), x @ layer.weights.T)
    assert layer.kl_cost()[1] == 12
    layer.freeze()
    torch.testing.assert_close(layer(x), x @ layer.weights.T)


def test_default_distribution_keywords() -> None:
    layer = Linear(30, 20, mu_prior=0.5, std_prior=1.0, mu_init=1.0, rho_init=-3.0)
    dist = layer.weights_distribution
    assert isinstance(dist, GaussianDistribution)
    assert dist.mu_prior.item() == 0.5 and dist.std_prior.item() == 1.0
    # 600 draws of N(1, 0.1): standard error 4e-3, tolerance 0.02.
    assert dist.mu.mean().item() == pytest.approx(1.0, abs=0.02)
    assert dist.rho.mean().item() == pytest.approx(-3.0, abs=0.02)
    assert layer.bias_distribution.std_prior.item() == 1.0


def test_explicit_distributions_win_over_keywords() -> None:
    weights = GaussianDistribution((3, 4), std_prior=2.0)
    bias = GaussianDistribution((3,), mu_prior=-1.0)
    layer = Linear(4, 3, weights, bias, std_prior=7.0)
    assert layer.weights_distribution is weights
    assert layer.bias_distribution is bias
    assert layer.weights_distribution.std_prior.item() == 2.0


# -- convolutions ---------------------------------------------------------------

CONV_CASES = [
    # stride, padding, dilation, groups
    (1, 0, 1, 1),
    (2, 1, 1, 1),
    (1, 2, 2, 1),
    (2, 1, 2, 2),
    (1, 1, 1, 4),
]


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), CONV_CASES)
def test_conv1d_matches_functional(
    stride: int, padding: int, dilation: int, groups: int
) -> None:
    layer = Conv1d(4, 8, 3, stride, padding, dilation, groups)
    assert layer.weights.shape == (8, 4 // groups, 3)
    x = torch.randn(2, 4, 11)
    y = layer(x)
    expected = F.conv1d(x, layer.weights, layer.bias, stride, padding, dilation, groups)
    length = (11 + 2 * padding - dilation * 2 - 1) // stride + 1
    assert y.shape == (2, 8, length)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), CONV_CASES)
def test_conv2d_matches_functional(
    stride: int, padding: int, dilation: int, groups: int
) -> None:
    layer = Conv2d(4, 8, (3, 2), stride, (padding, 1), dilation, groups)
    assert layer.kernel_size == (3, 2)
    assert layer.stride == (stride, stride)
    assert layer.weights.shape == (8, 4 // groups, 3, 2)
    x = torch.randn(2, 4, 9, 8)
    y = layer(x)
    expected = F.conv2d(
        x, layer.weights, layer.bias, stride, (padding, 1), dilation, groups
    )
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected)


def test_conv_defaults_and_validation() -> None:
    layer = Conv2d(1, 2, 3)
    assert layer.stride == (1, 1) and layer.padding == (0, 0)
    assert layer(torch.randn(1, 1, 5, 5)).shape == (1, 2, 3, 3)
    assert Conv1d(3, 4, 2, use_bias=False).bias is None
    with pytest.raises(ValueError, match="groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        FixedConv1d(4, 3, 3, groups=2)


# -- Embedding ------------------------------------------------------------------


def test_embedding_lookup_and_padding_idx() -> None:
    layer = Embedding(10, 4, padding_idx=0)
    _widen(layer)
    ids = torch.tensor([[0, 3, 9], [0, 0, 1]])
    y = layer(ids)
    assert y.shape == (2, 3, 4)
    expected = layer.weights[ids].clone()
    expected[ids == 0] = 0.0
    torch.testing.assert_close(y, expected)
    assert torch.count_nonzero(layer.weights[0]) == 4  # table row not zeroed


def test_embedding_negative_padding_idx() -> None:
    layer = Embedding(10, 4, padding_idx=-1)
    assert layer.padding_idx == 9
    assert torch.all(layer(torch.tensor([9])) == 0)


def test_embedding_max_norm_rescales_like_reference() -> None:
    layer = Embedding(6, 3, max_norm=1.0, norm_type=2.0)
    table = torch.tensor(
        [
            [3.0, 4.0, 0.0],
            [0.3, 0.4, 0.0],
            [1.0, 0.0, 0.0],
            [0, 0, 0],
            [2, 2, 1],
            [0, 1, 0],
        ]
    )
    layer.weights = table
    layer.freeze()
    ids = torch.tensor([0, 1, 2, 4])
    norms = torch.tensor([5.0, 0.5, 1.0, 3.0]).unsqueeze(-1)
    expected = table[ids] * torch.clamp(1.0 / (norms + 1e-8), max=1.0)
    y = layer(ids)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(y[0], torch.tensor([0.6, 0.8, 0.0]))
    torch.testing.assert_close(y[1], table[1])  # under max_norm: unchanged
    torch.testing.assert_close(layer.weights, table)  # never renormalised in place


def test_embedding_max_norm_p1_and_gradients() -> None:
    layer = Embedding(5, 4, max_norm=0.5, norm_type=1.0, padding_idx=2)
    _widen(layer)
    ids = torch.tensor([0, 1, 2, 4])
    y = layer(ids)
    rows = layer.weights[ids].masked_fill((ids == 2).unsqueeze(-1), 0.0)
    scale = torch.clamp(0.5 / (rows.abs().sum(-1, keepdim=True) + 1e-8), max=1.0)
    torch.testing.assert_close(y, rows * scale)
    (y * torch.randn_like(y)).sum().backward()
    mu_grad = layer.weights_distribution.mu.grad
    assert torch.all(mu_grad[2] == 0) and torch.all(mu_grad[3] == 0)
    assert torch.any(mu_grad[0] != 0)


def test_fixed_embedding() -> None:
    layer = FixedEmbedding(50, 8, padding_idx=1, sparse=True)
    assert torch.all(layer.weights[1] == 0)
    # N(0, 1) initialisation: 392 values, std within 0.15.
    assert layer.weights[2:].std().item() == pytest.approx(1.0, abs=0.15)
    ids = torch.tensor([1, 2, 3])
    y = layer(ids)
    torch.testing.assert_close(y[1:], layer.weights[2:4])
    y.sum().backward()
    assert layer.weights.grad.layout == torch.sparse_coo


# -- LSTM -----------------------------------------------------------------------


def test_lstm_matches_reference_loop() -> None:
    layer = LSTM(12, 4, 6, 3)
    _widen(layer)
    layer.freeze()
    ids = torch.randint(0, 12, (2, 5, 1))
    y, (h, c) = layer(ids)
    expected_y, expected_h, expected_c = _reference_lstm(
        ids.squeeze(-1), layer.embedding.weights, layer
    )
    assert y.shape == (2, 3) and h.shape == c.shape == (2, 6)
    torch.testing.assert_close(y, expected_y)
    torch.testing.assert_close(h, expected_h)
    torch.testing.assert_close(c, expected_c)
    # [B, T] ids give the same result as [B, T, 1].
    torch.testing.assert_close(layer(ids.squeeze(-1))[0], y)


def test_lstm_init_states_continue_a_sequence() -> None:
    layer = LSTM(12, 4, 6, 3)
    _widen(layer)
    layer.freeze()
    ids = torch.randint(0, 12, (2, 6))
    y_full, (h_full, c_full) = layer(ids)
    _, state = layer(ids[:, :3])
    y_split, (h_split, c_split) = layer(ids[:, 3:], state)
    torch.testing.assert_close(y_split, y_full)
    torch.testing.assert_close(h_split, h_full)
    torch.testing.assert_close(c_split, c_full)


def test_lstm_padding_and_shapes_of_tensors() -> None:
    layer = LSTM(20, 8, 16, 3, padding_idx=0, max_norm=2.0)
    assert layer.embedding.padding_idx == 0 and layer.embedding.max_norm == 2.0
    for gate in "fico":
        assert getattr(layer, f"w{gate}").shape == (16, 24)
        assert getattr(layer, f"b{gate}").shape == (16,)
        assert isinstance(getattr(layer, f"w{gate}_distribution"), GaussianDistribution)
    assert layer.wv.shape == (3, 16) and layer.bv.shape == (3,)


def test_fixed_lstm_matches_reference_loop() -> None:
    layer = FixedLSTM(12, 4, 6, 3)
    bound = 1.0 / math.sqrt(6)
    assert layer.wf.abs().max() <= bound and layer.bi.abs().max() <= bound
    ids = torch.randint(0, 12, (3, 4, 1))
    y, (h, c) = layer(ids)
    expected_y, expected_h, expected_c = _reference_lstm(
        ids.squeeze(-1), layer.embedding.weights, layer
    )
    torch.testing.assert_close(y, expected_y)
    torch.testing.assert_close(h, expected_h)
    torch.testing.assert_close(c, expected_c)


# -- sampling, freezing and KL cost, for every layer --------------------------


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_each_call_samples_new_weights(name: str) -> None:
    layer, inputs = _layers()[name]
    _widen(layer)
    assert not torch.equal(_output(layer, *inputs), _output(layer, *inputs))


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_gradients_reach_mu_and_rho(name: str) -> None:
    layer, inputs = _layers()[name]
    _output(layer, *inputs).square().sum().backward()
    for parameter in _mus_and_rhos(layer):
        assert parameter.grad is not None
        assert torch.any(parameter.grad != 0)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_freeze_fixes_weights_and_stops_gradients(name: str) -> None:
    layer, inputs = _layers()[name]
    _widen(layer)
    layer.freeze()
    assert layer.frozen
    first = _output(layer, *inputs)
    torch.testing.assert_close(_output(layer, *inputs), first, rtol=0, atol=0)
    assert not first.requires_grad
    for _, _, value in layer.random_tensors():
        assert value is not None and value.is_leaf and not value.requires_grad
    layer.unfreeze()
    assert not layer.frozen
    assert not torch.equal(_output(layer, *inputs), first)
    assert _output(layer, *inputs).requires_grad


def test_freeze_samples_missing_weights_and_frozen_none_raises() -> None:
    layer = Linear(4, 3)
    layer.weights = None
    layer.freeze()
    assert layer.weights is not None and layer.weights.shape == (3, 4)
    layer.bias = None
    with pytest.raises(ValueError, match="frozen with undefined weights and/or bias"):
        layer(torch.randn(1, 4))
    layer.unfreeze()
    assert layer(torch.randn(1, 4)).shape == (1, 3)
    assert layer.bias is not None


def test_freeze_and_unfreeze_reach_lstm_embedding() -> None:
    layer = LSTM(10, 4, 5, 3)
    layer.freeze()
    assert layer.embedding.frozen
    layer.unfreeze()
    assert not layer.embedding.frozen


@pytest.mark.parametrize(
    ("name", "num_params"),
    [
        ("linear", 3 * 4 + 3),
        ("conv1d", 3 * 2 * 3 + 3),
        ("conv2d", 3 * 2 * 9 + 3),
        ("embedding", 40),
        # Four gates of 5 x (4 + 5) + 5, read-out 3 x 5 + 3; embedding excluded.
        ("lstm", 4 * (5 * 9 + 5) + 18),
    ],
)
def test_kl_cost_sums_log_prob_of_current_samples(name: str, num_params: int) -> None:
    layer, inputs = _layers()[name]
    _output(layer, *inputs)
    kl, count = layer.kl_cost("sample")
    expected = sum(dist.log_prob(value) for _, dist, value in layer.random_tensors())
    assert count == num_params
    torch.testing.assert_close(kl, expected)
    assert kl.shape == ()
    kl.backward()  # differentiable with respect to the posterior
    for _, dist, _ in layer.random_tensors():
        assert dist.mu.grad is not None and dist.rho.grad is not None


@pytest.mark.parametrize("name", ["linear", "conv1d", "conv2d", "embedding", "lstm"])
def test_kl_cost_defaults_to_the_closed_form(name: str) -> None:
    layer, inputs = _layers()[name]
    _output(layer, *inputs)
    kl, _ = layer.kl_cost()
    expected = sum(dist.kl_divergence() for _, dist, _ in layer.random_tensors())
    torch.testing.assert_close(kl, expected)
    with pytest.raises(ValueError, match="KL estimator"):
        layer.kl_cost("exact")  # type: ignore[arg-type]


def test_grouped_conv_and_lstm_embedding_counts() -> None:
    assert Conv2d(2, 4, 3, groups=2).kl_cost()[1] == 4 * 1 * 9 + 4
    assert LSTM(20, 8, 16, 3).embedding.kl_cost()[1] == 160


# -- fixed twins ----------------------------------------------------------------

FIXED_PAIRS = [
    (Linear(4, 3), FixedLinear(4, 3), torch.randn(2, 4)),
    (
        Conv1d(4, 6, 3, 2, 1, 1, 2),
        FixedConv1d(4, 6, 3, 2, 1, 1, 2),
        torch.randn(2, 4, 9),
    ),
    (Conv2d(2, 4, 3, 1, 1), FixedConv2d(2, 4, 3, 1, 1), torch.randn(2, 2, 5, 5)),
    (Embedding(10, 3, 0), FixedEmbedding(10, 3, 0), torch.tensor([[0, 4, 9]])),
    (LSTM(10, 3, 4, 2), FixedLSTM(10, 3, 4, 2), torch.randint(0, 10, (2, 3))),
]


@pytest.mark.parametrize(
    ("bayesian", "fixed", "inputs"), FIXED_PAIRS, ids=lambda v: type(v).__name__
)
def test_fixed_twin_shares_the_maths(
    bayesian: BayesianModule, fixed: BayesianModule, inputs: torch.Tensor
) -> None:
    bayesian.freeze()
    fixed_names = {name for name, _ in fixed.named_parameters()}
    sampled_names = {
        name for name, _ in bayesian.named_buffers() if "_dist" not in name
    }
    assert fixed_names == sampled_names
    with torch.no_grad():
        for name, parameter in fixed.named_parameters():
            parameter.copy_(bayesian.get_buffer(name))
    torch.testing.assert_close(_output(fixed, inputs), _output(bayesian, inputs))


@pytest.mark.parametrize(
    "layer",
    [
        FixedLinear(4, 3),
        FixedConv2d(2, 3, 3),
        FixedEmbedding(5, 2),
        FixedLSTM(5, 2, 3, 1),
    ],
    ids=lambda v: type(v).__name__,
)
def test_fixed_layers_are_deterministic_and_free_of_kl(layer: BayesianModule) -> None:
    assert isinstance(layer, BayesianModule) and not layer.is_bayesian
    layer.freeze()
    layer.unfreeze()
    kl, count = layer.kl_cost()
    assert count == 0 and kl.item() == 0.0 and kl.shape == ()
    assert all(isinstance(p, torch.nn.Parameter) for p in layer.parameters())


def test_fixed_init_matches_torch_nn_bounds() -> None:
    linear = FixedLinear(50, 40)
    bound = 1.0 / math.sqrt(50)
    assert linear.weights.abs().max() <= bound and linear.bias.abs().max() <= bound
    # Kaiming-uniform(a=sqrt(5)) is U(-b, b): std b/sqrt(3), within 10% on 2000.
    assert linear.weights.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    conv = FixedConv2d(4, 8, 3, groups=2)
    conv_bound = 1.0 / math.sqrt(2 * 9)
    assert conv.weights.abs().max() <= conv_bound
    assert conv.bias.abs().max() <= conv_bound
    assert FixedLinear(3, 2, use_bias=False).bias is None


# -- persistence ----------------------------------------------------------------


def test_state_dict_round_trip_restores_samples() -> None:
    layer = Conv2d(2, 3, 3)
    _widen(layer)
    x = torch.randn(1, 2, 5, 5)
    layer(x)
    state = layer.state_dict()
    assert {
        "weights",
        "bias",
        "weights_distribution.mu",
        "bias_distribution.rho",
    } <= set(state)
    clone = Conv2d(2, 3, 3)
    clone.load_state_dict(state)
    layer.freeze()
    clone.freeze()
    torch.testing.assert_close(clone(x), layer(x))


def test_deepcopy_and_save_after_a_training_forward() -> None:
    layer = LSTM(10, 3, 4, 2)
    ids = torch.randint(0, 10, (2, 3))
    layer(ids)
    assert layer.wf.grad_fn is not None  # sample is part of the graph
    clone = copy.deepcopy(layer)
    torch.testing.assert_close(clone.wf, layer.wf.detach())
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded.bv, layer.bv.detach())
    assert layer.wf.grad_fn is not None  # the original keeps its graph


# -- compatibility with code written against the reference ------------------------


def test_code_written_against_the_reference_runs_unchanged() -> None:
    dist = GaussianDistribution((3, 2))
    assert dist.sample().shape == (3, 2)
    assert dist.log_prob().shape == ()
    assert dist.num_params() == 6

    linear = Linear(4, 3)
    assert linear.weights.shape == (3, 4) and linear.bias.shape == (3,)
    assert linear.is_bayesian and not linear.frozen
    linear.freeze()
    linear.unfreeze()
    kl, num_params = linear.kl_cost()
    assert num_params == 15 and kl.shape == ()

    conv = Conv2d(1, 2, 3)
    assert conv(torch.randn(4, 1, 8, 8)).shape == (4, 2, 6, 6)
    assert Conv1d(1, 2, 3)(torch.randn(4, 1, 8)).shape == (4, 2, 6)

    embedding = Embedding(10, 4, padding_idx=0)
    out = embedding(torch.tensor([[0, 5]]))
    assert out.shape == (1, 2, 4) and torch.all(out[0, 0] == 0)

    lstm = LSTM(20, 8, 16, 3)
    y, (h, c) = lstm(torch.randint(0, 20, (2, 7, 1)))
    assert y.shape == (2, 3) and h.shape == c.shape == (2, 16)
    lstm.freeze()
    assert lstm.kl_cost()[1] == 4 * (16 * 24 + 16) + 3 * 16 + 3


# -- torch.compile --------------------------------------------------------------


class _SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = Conv1d(2, 4, 3, padding=1)
        self.conv2 = Conv2d(1, 2, 3, padding=(1, 1))
        self.fixed = FixedLinear(2 * 4 * 4, 8)
        self.head = Linear(8 + 4 * 6, 3)

    def forward(self, signal: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(signal)).flatten(1)
        b = torch.relu(self.fixed(torch.relu(self.conv2(image)).flatten(1)))
        return self.head(torch.cat([a, b], dim=1))


# Inductor's own imports use a deprecated torch.jit API.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")
def test_frozen_model_under_torch_compile() -> None:
    model = _SmallNet()
    for module in model.modules():
        if isinstance(module, BayesianModule):
            module.freeze()
    signal, image = torch.randn(2, 2, 6), torch.randn(2, 1, 4, 4)
    eager = model(signal, image)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(signal, image), eager, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled(signal, image), eager, atol=1e-5, rtol=0)
