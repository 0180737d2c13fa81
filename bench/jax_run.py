"""Training-step and MC-prediction contenders for JAX, all under ``nnx.jit``.

Every contender is a function ``run(n)`` doing ``n`` steps (or ``n`` MC
predictions of ``S`` passes) and returning the last result; the timing
protocol waits for it with ``jax.block_until_ready``. Training: one
``nnx.jit`` step (``nnx.value_and_grad`` over ``nnx.Param``, then
``optax.adam(1e-3)`` through ``nnx.Optimizer``), the same for every contender.
Prediction: bnnc through its public ``mc_samples``; the deterministic model
as a jitted ``S``-pass loop (``lax.scan``, each pass fed a zero computed from the
previous one so that XLA cannot compute the identical passes once); the floor
as a jitted ``S``-pass loop drawing new weights on each pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bench import jax_models as jm
from bench.workloads import Workload

Run = Callable[[int], Any]

CONTENDERS = ("bnnc", "deterministic", "floor")


def _data(workload: Workload, batch: int, seq_len: int, seed: int, nhwc: bool):
    x, y = workload.inputs(batch, seq_len, np.random.default_rng(seed))
    if x.dtype == np.int64:
        x = x.astype(np.int32)
    if nhwc and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return jnp.asarray(x), jnp.asarray(y.astype(np.int32))


def _train_run(model: nnx.Module, loss_of: Callable, x, y) -> Run:
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(m):
            return loss_of(m, x, y)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
        loss, grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss

    def run(n: int) -> Any:
        loss = None
        for _ in range(n):
            loss = step(model, optimizer, x, y)
        return loss

    return run


def train_contenders(
    workload: Workload,
    batch: int,
    seq_len: int,
    seed: int,
    names: tuple[str, ...] = CONTENDERS,
) -> dict[str, Run]:
    """Training steps of the contenders in ``names`` (bnnc, deterministic, floor)."""
    from bnnc.runtime import jax as bnn

    x, y = _data(workload, batch, seq_len, seed, nhwc=False)
    x_det, _ = _data(workload, batch, seq_len, seed, nhwc=True)
    runs: dict[str, Run] = {}
    for name in names:
        if name == "bnnc":
            elbo = bnn.ELBOLoss(
                lambda out, target: jm.data_loss(workload, out, target),
                kl_weight=jm.KL_WEIGHT,
            )
            model = jm.bnnc_model(workload, seed)
            runs[name] = _train_run(
                model, lambda m, a, b, elbo=elbo: elbo.monte_carlo(m, a, b), x, y
            )
            continue
        if name == "deterministic":
            model = jm.deterministic_model(workload, seed)
        elif name == "floor":
            model = jm.floor_model(workload, seed)
        else:
            raise ValueError(f"unknown JAX contender {name!r}")
        runs[name] = _train_run(
            model, lambda m, a, b: jm.data_loss(workload, m(a), b), x_det, y
        )
    return runs


@nnx.jit(static_argnums=2)
def _deterministic_passes(model: nnx.Module, x: jax.Array, samples: int):
    """``samples`` real passes of a deterministic model, stacked.

    The passes are identical, so XLA would compute one and reuse it (an
    optimisation barrier on the input does not stop it). Each pass therefore
    adds to its input a zero computed from the previous pass's output
    (``0 * y``, which XLA may not fold: it is NaN for infinite ``y``), so the
    passes run one after the other, as a loop over the samples does.
    """
    graphdef, state = nnx.split(model)

    def one(zero, _):
        out = nnx.merge(graphdef, state)(x + zero.astype(x.dtype))
        return (0 * out.reshape(-1)[0]).astype(jnp.float32), out

    _, outs = jax.lax.scan(one, jnp.zeros((), jnp.float32), None, length=samples)
    return outs


@nnx.jit(static_argnums=2)
def _floor_passes(floor: jm.Floor, x: jax.Array, samples: int):
    keys = jax.random.split(floor.rngs.sample(), samples)
    return jax.lax.map(lambda key: floor.sampled(key)(x), keys)


def predict_contenders(
    workload: Workload, batch: int, seq_len: int, samples: int, seed: int
) -> dict[str, Run]:
    """MC predictions of ``samples`` passes (eval mode: no dropout)."""
    from bnnc.runtime import jax as bnn

    x, _ = _data(workload, batch, seq_len, seed, nhwc=False)
    x_det, _ = _data(workload, batch, seq_len, seed, nhwc=True)
    model = jm.bnnc_model(workload, seed)
    det = jm.deterministic_model(workload, seed)
    floor = jm.floor_model(workload, seed)
    for m in (model, det, floor):
        m.eval()

    def bnnc_run(n: int) -> Any:
        out = None
        for _ in range(n):
            out = bnn.mc_samples(model, x, num_samples=samples)
        return out

    def det_run(n: int) -> Any:
        out = None
        for _ in range(n):
            out = _deterministic_passes(det, x_det, samples)
        return out

    def floor_run(n: int) -> Any:
        out = None
        for _ in range(n):
            out = _floor_passes(floor, x_det, samples)
        return out

    return {"bnnc": bnnc_run, "deterministic": det_run, "floor": floor_run}
