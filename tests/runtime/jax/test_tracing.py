"""No retracing: a generated model's jitted training step and MC prediction.

A Python counter is incremented inside each jitted function; it only runs
while JAX traces, so after several calls it must read exactly one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import bnnc
from bnnc.runtime import jax as bnn

DIGITS = Path(__file__).resolve().parents[3] / "examples" / "digits.bnn"
IMAGES = np.random.default_rng(0).standard_normal((6, 1, 8, 8)).astype(np.float32)
LABELS = np.arange(6, dtype=np.int32) % 10


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.mark.parametrize("estimator", ["closed_form", "sample"])
def test_generated_model_training_step_traces_once(estimator: str) -> None:
    model = bnnc.build(DIGITS, backend="jax", rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    elbo = bnn.ELBOLoss(_cross_entropy, num_samples=2, kl_estimator=estimator)
    traces: list[int] = []

    @nnx.jit
    def step(
        model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
    ) -> jax.Array:
        traces.append(1)  # runs only while tracing

        def loss_fn(model: nnx.Module) -> jax.Array:
            return elbo.monte_carlo(model, x, y)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
        loss, grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss

    x, y = jnp.asarray(IMAGES), jnp.asarray(LABELS)
    losses, samples, mus = [], [], []
    for _ in range(5):
        losses.append(float(step(model, optimizer, x, y)))
        samples.append(np.asarray(model.head.weights[...]))
        mus.append(np.asarray(model.head.weights_distribution.mu[...]))
    assert len(traces) == 1
    assert all(np.isfinite(losses))
    for before, after in itertools.pairwise(samples):
        assert not np.array_equal(before, after)  # fresh weights every step
    for before, after in itertools.pairwise(mus):
        assert not np.array_equal(before, after)  # and an update every step
    # Prediction in between does not change the graph either.
    bnn.predictive_probs(model, x, num_samples=2)
    step(model, optimizer, x, y)
    assert len(traces) == 1


def test_jitted_mc_prediction_traces_once_and_advances_the_streams() -> None:
    model = bnnc.build(DIGITS, backend="jax", rngs=nnx.Rngs(0))
    traces: list[int] = []

    @nnx.jit(static_argnames="num_samples")
    def predict(model: nnx.Module, x: jax.Array, num_samples: int) -> jax.Array:
        traces.append(1)  # runs only while tracing
        return bnn.mc_samples(model, x, num_samples=num_samples)

    x = jnp.asarray(IMAGES)
    results = [np.asarray(predict(model, x, num_samples=4)) for _ in range(4)]
    assert len(traces) == 1
    assert results[0].shape == (4, 6, 10)
    assert all(np.isfinite(r).all() for r in results)
    for before, after in itertools.pairwise(results):
        assert not np.array_equal(before, after)  # new keys on every call
    # Under jit the same numbers as eagerly, from the same seed.
    eager_model = bnnc.build(DIGITS, backend="jax", rngs=nnx.Rngs(0))
    eager = np.asarray(bnn.mc_samples(eager_model, x, num_samples=4))
    np.testing.assert_allclose(results[0], eager, rtol=1e-5, atol=1e-6)
