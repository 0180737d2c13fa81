"""Data-parallel training of a bnnc torch model with DistributedDataParallel.

One process per rank. :func:`run` is what ``test_torch_ddp.py`` starts on two
CPU processes with ``torch.multiprocessing.spawn`` (gloo, ``file://``
rendezvous); the file also runs unchanged under torchrun, which sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (``env://`` rendezvous)::

    torchrun --standalone --nproc-per-node=2 tests/distributed/ddp_train.py --out DIR

Each rank writes what it saw (initial parameters, the gradients of every step,
the gradients of the first step without the KL term, the losses and the final
parameters) to ``DIR/rank<r>.pt``; the
test replays both ranks in one process and compares. ``docs/scaling.md``
explains the choices made here. Only public bnnc API touches the model.
"""

from __future__ import annotations

import argparse
import inspect
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import bnnc
from bnnc.runtime import torch as bnn

SPEC = Path(__file__).with_name("regressor.bnn")
INIT_SEED = 0  # model initialisation; DDP broadcasts rank 0's parameters
SAMPLE_SEED = 1000  # weight samples: rank r seeds SAMPLE_SEED + r
DATA_SEED = 7  # the data set and the DistributedSampler's shuffling
NUM_EXAMPLES = 64  # the whole data set, all ranks together
BATCH_SIZE = 8  # per rank: a global batch is world_size * BATCH_SIZE examples
NUM_SAMPLES = 2  # Monte Carlo forward passes per step (per rank)
STEPS = 3
LR = 0.05
MOMENTUM = 0.9


def build_model() -> torch.nn.Module:
    """The generated torch model of ``regressor.bnn``."""
    return bnnc.build(SPEC)


def dataset() -> TensorDataset:
    """A fixed synthetic regression data set, the same on every rank."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    x = torch.randn(NUM_EXAMPLES, 6, generator=generator)
    y = (
        torch.sin(x[:, :1])
        + 0.5 * x[:, 1:2]
        + 0.1 * torch.randn(NUM_EXAMPLES, 1, generator=generator)
    )
    return TensorDataset(x, y)


def loader(
    data: TensorDataset, rank: int, world_size: int, epoch: int = 0
) -> DataLoader:
    """Rank ``rank``'s shard of ``data``, shuffled per epoch, in local batches.

    ``DistributedSampler`` gives each rank a disjoint ``1 / world_size`` of the
    data (the same permutation on every rank, from ``seed`` and the epoch).
    The loader gets its own generator: without one, every ``iter(loader)``
    draws a seed from torch's global generator and shifts the weight samples.
    """
    sampler = DistributedSampler(
        data, num_replicas=world_size, rank=rank, shuffle=True, seed=DATA_SEED
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        data,
        batch_size=BATCH_SIZE,
        sampler=sampler,
        generator=torch.Generator().manual_seed(0),
    )


def elbo_loss(model: torch.nn.Module, num_examples: int, kl_scale: float = 1.0):
    """The per-example negative ELBO: ``mean data loss + KL / num_examples``.

    ``ELBOLoss`` divides the KL by the number of random weights, so
    ``kl_weight = weights / examples`` gives ``KL / examples``. ``num_examples``
    is the size of the WHOLE data set, not of a rank's shard: DDP averages the
    ranks' gradients, so every rank adding ``KL / num_examples`` counts it once.
    """
    _, num_weights = bnn.total_kl(model)
    return bnn.ELBOLoss(
        F.mse_loss,
        num_samples=NUM_SAMPLES,
        kl_weight=kl_scale * num_weights / num_examples,
    )


def ddp_options() -> dict[str, Any]:
    """Keyword arguments of ``DistributedDataParallel`` for a bnnc model.

    The runtime keeps each layer's current weight sample in a buffer that
    every forward pass overwrites, so broadcasting buffers from rank 0 before
    each forward (DDP's default) is at best wasted traffic and, with several
    forward passes per backward (``ELBOLoss.monte_carlo`` with
    ``num_samples > 1``), silently overwrites samples that the pending backward
    still needs. torch >= 2.13 calls the switch ``forward_sync_buffers`` (the
    initial sync of parameters and buffers still happens); older versions
    ``broadcast_buffers``. ``find_unused_parameters=True`` would fail on frozen
    layers, whose ``mu``/``rho`` only the KL term (computed outside the forward
    pass) reaches; every parameter gets a gradient anyway.
    """
    parameters = inspect.signature(DistributedDataParallel).parameters
    name = (
        "forward_sync_buffers"
        if "forward_sync_buffers" in parameters
        else "broadcast_buffers"
    )
    return {name: False, "find_unused_parameters": False}


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def backward(model: torch.nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor):
    """One Monte Carlo ELBO and its backward pass; returns the loss."""
    model.zero_grad()
    loss = loss_fn.monte_carlo(model, x, y)
    loss.backward()
    return loss


def train(rank: int, world_size: int) -> dict[str, Any]:
    """Train on this rank's shard; what the test needs to check it."""
    # Ranks deliberately start from different weights: DDP's constructor
    # broadcasts rank 0's parameters (and buffers), so all ranks train one model.
    torch.manual_seed(INIT_SEED + rank)
    model = build_model()
    ddp = DistributedDataParallel(model, **ddp_options())
    initial = parameters(model)

    data = dataset()
    elbo = elbo_loss(model, len(data))
    data_only = elbo_loss(model, len(data), kl_scale=0.0)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=MOMENTUM)

    # Each rank draws its own weight samples: seed once, per rank.
    torch.manual_seed(SAMPLE_SEED + rank)
    result: dict[str, Any] = {"initial": initial, "grads": [], "losses": []}
    for step, (x, y) in enumerate(loader(data, rank, world_size)):
        if step == STEPS:
            break
        if step == 0:
            # The same weight samples without the KL term, for the KL check.
            rng = torch.get_rng_state()
            backward(ddp, data_only, x, y)
            result["data_grads"] = gradients(model)
            torch.set_rng_state(rng)
        loss = backward(ddp, elbo, x, y)
        result["grads"].append(gradients(model))
        optimizer.step()
        # Metrics: every rank has its own loss; average them for logging.
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss, op=dist.ReduceOp.SUM)
        result["losses"].append((loss.item(), mean_loss.item() / world_size))
    result["final"] = parameters(model)
    del ddp
    return result


def run(rank: int, world_size: int, init_method: str, out_dir: str) -> None:
    """Entry point of one rank (``torch.multiprocessing.spawn`` passes ``rank``)."""
    torch.set_num_threads(1)  # two ranks share two cores; also bitwise repeatable
    dist.init_process_group(
        "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=120),  # a lost peer fails the run, not hangs it
    )
    try:
        result = train(rank, world_size)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # nobody tears gloo down while a peer still talks
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for rank<r>.pt")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    # torchrun's environment; env:// reads MASTER_ADDR and MASTER_PORT.
    run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", args.out)


if __name__ == "__main__":
    main()
