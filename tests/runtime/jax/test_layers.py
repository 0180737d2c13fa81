"""Bayesian layers and their fixed twins: maths, sampling, freezing and KL cost."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnc.runtime.jax import (
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
    Sample,
    bayesian_modules,
    total_kl,
)


# -- helpers ------------------------------------------------------------------
def _widen(layer: nnx.Module, seed: int = 0) -> None:
    """Give every posterior a visible spread (sigma ~ 0.3) and spread-out means."""
    rng = np.random.default_rng(seed)  # numpy: no kernels to compile per shape
    for _, module in nnx.iter_modules(layer):
        if isinstance(module, GaussianDistribution):
            mu = 0.5 * rng.standard_normal(module.mu.shape)
            module.mu.set_value(jnp.asarray(mu, jnp.float32))
            module.rho.set_value(
                jnp.asarray(np.full(module.rho.shape, -1.0, np.float32))
            )


def _normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 test data (numpy, so nothing is compiled)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _integers(seed: int, shape: tuple[int, ...], high: int) -> np.ndarray:
    """Token ids in ``[0, high)`` (numpy)."""
    return np.random.default_rng(seed).integers(0, high, shape)


def _reference_lstm(
    ids: np.ndarray, table: np.ndarray, layer: LSTM | FixedLSTM
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's loop in numpy: one matmul per gate per step."""

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    w = {name: np.asarray(getattr(layer, name)[...]) for name in _LSTM_TENSORS}
    x = table[ids]
    h = np.zeros((ids.shape[0], layer.hidden_size), np.float32)
    c = np.zeros_like(h)
    for t in range(ids.shape[1]):
        z = np.concatenate([x[:, t], h], axis=1)
        f = sigmoid(z @ w["wf"].T + w["bf"])
        i = sigmoid(z @ w["wi"].T + w["bi"])
        g = np.tanh(z @ w["wc"].T + w["bc"])
        o = sigmoid(z @ w["wo"].T + w["bo"])
        c = c * f + g * i
        h = o * np.tanh(c)
    return h @ w["wv"].T + w["bv"], h, c


_LSTM_TENSORS = ("wf", "bf", "wi", "bi", "wc", "bc", "wo", "bo", "wv", "bv")


def _layer(name: str) -> tuple[BayesianModule, tuple[jax.Array, ...]]:
    """A small instance of the Bayesian layer ``name`` with a matching input.

    The tests reuse these few shapes: each new shape costs JAX a compilation.
    """
    if name == "linear":
        return Linear(4, 3, rngs=nnx.Rngs(0)), (_normal(9, (2, 4)),)
    if name == "conv1d":
        return Conv1d(2, 3, 3, rngs=nnx.Rngs(1)), (_normal(9, (2, 2, 7)),)
    if name == "conv2d":
        inputs = _normal(9, (2, 2, 6, 6))
        return Conv2d(2, 3, 3, rngs=nnx.Rngs(2)), (inputs,)
    if name == "embedding":
        return Embedding(10, 4, rngs=nnx.Rngs(3)), (np.array([[1, 2], [3, 9]]),)
    ids = _integers(9, (2, 4, 1), 10)
    return LSTM(10, 4, 5, 3, rngs=nnx.Rngs(4)), (ids,)


def _output(layer: nnx.Module, *inputs: jax.Array) -> jax.Array:
    out = layer(*inputs)
    return out[0] if isinstance(out, tuple) else out


LAYER_NAMES = ["linear", "conv1d", "conv2d", "embedding", "lstm"]


# -- reference API -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (
            Linear,
            "input_size, output_size, weights_distribution=None, "
            "bias_distribution=None, use_bias=True, precision=None, "
            "dot_general=lax.dot_general, rngs=Rngs(0)",
        ),
        (
            Conv1d,
            "input_channels, output_channels, kernel_size, stride=1, padding=0, "
            "dilation=1, groups=1, weights_distribution=None, "
            "bias_distribution=None, use_bias=True, rngs=Rngs(0)",
        ),
        (
            Conv2d,
            "input_channels, output_channels, kernel_size, stride=(1, 1), "
            "padding=(0, 0), dilation=(1, 1), groups=1, weights_distribution=None, "
            "bias_distribution=None, use_bias=True, rngs=Rngs(0)",
        ),
        (
            Embedding,
            "num_embeddings, embeddings_dim, padding_idx=None, max_norm=None, "
            "norm_type=2.0, scale_grad_by_freq=False, weights_distribution=None, "
            "rngs=Rngs(0)",
        ),
        (
            LSTM,
            "num_embeddings, embeddings_dim, hidden_size, output_size, "
            "padding_idx=None, max_norm=None, norm_type=2.0, "
            "scale_grad_by_freq=False, rngs=Rngs(0)",
        ),
        (
            GaussianDistribution,
            "shape, mu_prior=0.0, std_prior=0.1, mu_init=0.0, rho_init=-7.0, "
            "rngs=Rngs(0)",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_signatures_follow_the_reference(cls: type, expected: str) -> None:
    """Positional parameters: names, order and defaults of the reference (002/000)."""
    parts = []
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if (
            parameter.name == "self"
            or parameter.kind is not parameter.POSITIONAL_OR_KEYWORD
        ):
            continue
        if parameter.default is inspect.Parameter.empty:
            parts.append(parameter.name)
        elif parameter.name == "rngs":
            default = parameter.default
            assert isinstance(default, nnx.Rngs)
            parts.append("rngs=Rngs(0)")
        elif parameter.name == "dot_general":
            assert parameter.default is jax.lax.dot_general
            parts.append("dot_general=lax.dot_general")
        else:
            parts.append(f"{parameter.name}={parameter.default!r}")
    assert ", ".join(parts) == expected
    keyword_only = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    ]
    if cls is not GaussianDistribution:
        # Beyond the reference: the layers with random weights of a linear
        # map take a gradient estimator (`estimator=` in a spec).
        extra = ["estimator"] if cls in (Linear, Conv1d, Conv2d) else []
        assert keyword_only == ["mu_prior", "std_prior", "mu_init", "rho_init", *extra]


def test_code_written_against_the_reference_runs_unchanged() -> None:
    dist = GaussianDistribution((3, 2))
    assert dist.sample(nnx.Rngs(1)).shape == (3, 2)
    assert dist.log_prob().shape == ()
    assert dist.num_params == 6
    assert dist().shape == (3, 2)

    linear = Linear(4, 3, rngs=nnx.Rngs(0))
    assert linear.weights.shape == (3, 4) and linear.bias.shape == (3,)
    assert linear.is_bayesian and not linear.frozen
    x = np.ones((2, 4))
    # The reference's own forward maths runs on the stored sample.
    np.testing.assert_allclose(linear(x), x @ linear.weights.T + linear.bias, rtol=1e-6)
    linear.freeze()
    linear.unfreeze()
    kl, num_params = linear.kl_cost()
    assert num_params == 15 and kl.shape == ()

    conv = Conv2d(2, 3, 3, rngs=nnx.Rngs(0))
    assert conv(np.ones((4, 2, 8, 8))).shape == (4, 3, 6, 6)
    assert Conv1d(2, 3, 3)(np.ones((4, 2, 8))).shape == (4, 3, 6)

    embedding = Embedding(10, 4, padding_idx=0)
    out = embedding(np.array([[0, 5]]))
    assert out.shape == (1, 2, 4) and np.all(np.asarray(out[0, 0]) == 0)

    lstm = LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
    y, (h, c) = lstm(np.ones((2, 7, 1), jnp.int32))
    assert y.shape == (2, 3) and h.shape == c.shape == (2, 5)
    lstm.freeze()
    assert lstm.kl_cost()[1] == 4 * (5 * 9 + 5) + 3 * 5 + 3


def test_default_rngs_are_shared_so_default_layers_differ() -> None:
    a, b = Linear(4, 3), Linear(4, 3)
    assert a.rngs is b.rngs
    assert not np.array_equal(
        a.weights_distribution.mu[...], b.weights_distribution.mu[...]
    )


# -- Linear -------------------------------------------------------------------


def test_linear_shapes_and_maths() -> None:
    layer = Linear(4, 3, rngs=nnx.Rngs(0))
    _widen(layer)
    x = _normal(0, (5, 2, 4))
    y = layer(x)
    assert y.shape == (5, 2, 3)
    # The Sample variables hold exactly the sample the call used.
    w, b = np.asarray(layer.weights[...]), np.asarray(layer.bias[...])
    np.testing.assert_allclose(y, np.asarray(x) @ w.T + b, rtol=1e-5, atol=1e-6)


def test_linear_without_bias_and_precision() -> None:
    layer = Linear(4, 3, use_bias=False, precision="highest", rngs=nnx.Rngs(0))
    assert layer.bias is None and layer.bias_distribution is None
    x = np.ones((2, 4))
    np.testing.assert_allclose(layer(x), x @ layer.weights[...].T, rtol=1e-6)
    assert layer.kl_cost()[1] == 12
    layer.freeze()
    np.testing.assert_allclose(layer(x), x @ layer.weights[...].T, rtol=1e-6)


def test_default_distribution_keywords() -> None:
    layer = Linear(
        30,
        20,
        mu_prior=0.5,
        std_prior=1.0,
        mu_init=1.0,
        rho_init=-3.0,
        rngs=nnx.Rngs(0),
    )
    dist = layer.weights_distribution
    assert isinstance(dist, GaussianDistribution)
    assert float(dist.mu_prior[0]) == 0.5 and float(dist.std_prior[0]) == 1.0
    # 600 draws of N(1, 0.1): standard error 4e-3, tolerance 0.02.
    assert float(dist.mu[...].mean()) == pytest.approx(1.0, abs=0.02)
    assert float(dist.rho[...].mean()) == pytest.approx(-3.0, abs=0.02)
    assert float(layer.bias_distribution.std_prior[0]) == 1.0


def test_explicit_distributions_win_over_keywords() -> None:
    rngs = nnx.Rngs(0)
    weights = GaussianDistribution((3, 4), std_prior=2.0, rngs=rngs)
    bias = GaussianDistribution((3,), mu_prior=-1.0, rngs=rngs)
    layer = Linear(4, 3, weights, bias, std_prior=7.0, rngs=rngs)
    assert layer.weights_distribution is weights
    assert layer.bias_distribution is bias
    assert float(layer.weights_distribution.std_prior[0]) == 2.0


# -- convolutions ---------------------------------------------------------------

CONV_CASES = [
    # stride, padding, dilation, groups
    (1, 0, 1, 1),
    (2, 1, 1, 1),
    (1, 2, 2, 1),
    (2, 1, 2, 2),
]


def _direct_conv1d(
    x: np.ndarray | jax.Array,
    w: np.ndarray | jax.Array,
    b: np.ndarray | jax.Array,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
) -> np.ndarray:
    """Convolution as explicit sums in numpy (cross-correlation, torch layout)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding, padding)))
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    out_channels, in_per_group, k = w.shape
    length = (x.shape[2] - dilation * (k - 1) - 1) // stride + 1
    out_per_group = out_channels // groups
    y = np.zeros((x.shape[0], out_channels, length))
    for o in range(out_channels):
        g = o // out_per_group
        for pos in range(length):
            start = pos * stride
            window = x[
                :,
                g * in_per_group : (g + 1) * in_per_group,
                start : start + dilation * (k - 1) + 1 : dilation,
            ]
            y[:, o, pos] = np.einsum("nik,ik->n", window, w[o]) + b[o]
    return y


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), CONV_CASES)
def test_conv1d_matches_direct_computation(
    stride: int, padding: int, dilation: int, groups: int
) -> None:
    layer = Conv1d(4, 8, 3, stride, padding, dilation, groups, rngs=nnx.Rngs(0))
    _widen(layer)
    assert layer.weights.shape == (8, 4 // groups, 3)
    x = _normal(1, (2, 4, 11))
    y = layer(x)
    expected = _direct_conv1d(
        x, layer.weights[...], layer.bias[...], stride, padding, dilation, groups
    )
    length = (11 + 2 * padding - dilation * 2 - 1) // stride + 1
    assert y.shape == (2, 8, length)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_conv2d_matches_per_row_conv1d() -> None:
    # A (kh, kw) 2-D convolution is the sum over kernel rows of 1-D
    # convolutions of the input rows (stride 2, padding (1, 1), dilation 2,
    # groups 2).
    layer = Conv2d(4, 6, (2, 3), 2, (1, 1), 2, 2, rngs=nnx.Rngs(0))
    _widen(layer)
    assert layer.kernel_size == (2, 3) and layer.stride == (2, 2)
    assert layer.weights.shape == (6, 2, 2, 3)
    x = np.asarray(_normal(2, (2, 4, 7, 9)))
    y = np.asarray(layer(jnp.asarray(x)))
    w, b = np.asarray(layer.weights[...]), np.asarray(layer.bias[...])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    rows = (xp.shape[2] - 2 * 1 - 1) // 2 + 1
    expected = np.zeros(y.shape)
    for r in range(rows):
        for kh in range(2):
            expected[:, :, r] += _direct_conv1d(
                xp[:, :, 2 * r + 2 * kh], w[:, :, kh], np.zeros(6), 2, 1, 2, 2
            )
    expected += b[None, :, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_conv_defaults_and_validation() -> None:
    layer = Conv2d(2, 3, 3, rngs=nnx.Rngs(0))
    assert layer.stride == (1, 1) and layer.padding == (0, 0)
    assert layer.dilation == (1, 1) and layer.kernel_size == (3, 3)
    assert layer(np.ones((1, 2, 5, 5))).shape == (1, 3, 3, 3)
    assert Conv1d(2, 3, 3, use_bias=False, rngs=nnx.Rngs(0)).bias is None
    with pytest.raises(ValueError, match="groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        FixedConv1d(4, 3, 3, groups=2)


# -- Embedding ------------------------------------------------------------------


def test_embedding_lookup_and_padding_idx() -> None:
    layer = Embedding(10, 4, padding_idx=0, rngs=nnx.Rngs(0))
    _widen(layer)
    ids = np.array([[0, 3, 9], [0, 0, 1]])
    y = np.asarray(layer(ids))
    assert y.shape == (2, 3, 4)
    expected = np.asarray(layer.weights[...])[np.asarray(ids)]
    expected[np.asarray(ids) == 0] = 0.0
    np.testing.assert_array_equal(y, expected)
    assert np.count_nonzero(np.asarray(layer.weights[0])) == 4  # row not zeroed


def test_embedding_negative_padding_idx() -> None:
    layer = Embedding(10, 4, padding_idx=-1, rngs=nnx.Rngs(0))
    assert layer.padding_idx == 9
    assert np.all(np.asarray(layer(np.array([9]))) == 0)


def test_embedding_max_norm_rescales_like_reference() -> None:
    layer = Embedding(6, 3, max_norm=1.0, norm_type=2.0, rngs=nnx.Rngs(0))
    table = np.array(
        [[3, 4, 0], [0.3, 0.4, 0], [1, 0, 0], [0, 0, 0], [2, 2, 1], [0, 1, 0]],
        np.float32,
    )
    layer.weights.set_value(jnp.asarray(table))
    layer.freeze()
    y = np.asarray(layer(np.array([0, 1, 2, 4])))
    norms = np.array([5.0, 0.5, 1.0, 3.0])[:, None]
    expected = table[[0, 1, 2, 4]] * np.minimum(1.0 / (norms + 1e-8), 1.0)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.6, 0.8, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(y[1], table[1])  # under max_norm: unchanged
    np.testing.assert_array_equal(layer.weights[...], table)  # never renormalised


def test_embedding_max_norm_p1_and_gradients() -> None:
    layer = Embedding(
        5, 4, max_norm=0.5, norm_type=1.0, padding_idx=2, rngs=nnx.Rngs(0)
    )
    _widen(layer)
    ids = np.array([0, 1, 2, 4])
    weights = _normal(3, (4, 4))

    def loss(model: Embedding) -> jax.Array:
        return jnp.sum(model(ids) * weights)

    grads = nnx.grad(loss)(layer)
    y = np.asarray(layer(ids))  # a fresh sample; check the maths on it
    rows = np.asarray(layer.weights[...])[np.asarray(ids)]
    rows[2] = 0.0
    scale = np.minimum(0.5 / (np.abs(rows).sum(-1, keepdims=True) + 1e-8), 1.0)
    np.testing.assert_allclose(y, rows * scale, rtol=1e-5)
    mu_grad = np.asarray(grads["weights_distribution"]["mu"][...])
    assert np.all(np.isfinite(mu_grad))
    assert np.all(mu_grad[2] == 0) and np.all(mu_grad[3] == 0)
    assert np.any(mu_grad[0] != 0)


def test_embedding_scale_grad_by_freq() -> None:
    layer = FixedEmbedding(5, 2, scale_grad_by_freq=True, rngs=nnx.Rngs(0))
    ids = np.array([1, 1, 1, 3])
    grads = nnx.grad(lambda m: jnp.sum(m(ids)))(layer)
    # Row 1 occurs three times (gradient 3, divided by 3), row 3 once.
    np.testing.assert_allclose(grads["weights"][...][1], [1.0, 1.0])
    np.testing.assert_allclose(grads["weights"][...][3], [1.0, 1.0])
    plain = FixedEmbedding(5, 2, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(
        nnx.grad(lambda m: jnp.sum(m(ids)))(plain)["weights"][...][1], [3.0, 3.0]
    )


def test_fixed_embedding() -> None:
    layer = FixedEmbedding(50, 8, padding_idx=1, rngs=nnx.Rngs(0))
    table = np.asarray(layer.weights[...])
    assert np.all(table[1] == 0)
    # N(0, 1) initialisation: 392 values, std within 0.15.
    assert table[2:].std() == pytest.approx(1.0, abs=0.15)
    y = np.asarray(layer(np.array([1, 2, 3])))
    np.testing.assert_array_equal(y[1:], table[2:4])


# -- LSTM -----------------------------------------------------------------------


def test_lstm_matches_reference_loop() -> None:
    layer = LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
    _widen(layer)
    layer.freeze()
    ids = np.asarray(_integers(5, (2, 5, 1), 10))
    y, (h, c) = layer(jnp.asarray(ids))
    expected = _reference_lstm(
        ids[..., 0], np.asarray(layer.embedding.weights[...]), layer
    )
    assert y.shape == (2, 3) and h.shape == c.shape == (2, 5)
    for got, want in zip((y, h, c), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # [B, T] ids give the same result as [B, T, 1].
    np.testing.assert_array_equal(layer(jnp.asarray(ids[..., 0]))[0], y)


def test_lstm_init_states_continue_a_sequence() -> None:
    layer = LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
    _widen(layer)
    layer.freeze()
    ids = _integers(6, (2, 6), 10)
    y_full, (h_full, c_full) = layer(ids)
    _, state = layer(ids[:, :3])
    y_split, (h_split, c_split) = layer(ids[:, 3:], state)
    np.testing.assert_allclose(y_split, y_full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_split, h_full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_split, c_full, rtol=1e-5, atol=1e-6)


def test_lstm_padding_and_shapes_of_tensors() -> None:
    layer = LSTM(10, 4, 5, 3, padding_idx=0, max_norm=2.0, rngs=nnx.Rngs(0))
    assert layer.embedding.padding_idx == 0 and layer.embedding.max_norm == 2.0
    for gate in "fico":
        assert getattr(layer, f"w{gate}").shape == (5, 9)
        assert getattr(layer, f"b{gate}").shape == (5,)
        assert isinstance(getattr(layer, f"w{gate}_distribution"), GaussianDistribution)
        assert isinstance(getattr(layer, f"w{gate}"), Sample)
    assert layer.wv.shape == (3, 5) and layer.bv.shape == (3,)


def test_fixed_lstm_matches_reference_loop() -> None:
    layer = FixedLSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
    bound = 1.0 / math.sqrt(5)
    assert np.abs(layer.wf[...]).max() <= bound and np.abs(layer.bi[...]).max() <= bound
    ids = np.asarray(_integers(7, (3, 4, 1), 10))
    y, (h, c) = layer(jnp.asarray(ids))
    expected = _reference_lstm(
        ids[..., 0], np.asarray(layer.embedding.weights[...]), layer
    )
    for got, want in zip((y, h, c), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# -- sampling, freezing and KL cost, for every layer --------------------------


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_each_call_samples_new_weights_in_place(name: str) -> None:
    layer, inputs = _layer(name)
    _widen(layer)
    graphdef_before = nnx.graphdef(layer)
    variables_before = {
        id(v) for _, v in nnx.iter_graph(layer) if isinstance(v, Sample)
    }
    first = _output(layer, *inputs)
    assert not np.array_equal(first, _output(layer, *inputs))
    # Same graph and the same Sample objects: values are updated in place.
    assert nnx.graphdef(layer) == graphdef_before
    assert {id(v) for _, v in nnx.iter_graph(layer) if isinstance(v, Sample)} == (
        variables_before
    )


def test_same_seed_same_samples() -> None:
    a = Linear(4, 3, rngs=nnx.Rngs(0, sample=1))
    b = Linear(4, 3, rngs=nnx.Rngs(0, sample=1))
    c = Linear(4, 3, rngs=nnx.Rngs(0, sample=2))
    _widen(a), _widen(b), _widen(c)
    x = np.ones((1, 4))
    assert np.array_equal(a(x), b(x))
    assert not np.array_equal(b(x), c(x))


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_gradients_reach_mu_and_rho_only(name: str) -> None:
    layer, inputs = _layer(name)
    grads = nnx.grad(lambda m: jnp.sum(jnp.square(_output(m, *inputs))))(layer)
    leaves = nnx.to_flat_state(grads)
    assert leaves, "no gradients"
    for path, variable in leaves:
        assert path[-1] in ("mu", "rho"), path
        assert np.any(np.asarray(variable[...]) != 0), path


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_freeze_fixes_weights_and_stops_gradients(name: str) -> None:
    layer, inputs = _layer(name)
    _widen(layer)
    layer.freeze()
    assert layer.frozen
    first = _output(layer, *inputs)
    np.testing.assert_array_equal(_output(layer, *inputs), first)
    grads = nnx.grad(lambda m: jnp.sum(_output(m, *inputs)))(layer)
    assert all(np.all(np.asarray(v[...]) == 0) for _, v in nnx.to_flat_state(grads))
    # Even a gradient taken with respect to the samples themselves is stopped.
    sample_grads = nnx.grad(
        lambda m: jnp.sum(_output(m, *inputs)), argnums=nnx.DiffState(0, Sample)
    )(layer)
    assert all(
        np.all(np.asarray(v[...]) == 0) for _, v in nnx.to_flat_state(sample_grads)
    )
    layer.unfreeze()
    assert not layer.frozen
    assert not np.array_equal(_output(layer, *inputs), first)


def test_freeze_samples_missing_weights_and_frozen_none_raises() -> None:
    layer = Linear(4, 3, rngs=nnx.Rngs(0))
    layer.weights = None
    layer.freeze()
    assert layer.weights is not None and layer.weights.shape == (3, 4)
    layer.bias = None
    with pytest.raises(ValueError, match="frozen with undefined weights and/or bias"):
        layer(np.ones((1, 4)))
    layer.unfreeze()
    assert layer(np.ones((1, 4))).shape == (1, 3)
    assert isinstance(layer.bias, Sample)


def test_freeze_and_unfreeze_reach_lstm_embedding() -> None:
    layer = LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
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
def test_kl_cost_closed_form_and_sample_estimates(name: str, num_params: int) -> None:
    layer, inputs = _layer(name)
    _output(layer, *inputs)
    tensors = list(layer.random_tensors())
    # Default: the closed form of every distribution, whatever the samples.
    kl, count = layer.kl_cost()
    closed = sum(dist.kl_divergence() for _, dist, _ in tensors)
    assert count == num_params
    assert kl.shape == ()
    assert float(kl) == pytest.approx(float(closed), rel=1e-6)
    # "sample": the reference's log q - log p of the current samples.
    sample_kl, sample_count = layer.kl_cost(estimator="sample")
    expected = sum(dist.log_prob(value) for _, dist, value in tensors)
    assert sample_count == num_params
    assert float(sample_kl) == pytest.approx(float(expected), rel=1e-6)
    assert float(sample_kl) != pytest.approx(float(kl), rel=1e-3)
    for estimator in ("closed_form", "sample"):
        grads = nnx.grad(lambda m, e=estimator: m.kl_cost(e)[0])(layer)
        paths = {path for path, _ in nnx.to_flat_state(grads)}
        for tensor_name, _, _ in tensors:
            assert (f"{tensor_name}_distribution", "mu") in paths
            assert (f"{tensor_name}_distribution", "rho") in paths
    with pytest.raises(ValueError, match="estimator"):
        layer.kl_cost("exact")  # type: ignore[arg-type]


def test_grouped_conv_and_lstm_embedding_counts() -> None:
    assert Conv2d(2, 4, 3, groups=2, rngs=nnx.Rngs(0)).kl_cost()[1] == 4 * 1 * 9 + 4
    assert LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0)).embedding.kl_cost()[1] == 40


# -- fixed twins ----------------------------------------------------------------


def _fixed_pairs() -> list[tuple[BayesianModule, BayesianModule, jax.Array]]:
    r = nnx.Rngs
    return [
        (Linear(4, 3, rngs=r(0)), FixedLinear(4, 3, rngs=r(1)), np.ones((2, 4))),
        (
            Conv1d(2, 3, 3, 2, 1, rngs=r(0)),
            FixedConv1d(2, 3, 3, 2, 1, rngs=r(1)),
            np.linspace(-1, 1, 28).reshape(2, 2, 7),
        ),
        (
            Conv2d(2, 3, 3, 1, 1, rngs=r(0)),
            FixedConv2d(2, 3, 3, 1, 1, rngs=r(1)),
            np.linspace(-1, 1, 100).reshape(2, 2, 5, 5),
        ),
        (
            Embedding(10, 4, 0, rngs=r(0)),
            FixedEmbedding(10, 4, 0, rngs=r(1)),
            np.array([[0, 4, 9]]),
        ),
        (
            LSTM(10, 4, 5, 3, rngs=r(0)),
            FixedLSTM(10, 4, 5, 3, rngs=r(1)),
            np.array([[1, 2, 3], [4, 5, 6]]),
        ),
    ]


@pytest.mark.parametrize("index", range(5))
def test_fixed_twin_shares_the_maths(index: int) -> None:
    bayesian, fixed, inputs = _fixed_pairs()[index]
    _widen(bayesian)
    bayesian.freeze()
    fixed_params = dict(nnx.to_flat_state(nnx.state(fixed, nnx.Param)))
    samples = dict(nnx.to_flat_state(nnx.state(bayesian, Sample)))
    assert fixed_params.keys() == samples.keys()
    for path, variable in fixed_params.items():
        variable.set_value(samples[path][...])
    nnx.update(fixed, nnx.from_flat_state(fixed_params))
    np.testing.assert_array_equal(_output(fixed, inputs), _output(bayesian, inputs))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedLinear(4, 3, rngs=nnx.Rngs(0)),
        lambda: FixedConv2d(2, 3, 3, rngs=nnx.Rngs(0)),
        lambda: FixedEmbedding(10, 4, rngs=nnx.Rngs(0)),
        lambda: FixedLSTM(10, 4, 5, 3, rngs=nnx.Rngs(0)),
    ],
)
def test_fixed_layers_are_deterministic_and_free_of_kl(
    make: Callable[[], BayesianModule],
) -> None:
    layer = make()
    assert isinstance(layer, BayesianModule) and not layer.is_bayesian
    layer.freeze()
    layer.unfreeze()
    kl, count = layer.kl_cost()
    assert count == 0 and float(kl) == 0.0 and kl.shape == ()
    assert not nnx.state(layer, Sample)  # no samples: every tensor is a Param


def test_fixed_init_matches_torch_nn_bounds() -> None:
    linear = FixedLinear(50, 40, rngs=nnx.Rngs(0))
    bound = 1.0 / math.sqrt(50)
    weights = np.asarray(linear.weights[...])
    assert np.abs(weights).max() <= bound and np.abs(linear.bias[...]).max() <= bound
    # Kaiming-uniform(a=sqrt(5)) is U(-b, b): std b/sqrt(3), within 10% on 2000.
    assert weights.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    conv = FixedConv2d(4, 8, 3, groups=2, rngs=nnx.Rngs(0))
    conv_bound = 1.0 / math.sqrt(2 * 9)
    assert np.abs(conv.weights[...]).max() <= conv_bound
    assert np.abs(conv.bias[...]).max() <= conv_bound
    assert FixedLinear(3, 2, use_bias=False, rngs=nnx.Rngs(0)).bias is None


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_closed_form_kl_of_layers_is_finite_for_extreme_rho(name: str) -> None:
    layer, inputs = _layer(name)
    rng = np.random.default_rng(0)
    reference = 0.0
    for module in bayesian_modules(layer):
        for _, dist, _ in module.random_tensors():
            rho = rng.uniform(-50.0, 50.0, dist.rho.shape)
            rho.flat[:2] = (-50.0, 50.0)
            dist.rho.set_value(jnp.asarray(rho, jnp.float32))
            rho = np.asarray(dist.rho[...], np.float64)
            mu = np.asarray(dist.mu[...], np.float64)
            sigma = np.where(rho > 20, rho, np.log1p(np.exp(np.minimum(rho, 20))))
            reference += float(
                np.sum(np.log(0.1 / sigma) + (sigma**2 + mu**2) / 0.02 - 0.5)
            )

    def loss(layer: BayesianModule) -> jax.Array:
        return jnp.sum(_output(layer, *inputs)) + total_kl(layer)[0]

    grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.Param))(layer)
    kl = total_kl(layer)[0]
    assert float(kl) == pytest.approx(reference, rel=1e-5)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.isfinite(g).all()) for g in leaves)
