"""torch <-> Flax NNX transfer, and per-layer parity of the two runtimes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import bnnc.runtime.jax as bj  # noqa: E402
import bnnc.runtime.torch as bt  # noqa: E402
from bnnc.runtime.transfer import (  # noqa: E402
    frozen_flags,
    nnx_to_torch,
    state_names,
    torch_to_nnx,
)


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    """Seed torch; compile JAX kernels with few optimisations (many tiny shapes)."""
    torch.manual_seed(0)
    flag = "jax_disable_most_optimizations"
    previous = bool(jax.config.values.get(flag, False))
    jax.config.update(flag, True)
    yield
    jax.config.update(flag, previous)


def _widen(module: torch.nn.Module) -> None:
    """Give every torch posterior a visible spread so samples matter."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, bt.GaussianDistribution):
                sub.mu.normal_(0.0, 0.5)
                sub.rho.fill_(-1.0)


Pair = tuple[Callable[[], Any], Callable[[], Any], Callable[[], np.ndarray]]

RNG = np.random.default_rng(0)
IDS = RNG.integers(0, 10, (2, 5, 1))

# (torch factory, JAX factory, input factory): the same arguments on both sides.
PAIRS: dict[str, Pair] = {
    "Linear": (
        lambda: bt.Linear(4, 3),
        lambda: bj.Linear(4, 3),
        lambda: RNG.standard_normal((2, 4)).astype(np.float32),
    ),
    "Linear-no-bias": (
        lambda: bt.Linear(4, 3, use_bias=False),
        lambda: bj.Linear(4, 3, use_bias=False),
        lambda: RNG.standard_normal((2, 4)).astype(np.float32),
    ),
    "Conv1d": (
        lambda: bt.Conv1d(4, 6, 3, 2, 2, 2, 2),
        lambda: bj.Conv1d(4, 6, 3, 2, 2, 2, 2),
        lambda: RNG.standard_normal((2, 4, 11)).astype(np.float32),
    ),
    "Conv2d": (
        lambda: bt.Conv2d(4, 6, (3, 2), (2, 1), (1, 2), (2, 1), 2),
        lambda: bj.Conv2d(4, 6, (3, 2), (2, 1), (1, 2), (2, 1), 2),
        lambda: RNG.standard_normal((2, 4, 9, 8)).astype(np.float32),
    ),
    "Conv2d-depthwise": (
        lambda: bt.Conv2d(4, 4, 3, 1, 1, groups=4),
        lambda: bj.Conv2d(4, 4, 3, 1, 1, groups=4),
        lambda: RNG.standard_normal((2, 4, 6, 6)).astype(np.float32),
    ),
    "Embedding": (
        lambda: bt.Embedding(10, 4, padding_idx=-1, max_norm=0.8),
        lambda: bj.Embedding(10, 4, padding_idx=-1, max_norm=0.8),
        lambda: np.array([[0, 9, 3], [1, 9, 2]]),
    ),
    "LSTM": (
        lambda: bt.LSTM(10, 4, 5, 3, padding_idx=0, max_norm=1.0),
        lambda: bj.LSTM(10, 4, 5, 3, padding_idx=0, max_norm=1.0),
        lambda: IDS,
    ),
    "FixedLinear": (
        lambda: bt.FixedLinear(4, 3),
        lambda: bj.FixedLinear(4, 3),
        lambda: RNG.standard_normal((2, 4)).astype(np.float32),
    ),
    "FixedConv1d": (
        lambda: bt.FixedConv1d(4, 6, 3, 2, 2, 2, 2),
        lambda: bj.FixedConv1d(4, 6, 3, 2, 2, 2, 2),
        lambda: RNG.standard_normal((2, 4, 11)).astype(np.float32),
    ),
    "FixedConv2d": (
        lambda: bt.FixedConv2d(4, 6, (3, 2), (2, 1), (1, 2), (2, 1), 2),
        lambda: bj.FixedConv2d(4, 6, (3, 2), (2, 1), (1, 2), (2, 1), 2),
        lambda: RNG.standard_normal((2, 4, 9, 8)).astype(np.float32),
    ),
    "FixedEmbedding": (
        lambda: bt.FixedEmbedding(10, 4, padding_idx=0, max_norm=1.5),
        lambda: bj.FixedEmbedding(10, 4, padding_idx=0, max_norm=1.5),
        lambda: np.array([[0, 9, 3], [1, 9, 2]]),
    ),
    "FixedLSTM": (
        lambda: bt.FixedLSTM(10, 4, 5, 3),
        lambda: bj.FixedLSTM(10, 4, 5, 3),
        lambda: IDS,
    ),
}


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", list(PAIRS))
def test_layer_parity_after_transfer(name: str) -> None:
    make_torch, make_jax, make_input = PAIRS[name]
    torch_layer, jax_layer = make_torch(), make_jax()
    assert state_names(torch_layer) == state_names(jax_layer)
    _widen(torch_layer)
    x = make_input()
    torch_layer(torch.from_numpy(x))  # fresh samples, part of an autograd graph
    torch_layer.freeze()
    torch_to_nnx(torch_layer, jax_layer)
    assert jax_layer.frozen == torch_layer.frozen
    expected = _first(torch_layer(torch.from_numpy(x))).detach().numpy()
    got = np.asarray(_first(jax_layer(jnp.asarray(x))))
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-5
    torch_kl, torch_count = bt.total_kl(torch_layer)
    jax_kl, jax_count = bj.total_kl(jax_layer)
    assert jax_count == torch_count
    assert float(jax_kl) == pytest.approx(float(torch_kl.detach()), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("name", ["Conv2d", "LSTM", "FixedLSTM"])
def test_round_trip_is_bitwise_exact(name: str) -> None:
    make_torch, make_jax, make_input = PAIRS[name]
    source = make_torch()
    _widen(source)
    source(torch.from_numpy(make_input()))
    if name != "LSTM":
        source.freeze()
    jax_layer, target = make_jax(), make_torch()
    torch_to_nnx(source, jax_layer)
    nnx_to_torch(jax_layer, target)
    assert frozen_flags(target) == frozen_flags(source)
    source_state, target_state = source.state_dict(), target.state_dict()
    assert source_state.keys() == target_state.keys()
    for key, value in source_state.items():
        assert target_state[key].dtype == value.dtype
        assert torch.equal(target_state[key], value), key
    # The copied torch model computes what the original does.
    x = torch.from_numpy(make_input())
    source.freeze()
    target.freeze()
    torch.testing.assert_close(_first(target(x)), _first(source(x)), rtol=0, atol=0)


class _TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = bt.FixedConv2d(1, 4, 3, padding=1)
        self.conv2 = bt.Conv2d(4, 4, 3, padding=1)
        self.head = bt.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.nn.functional.gelu(self.conv2(x))
        return self.head(torch.flatten(x, 1))


class _JaxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = bj.FixedConv2d(1, 4, 3, padding=1, rngs=rngs)
        self.conv2 = bj.Conv2d(4, 4, 3, padding=1, rngs=rngs)
        self.head = bj.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = bj.functional.max_pool2d(bj.functional.relu(self.conv1(x)), 2)
        x = bj.functional.gelu(self.conv2(x))
        return self.head(bj.functional.flatten(x))


def test_nested_model_transfer_names_and_frozen_flags() -> None:
    torch_net, jax_net = _TorchNet(), _JaxNet(nnx.Rngs(0))
    names = state_names(jax_net)
    assert names == state_names(torch_net)
    assert names["conv2.weights_distribution.mu"] == (4, 4, 3, 3)
    assert "conv1.weights" in names and "head.bias_distribution.std_prior" in names
    _widen(torch_net)
    torch_net.conv2.freeze()  # mixed flags: conv2 frozen, head sampling
    torch_to_nnx(torch_net, jax_net)
    assert frozen_flags(jax_net) == frozen_flags(torch_net)
    assert jax_net.conv2.frozen and not jax_net.head.frozen
    jax_net.head.freeze()
    torch_net.head.freeze()
    nnx_to_torch(jax_net, torch_net)  # same samples: the head's are JAX's own
    x = RNG.standard_normal((2, 1, 8, 8)).astype(np.float32)
    expected = torch_net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(jax_net(jnp.asarray(x))), expected, atol=1e-5)


def test_mismatches_are_reported_by_name_and_nothing_is_copied() -> None:
    jax_layer = bj.Linear(4, 3, rngs=nnx.Rngs(0))
    before = np.asarray(jax_layer.weights_distribution.mu[...])
    with pytest.raises(ValueError, match=r"mis-shaped: bias: source \(2,\)") as info:
        torch_to_nnx(bt.Linear(4, 2), jax_layer)
    assert "weights_distribution.mu: source (2, 4), target (3, 4)" in str(info.value)
    np.testing.assert_array_equal(jax_layer.weights_distribution.mu[...], before)
    with pytest.raises(ValueError, match="missing in the source: bias, bias_dist"):
        torch_to_nnx(bt.Linear(4, 3, use_bias=False), jax_layer)
    with pytest.raises(ValueError, match=r"unexpected \(absent from the target\)"):
        nnx_to_torch(jax_layer, bt.Linear(4, 3, use_bias=False))
    with pytest.raises(ValueError, match=r"weights_distribution\.mu"):
        torch_to_nnx(bt.FixedLinear(4, 3), jax_layer)


def test_importing_transfer_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bnnc.runtime.transfer; "
        "assert 'torch' not in sys.modules and 'jax' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
