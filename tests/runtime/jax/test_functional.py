"""Functional ops against torch.nn.functional on the same inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnc.runtime.jax import functional as JF

torch = pytest.importorskip("torch")
F = torch.nn.functional

IntOrPair = int | tuple[int, int]
RNG = np.random.default_rng(0)
X1 = RNG.standard_normal((2, 3, 11)).astype(np.float32)
X2 = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)


def _close(ours: jax.Array, theirs: torch.Tensor, atol: float = 1e-6) -> None:
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-6, atol=atol)


POOL_CASES = [
    # kernel_size, stride, padding
    (2, None, 0),
    (3, 2, 1),
    (3, 1, 1),
    ((3, 2), (2, 1), (1, 0)),
]


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_matches_torch(
    kind: str, kernel: IntOrPair, stride: IntOrPair | None, padding: IntOrPair
) -> None:
    ours = getattr(JF, f"{kind}_pool2d")
    theirs = getattr(F, f"{kind}_pool2d")
    kwargs = {} if stride is None else {"stride": stride}
    _close(
        ours(jnp.asarray(X2), kernel, padding=padding, **kwargs),
        theirs(torch.from_numpy(X2), kernel, padding=padding, **kwargs),
    )


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOL_CASES[:3])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d_matches_torch(
    kind: str, kernel: IntOrPair, stride: IntOrPair | None, padding: IntOrPair
) -> None:
    ours = getattr(JF, f"{kind}_pool1d")
    theirs = getattr(F, f"{kind}_pool1d")
    _close(
        ours(jnp.asarray(X1), kernel, stride, padding),
        theirs(torch.from_numpy(X1), kernel, stride, padding),
    )


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d", "max_pool1d"])
def test_pool_gradients_match_torch(name: str) -> None:
    x = X2 if name.endswith("2d") else X1
    ours, theirs = getattr(JF, name), getattr(F, name)
    tx = torch.from_numpy(x).requires_grad_(True)
    out = theirs(tx, 3, 2, 1)
    weights = np.linspace(-1.0, 1.0, out.numel(), dtype=np.float32).reshape(out.shape)
    (out * torch.from_numpy(weights)).sum().backward()
    grad = jax.grad(lambda v: jnp.sum(ours(v, 3, 2, 1) * weights))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(grad), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_without_batch_axis_and_with_extra_leading_axes(kind: str) -> None:
    # Pooling runs channels-last internally: the channel axis (the one before
    # the spatial axes) moves to the end and back, whatever the leading axes.
    ours, theirs = getattr(JF, f"{kind}_pool2d"), getattr(F, f"{kind}_pool2d")
    _close(ours(jnp.asarray(X2[0]), 3, 2, 1), theirs(torch.from_numpy(X2[0]), 3, 2, 1))
    stacked = np.stack([X2, 2.0 * X2])  # [2, N, C, H, W]
    expected = torch.stack([theirs(torch.from_numpy(x), 2) for x in stacked])
    _close(ours(jnp.asarray(stacked), 2), expected)
    ours1, theirs1 = getattr(JF, f"{kind}_pool1d"), getattr(F, f"{kind}_pool1d")
    _close(
        ours1(jnp.asarray(X1[0]), 3, 2, 1), theirs1(torch.from_numpy(X1[0]), 3, 2, 1)
    )


def test_max_pool_pads_with_minus_infinity_and_avg_counts_padding() -> None:
    x = -np.ones((1, 1, 2, 2), np.float32)
    # Padding never wins a max of negative values; it counts in the average.
    np.testing.assert_array_equal(
        JF.max_pool2d(jnp.asarray(x), 2, 1, 1), -np.ones((1, 1, 3, 3))
    )
    corner = float(JF.avg_pool2d(jnp.asarray(x), 2, 1, 1)[0, 0, 0, 0])
    assert corner == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="half of kernel_size"):
        JF.max_pool2d(jnp.asarray(x), 2, padding=2)


def test_activations_match_torch() -> None:
    x = np.linspace(-30.0, 30.0, 601, dtype=np.float32)
    tx, jx = torch.from_numpy(x), jnp.asarray(x)
    _close(JF.gelu(jx), F.gelu(tx))
    _close(JF.gelu(jx, approximate="tanh"), F.gelu(tx, approximate="tanh"))
    # jax.nn.gelu's default is the tanh approximation: visibly different.
    assert np.max(np.abs(np.asarray(jax.nn.gelu(jx)) - F.gelu(tx).numpy())) > 1e-4
    _close(JF.softplus(jx), F.softplus(tx), atol=1e-6)
    _close(JF.softplus(jx, beta=2.0, threshold=5.0), F.softplus(tx, 2.0, 5.0))
    _close(JF.elu(jx, 0.5), F.elu(tx, 0.5))
    _close(JF.leaky_relu(jx), F.leaky_relu(tx))
    _close(JF.silu(jx), F.silu(tx), atol=1e-5)
    _close(JF.relu(jx), F.relu(tx))
    grad = jax.grad(lambda v: jnp.sum(JF.softplus(v)))(jnp.array([-200.0, 0.0, 200.0]))
    np.testing.assert_allclose(grad, [0.0, 0.5, 1.0])  # finite on both branches


def test_shape_ops_and_normalisation_match_torch() -> None:
    tx, jx = torch.from_numpy(X2), jnp.asarray(X2)
    _close(JF.flatten(jx), torch.flatten(tx, 1))
    _close(JF.flatten(jx, 0, 1), torch.flatten(tx, 0, 1))
    _close(JF.flatten(jx, -2), torch.flatten(tx, -2))
    _close(JF.reshape_batch(jx, (-1, 8)), tx.reshape(2, -1, 8))
    _close(JF.softmax(jx, 1), F.softmax(tx, 1))
    _close(JF.log_softmax(jx), F.log_softmax(tx, -1), atol=1e-5)
    _close(JF.cat([jx, jx], dim=1), torch.cat([tx, tx], dim=1))
    _close(
        JF.mean(jx, dim=(2, 3), keepdim=True), torch.mean(tx, dim=(2, 3), keepdim=True)
    )
    _close(JF.sum(jx, dim=1), torch.sum(tx, dim=1), atol=1e-5)
    _close(JF.layer_norm(jx), F.layer_norm(tx, tx.shape[-1:]), atol=1e-5)
    _close(JF.batch_norm(jx), F.batch_norm(tx, None, None, training=True), atol=1e-5)


def test_dropout() -> None:
    x = jnp.asarray(np.ones((100, 100), np.float32))
    assert JF.dropout(x, 0.0) is x
    assert JF.dropout(x, 0.5, deterministic=True) is x
    dropped = np.asarray(JF.dropout(x, 0.25, rngs=nnx.Rngs(dropout=0)))
    assert set(np.unique(dropped)) <= {0.0, np.float32(1 / 0.75)}
    # 10,000 draws of keep probability 0.75: standard error 0.004.
    assert np.mean(dropped != 0) == pytest.approx(0.75, abs=0.02)
    assert np.mean(dropped) == pytest.approx(1.0, abs=0.03)  # unbiased, as torch
    again = np.asarray(JF.dropout(x, 0.25, rngs=nnx.Rngs(dropout=0)))
    np.testing.assert_array_equal(again, dropped)
    with pytest.raises(ValueError, match="rngs"):
        JF.dropout(x, 0.5)
