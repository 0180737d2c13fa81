"""JAX/Flax NNX contenders: bnnc's model, its ``nnx`` twin and the sampling floor.

- :func:`bnnc_model`: the spec built by ``bnnc.build(..., backend="jax")``.
- :func:`deterministic_model`: the same architecture in plain Flax NNX
  (``nnx.Linear``, ``nnx.Conv`` in NHWC layout, ``nnx.Embed``, the LSTM
  recurrence in ``jax.lax.scan`` as bnnc's LSTM does); same parameter counts
  as the spec.
- :class:`Floor`: the twin plus one draw ``mu + softplus(rho) * normal`` per
  Bayesian tensor on every call (``mu`` = the twin's own parameter, ``rho`` an
  extra same-shaped ``nnx.Param``), applied by splitting the twin and merging
  it back with the drawn weights.

bayesian-torch has no JAX version, so JAX figures have no such baseline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import bnnc
from bench.workloads import DROPOUT, EMBED, HIDDEN, SEQ_CLASSES, VOCAB, Workload

KL_WEIGHT = 1e-3


def bnnc_model(workload: Workload, seed: int) -> nnx.Module:
    """The workload's spec built for JAX with bnnc's public API."""
    return bnnc.build(
        workload.spec,
        backend="jax",
        network=workload.network,
        rngs=nnx.Rngs(seed),
        **workload.params,
    )


def data_loss(workload: Workload, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of logits, or NLL of log-probabilities, per the workload."""
    logp = jax.nn.log_softmax(outputs, axis=-1) if workload.loss == "ce" else outputs
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


class DetMLP(nnx.Module):
    """784-400-400-10 with ReLU."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(784, 400, rngs=rngs)
        self.fc2 = nnx.Linear(400, 400, rngs=rngs)
        self.fc3 = nnx.Linear(400, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc3(jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x)))))


class DetCNN(nnx.Module):
    """examples/digits.bnn in NHWC layout (its inputs are ``[B, 8, 8, 1]``)."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 16, (3, 3), padding=1, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), padding=1, rngs=rngs)
        self.head = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.max_pool(jax.nn.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(jax.nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


def lstm_scan(gates_x: jax.Array, w_h: jax.Array) -> jax.Array:
    """The recurrence over input gates ``[B, T, 4H]``; ``w_h`` is ``[H, 4H]``.

    Gates in bnnc's order (forget, input, candidate, output); returns the
    last hidden state.
    """
    batch, _, four_h = gates_x.shape
    zeros = jnp.zeros((batch, four_h // 4), gates_x.dtype)

    def step(carry, gates_t):
        h, c = carry
        forget, inp, candidate, out = jnp.split(gates_t + h @ w_h, 4, axis=-1)
        c = c * jax.nn.sigmoid(forget) + jnp.tanh(candidate) * jax.nn.sigmoid(inp)
        h = jax.nn.sigmoid(out) * jnp.tanh(c)
        return (h, c), None

    (h, _), _ = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(gates_x, 0, 1))
    return h


class DetSequence(nnx.Module):
    """examples/sequence.bnn: embedding, LSTM, read-out, tanh, dropout, head."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embedding = nnx.Embed(VOCAB, EMBED, rngs=rngs)
        self.gates_x = nnx.Linear(EMBED, 4 * HIDDEN, rngs=rngs)
        self.gates_h = nnx.Linear(HIDDEN, 4 * HIDDEN, use_bias=False, rngs=rngs)
        self.readout = nnx.Linear(HIDDEN, HIDDEN, rngs=rngs)
        self.head = nnx.Linear(HIDDEN, SEQ_CLASSES, rngs=rngs)
        self.dropout = nnx.Dropout(DROPOUT, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        gates_x = self.gates_x(self.embedding(tokens))
        h = lstm_scan(gates_x, self.gates_h.kernel.get_value())
        y = self.dropout(jnp.tanh(self.readout(h)))
        return jax.nn.log_softmax(self.head(y), axis=-1)


def deterministic_model(workload: Workload, seed: int) -> nnx.Module:
    """The workload's architecture in plain Flax NNX."""
    cls = {"mlp": DetMLP, "cnn": DetCNN, "lstm": DetSequence}[workload.name]
    return cls(nnx.Rngs(seed))


class Floor(nnx.Module):
    """A deterministic twin plus one reparameterised draw per Bayesian tensor."""

    def __init__(
        self, twin: nnx.Module, workload: Workload, rho_init: float, seed: int
    ) -> None:
        self.twin = twin
        flat = nnx.to_flat_state(nnx.state(twin, nnx.Param))
        self.paths = tuple(
            path for path, _ in flat if workload.is_bayesian(str(path[0]))
        )
        values = {path: var.get_value() for path, var in flat}
        # An explicit dtype: a weakly typed rho would retrace the step.
        self.rho = nnx.List(
            [nnx.Param(jnp.full_like(values[path], rho_init)) for path in self.paths]
        )
        self.rngs = nnx.Rngs(sample=seed)

    def sampled(self, key: jax.Array) -> nnx.Module:
        """A copy of the twin with every Bayesian tensor drawn with ``key``."""
        graphdef, params, rest = nnx.split(self.twin, nnx.Param, ...)
        flat = dict(nnx.to_flat_state(params))
        keys = jax.random.split(key, len(self.paths))
        for path, rho, k in zip(self.paths, self.rho, keys, strict=True):
            mu = flat[path].get_value()
            eps = jax.random.normal(k, mu.shape, mu.dtype)
            flat[path] = flat[path].replace(mu + jax.nn.softplus(rho.get_value()) * eps)
        return nnx.merge(graphdef, nnx.from_flat_state(list(flat.items())), rest)

    def __call__(self, *inputs: jax.Array) -> jax.Array:
        copy = self.sampled(self.rngs.sample())
        out = copy(*inputs)
        # Carry the copy's random streams (dropout) back to the twin.
        nnx.update(self.twin, nnx.state(copy, nnx.RngState))
        return out


def floor_model(workload: Workload, seed: int) -> Floor:
    """A fresh deterministic twin wrapped as :class:`Floor`."""
    return Floor(
        deterministic_model(workload, seed), workload, workload.rho_init, seed + 1
    )
