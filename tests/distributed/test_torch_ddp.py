"""DistributedDataParallel training of a generated torch model, checked by numbers.

Two CPU processes (gloo, ``file://`` rendezvous, no port to pick) train
``regressor.bnn`` with ``ddp_train.py``: each rank seeds its own weight samples
and reads its own shard of the data. One process here then replays both ranks
with the same seeds and shards and checks that

- DDP's gradients are the average of the two ranks' gradients (1e-6);
- the KL part of the gradient is the KL gradient of ONE model, not of one per
  rank (with ``kl_weight = weights / examples`` for the whole data set);
- after a few optimizer steps both ranks hold identical parameters, equal to
  the replayed single-process training.

See ``docs/scaling.md`` for the settings (``forward_sync_buffers=False``,
``find_unused_parameters=False``) and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is unavailable", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

from bnnc.runtime import torch as bnn  # noqa: E402
from tests.distributed import ddp_train  # noqa: E402

WORLD_SIZE = 2
ATOL = 1e-6

Grads = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each DDP rank recorded (one spawn for the whole module)."""
    out = tmp_path_factory.mktemp("ddp")
    init_method = (out / "rendezvous").resolve().as_uri()  # file:///...
    mp.spawn(
        ddp_train.run,
        args=(WORLD_SIZE, init_method, str(out)),
        nprocs=WORLD_SIZE,
        join=True,
    )
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD_SIZE)]


def _grads(model: torch.nn.Module) -> Grads:
    # A parameter outside the graph (a fixed layer, for the KL alone) has no grad.
    return {
        name: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
        for name, p in model.named_parameters()
    }


def _mean(grads: list[Grads]) -> Grads:
    return {name: sum(g[name] for g in grads) / len(grads) for name in grads[0]}


def _kl_gradient(model: torch.nn.Module, x: torch.Tensor, kl_weight: float) -> Grads:
    """Gradient of the KL part of ``ELBOLoss.monte_carlo`` for one model.

    ``kl_weight * KL / weights``, averaged over the Monte Carlo passes, each KL
    taken at the weights that its pass drew (public API only).
    """
    model.zero_grad()
    kl_loss = bnn.KLDivergenceLoss()
    terms = []
    for _ in range(ddp_train.NUM_SAMPLES):
        model(x)  # draws this pass's weights
        terms.append(kl_loss(model))
    (kl_weight * torch.stack(terms).mean()).backward()
    return _grads(model)


@pytest.fixture(scope="module")
def replay() -> Iterator[dict[str, Any]]:
    """Both ranks' computations in one process, with the ranks' seeds and shards.

    Single-threaded like the ranks; torch's global generator and thread count
    are restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield _replay()
    finally:
        torch.set_num_threads(threads)


def _replay() -> dict[str, Any]:
    torch.manual_seed(ddp_train.INIT_SEED)  # rank 0's model: DDP broadcasts it
    model = ddp_train.build_model()
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = ddp_train.dataset()
    elbo = ddp_train.elbo_loss(model, len(data))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=ddp_train.LR, momentum=ddp_train.MOMENTUM
    )
    batches = [list(ddp_train.loader(data, r, WORLD_SIZE)) for r in range(WORLD_SIZE)]
    rng = []
    for r in range(WORLD_SIZE):
        torch.manual_seed(ddp_train.SAMPLE_SEED + r)
        rng.append(torch.get_rng_state())

    per_rank: list[list[Grads]] = []  # [step][rank]
    kl_parts: list[Grads] = []  # first step, per rank
    for step in range(ddp_train.STEPS):
        grads = []
        for r in range(WORLD_SIZE):
            x, y = batches[r][step]
            if step == 0:
                torch.set_rng_state(rng[r])
                kl_parts.append(_kl_gradient(model, x, elbo.kl_weight))
            torch.set_rng_state(rng[r])
            ddp_train.backward(model, elbo, x, y)
            grads.append(_grads(model))
            rng[r] = torch.get_rng_state()
        per_rank.append(grads)
        mean = _mean(grads)
        for name, p in model.named_parameters():
            p.grad = mean[name]
        optimizer.step()
    final = {name: p.detach().clone() for name, p in model.named_parameters()}
    return {
        "initial": initial,
        "per_rank": per_rank,
        "kl_parts": kl_parts,
        "final": final,
        "batches": batches,
    }


def _max_diff(a: Grads, b: Grads) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


def _norm(a: Grads) -> float:
    return sum(t.square().sum() for t in a.values()).sqrt().item()


def test_ranks_start_from_rank_zeros_model(ranks, replay) -> None:
    # Built with different seeds; DDP's constructor broadcast rank 0's weights.
    for result in ranks:
        assert _max_diff(result["initial"], replay["initial"]) == 0.0


def test_ranks_see_disjoint_shards(replay) -> None:
    shards = [torch.cat([x for x, _ in b]) for b in replay["batches"]]
    assert len(shards[0]) == len(shards[1]) == ddp_train.NUM_EXAMPLES // WORLD_SIZE
    rows = {tuple(row.tolist()) for shard in shards for row in shard}
    assert len(rows) == ddp_train.NUM_EXAMPLES


def test_gradients_are_averaged_across_ranks(ranks, replay) -> None:
    for step in range(ddp_train.STEPS):
        local = replay["per_rank"][step]
        # The ranks' own gradients really differ (own samples, own data) ...
        assert _max_diff(local[0], local[1]) > 1e-2
        expected = _mean(local)
        for rank, result in enumerate(ranks):
            got = result["grads"][step]
            # ... and DDP hands every rank their average.
            assert _max_diff(got, expected) < ATOL, (step, rank)
            assert _max_diff(got, local[rank]) > 1e-3


def test_kl_is_counted_once_per_model(ranks, replay) -> None:
    # DDP's KL part: the same samples and data with and without the KL term.
    kl_ddp = {
        name: ranks[0]["grads"][0][name] - ranks[0]["data_grads"][name]
        for name in ranks[0]["data_grads"]
    }
    # One model's KL gradient (kl_weight * KL / weights, averaged over its
    # Monte Carlo passes), averaged over the ranks' weight draws.
    once = _mean(replay["kl_parts"])
    twice = {name: 2 * g for name, g in once.items()}
    assert _norm(once) > 1e-3  # the KL part is not negligible
    assert _max_diff(kl_ddp, once) < ATOL
    assert _max_diff(kl_ddp, twice) > 100 * ATOL
    # The deterministic layer has no KL: its gradient is data only.
    fixed = [name for name in once if name.startswith("linear_1.")]
    assert fixed and all(kl_ddp[name].abs().max() < ATOL for name in fixed)
    # Both ranks got the same averaged data-only gradients.
    assert _max_diff(ranks[0]["data_grads"], ranks[1]["data_grads"]) == 0.0


def test_parameters_stay_identical_across_ranks(ranks, replay) -> None:
    first, second = (result["final"] for result in ranks)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert _max_diff(first, replay["final"]) < ATOL
    assert _max_diff(first, replay["initial"]) > 1e-2  # it did train


def test_logged_loss_is_the_mean_over_ranks(ranks) -> None:
    for step in range(ddp_train.STEPS):
        local = [result["losses"][step][0] for result in ranks]
        for result in ranks:
            assert result["losses"][step][1] == pytest.approx(sum(local) / 2)
