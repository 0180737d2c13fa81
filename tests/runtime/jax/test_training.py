"""Training under ``nnx.jit``: one trace, optimiser state for mu/rho only."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnc.runtime.jax import (
    ELBOLoss,
    FixedLinear,
    Linear,
    Prior,
    Sample,
    freeze_all,
    total_kl,
)


class _Net(nnx.Module):
    """FixedLinear(4, 3) -> relu -> Linear(3, 1) Bayesian head."""

    def __init__(self, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.body = FixedLinear(4, 3, rngs=rngs)
        self.head = Linear(3, 1, rho_init=-3.0, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(jax.nn.relu(self.body(x)))


def _mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(outputs - targets))


X = np.linspace(-1.0, 1.0, 32, dtype=np.float32).reshape(8, 4)
Y = X.sum(axis=1, keepdims=True)
ELBO = ELBOLoss(_mse, num_samples=2, kl_weight=1e-3)


def _sizes(state: nnx.State) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(state))


def test_only_mu_rho_and_fixed_weights_are_params() -> None:
    model = _Net()
    _, random_count = total_kl(model)
    assert random_count == 3 + 1
    params = nnx.state(model, nnx.Param)
    # Two parameters (mu, rho) per random value, plus the fixed layer's 15.
    assert _sizes(params) == 2 * random_count + 15
    paths = {path for path, _ in nnx.to_flat_state(params)}
    assert ("head", "weights") not in paths and ("head", "bias") not in paths
    assert ("body", "weights") in paths
    assert _sizes(nnx.state(model, Sample)) == random_count
    assert _sizes(nnx.state(model, Prior)) == 2 * 2  # mu_prior, std_prior per tensor
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    # Adam keeps two moments per parameter (and a step count): nothing for samples.
    moments = [
        leaf
        for leaf in jax.tree.leaves(nnx.state(optimizer, nnx.OptState))
        if np.ndim(leaf) > 0
    ]
    assert sum(int(np.size(m)) for m in moments) == 2 * (2 * random_count + 15)


def _train_step(traces: list[int]) -> Callable[..., jax.Array]:
    """A jitted ELBO training step that records each trace in ``traces``."""

    @nnx.jit
    def step(
        model: _Net, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
    ) -> jax.Array:
        traces.append(1)  # runs only while tracing

        def loss_fn(model: _Net) -> jax.Array:
            return ELBO.monte_carlo(model, x, y)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
        loss, grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss

    return step


def test_jitted_training_step_traces_once_and_learns() -> None:
    model = _Net()
    optimizer = nnx.Optimizer(model, optax.adam(5e-2), wrt=nnx.Param)
    traces: list[int] = []
    step = _train_step(traces)
    mu_before = np.asarray(model.head.weights_distribution.mu[...])
    losses, samples = [], []
    for _ in range(30):
        losses.append(float(step(model, optimizer, X, Y)))
        samples.append(np.asarray(model.head.weights[...]))
    assert len(traces) == 1  # the graph never changes: no retracing
    assert not np.array_equal(samples[-1], samples[-2])  # fresh samples each step
    assert not np.array_equal(model.head.weights_distribution.mu[...], mu_before)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_jitted_step_matches_the_eager_step() -> None:
    eager_model, jitted_model = _Net(), _Net()
    eager_opt = nnx.Optimizer(eager_model, optax.sgd(0.1), wrt=nnx.Param)
    jitted_opt = nnx.Optimizer(jitted_model, optax.sgd(0.1), wrt=nnx.Param)

    def loss_fn(model: _Net) -> jax.Array:
        return ELBO.monte_carlo(model, X, Y)

    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
    loss, grads = grad_fn(eager_model)
    eager_opt.update(eager_model, grads)
    jitted_loss = _train_step([])(jitted_model, jitted_opt, X, Y)
    assert float(jitted_loss) == pytest.approx(float(loss), rel=1e-5)
    for (path, a), (_, b) in zip(
        nnx.to_flat_state(nnx.state(eager_model, nnx.Param)),
        nnx.to_flat_state(nnx.state(jitted_model, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_allclose(
            a[...], b[...], rtol=1e-5, atol=1e-6, err_msg=str(path)
        )


def test_frozen_model_under_jit_is_deterministic() -> None:
    model = _Net()
    freeze_all(model)

    @nnx.jit
    def forward(model: _Net, x: jax.Array) -> jax.Array:
        return model(x)

    first = forward(model, X)
    np.testing.assert_array_equal(forward(model, X), first)
    np.testing.assert_allclose(model(X), first, rtol=1e-6)
