"""Data-parallel training of a bnnc JAX/NNX model over a device mesh.

Run as a process of its own: XLA reads ``XLA_FLAGS`` once, when JAX starts its
CPU backend, so two host devices must be asked for before ``import jax``::

    export XLA_FLAGS=--xla_force_host_platform_device_count=2
    python tests/distributed/jax_train.py

It builds ``regressor.bnn`` twice with the same seeds, trains one copy with the
batch sharded along the ``data`` axis of a 2-device ``jax.sharding.Mesh`` and
the model and optimizer state replicated, and the other copy unsharded on one
device, with the same jitted step. It prints one JSON object (losses,
gradient and parameter differences, shardings, the number of all-reduces in
the compiled sharded step) that ``test_jax_sharding.py`` checks.
``docs/scaling.md`` explains the pattern. Only public bnnc API touches the
model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import bnnc
from bnnc.runtime import jax as bnn

SPEC = Path(__file__).with_name("regressor.bnn")
PARAMS_SEED = 0  # initial mu / rho / fixed weights
SAMPLE_SEED = 1  # the stream the Bayesian layers draw their weights from
DATA_SEED = 7
NUM_EXAMPLES = 64
BATCH_SIZE = 16  # global: each of the 2 devices gets 8 examples
NUM_SAMPLES = 1  # one pass keeps compile time down; passes unroll alike
STEPS = 3
LR = 0.05
MOMENTUM = 0.9


def build() -> tuple[nnx.Module, nnx.Optimizer]:
    """The generated model of ``regressor.bnn`` and its optimizer."""
    model = bnnc.build(
        SPEC, backend="jax", rngs=nnx.Rngs(params=PARAMS_SEED, sample=SAMPLE_SEED)
    )
    optimizer = nnx.Optimizer(model, optax.sgd(LR, momentum=MOMENTUM), wrt=nnx.Param)
    return model, optimizer


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(DATA_SEED)
    x = rng.standard_normal((NUM_EXAMPLES, 6)).astype(np.float32)
    noise = 0.1 * rng.standard_normal((NUM_EXAMPLES, 1)).astype(np.float32)
    return x, np.sin(x[:, :1]) + 0.5 * x[:, 1:2] + noise


def elbo_loss(model: nnx.Module, num_examples: int) -> bnn.ELBOLoss:
    """Per-example negative ELBO: ``mean data loss + KL / num_examples``.

    Under ``jit`` the sharded step computes ONE global loss over the global
    batch, so the KL is counted once; ``num_examples`` is the whole data set.
    """
    _, num_weights = bnn.total_kl(model)
    return bnn.ELBOLoss(
        lambda y, t: jnp.mean((y - t) ** 2),
        num_samples=NUM_SAMPLES,
        kl_weight=num_weights / num_examples,
    )


def make_train_step(elbo: bnn.ELBOLoss):
    """One jitted step; the same function serves sharded and unsharded inputs."""

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return elbo.monte_carlo(model, x, y)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
        loss, grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss, grads

    return train_step


def replicate(tree: Any, mesh: Mesh) -> None:
    """Put every variable of ``tree`` (modules, optimizers) on all mesh devices."""
    state = nnx.state(tree)
    nnx.update(tree, jax.device_put(state, NamedSharding(mesh, P())))


def _leaves(tree: Any) -> list[jax.Array]:
    return [leaf for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array)]


def _max_diff(a: Any, b: Any) -> float:
    pairs = list(zip(_leaves(a), _leaves(b), strict=True))
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in pairs)


def _all_replicated(tree: Any, mesh: Mesh) -> bool:
    """Every array of ``tree`` is whole on every device of ``mesh``."""
    devices = set(mesh.devices.flat)
    return all(
        leaf.sharding.is_fully_replicated and leaf.sharding.device_set == devices
        for leaf in _leaves(tree)
    )


def main() -> dict[str, Any]:
    devices = jax.devices()
    if len(devices) < 2:
        raise SystemExit(
            f"need 2 devices, got {devices}; set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=2 before importing jax"
        )
    mesh = Mesh(np.array(devices[:2]), axis_names=("data",))
    data_sharding = NamedSharding(mesh, P("data"))  # split axis 0 (the batch)

    model, optimizer = build()
    replicate((model, optimizer), mesh)
    ref_model, ref_optimizer = build()  # same seeds, one device
    x_all, y_all = dataset()
    train_step = make_train_step(elbo_loss(model, NUM_EXAMPLES))

    report: dict[str, Any] = {"devices": len(devices), "steps": []}
    for step in range(STEPS):
        rows = slice(step * BATCH_SIZE, (step + 1) * BATCH_SIZE)
        x = jax.device_put(x_all[rows], data_sharding)
        y = jax.device_put(y_all[rows], data_sharding)
        loss, grads = train_step(model, optimizer, x, y)
        ref_loss, ref_grads = train_step(
            ref_model, ref_optimizer, jnp.asarray(x_all[rows]), jnp.asarray(y_all[rows])
        )
        report["steps"].append(
            {
                "loss": float(loss),
                "ref_loss": float(ref_loss),
                "grad_diff": _max_diff(grads, ref_grads),
                "grad_norm": float(optax.global_norm(ref_grads)),
                "param_diff": _max_diff(
                    nnx.state(model, nnx.Param), nnx.state(ref_model, nnx.Param)
                ),
                "sample_diff": _max_diff(
                    nnx.state(model, bnn.Sample), nnx.state(ref_model, bnn.Sample)
                ),
                "batch_spec": str(x.sharding.spec),
                "batch_shards": sorted(
                    [s.device.id, *s.data.shape] for s in x.addressable_shards
                ),
                "loss_replicated": loss.sharding.is_fully_replicated,
                "grads_replicated": _all_replicated(grads, mesh),
            }
        )
    report["state_replicated"] = _all_replicated(nnx.state((model, optimizer)), mesh)
    report["ref_devices"] = sorted(
        {d.id for leaf in _leaves(nnx.state(ref_model)) for d in leaf.devices()}
    )
    report["params_moved"] = _max_diff(
        nnx.state(ref_model, nnx.Param), nnx.state(build()[0], nnx.Param)
    )
    compiled = train_step.lower(model, optimizer, x, y).compile().as_text()
    report["all_reduces"] = compiled.count("all-reduce(")
    return report


if __name__ == "__main__":
    print(json.dumps(main()))
