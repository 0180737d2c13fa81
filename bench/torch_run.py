"""Training-step and MC-prediction contenders for torch eager and torch.compile.

Every contender is a function ``run(n)`` doing ``n`` steps (or ``n`` MC
predictions of ``S`` passes). All of them share the same data, optimiser
(``torch.optim.Adam`` with default settings over every trainable parameter)
and structure; with ``compiled=True`` each compiles the same part with
``torch.compile``: the forward pass plus loss for training, the forward pass
for prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from bench import torch_models as tm
from bench.workloads import Workload

Run = Callable[[int], object]

CONTENDERS = ("bnnc", "deterministic", "floor", "bayesian_torch")


def _data(workload: Workload, batch: int, seq_len: int, seed: int):
    x, y = workload.inputs(batch, seq_len, np.random.default_rng(seed))
    return torch.from_numpy(x), torch.from_numpy(y)


def _train_run(model: nn.Module, loss_fn: Callable, x, y, compiled: bool) -> Run:
    optimizer = torch.optim.Adam(model.parameters())
    fn = torch.compile(loss_fn) if compiled else loss_fn
    model.train()

    def run(n: int) -> object:
        loss = None
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            loss = fn(x, y)
            loss.backward()
            optimizer.step()
        return loss

    return run


def train_contenders(
    workload: Workload,
    batch: int,
    seq_len: int,
    seed: int,
    compiled: bool,
    names: tuple[str, ...] = CONTENDERS,
) -> dict[str, Run]:
    """Training steps of the contenders in ``names`` (bnnc, deterministic,
    floor, bayesian_torch); bayesian-torch is left out when not installed."""
    torch.manual_seed(seed)
    x, y = _data(workload, batch, seq_len, seed)
    runs: dict[str, Run] = {}
    for name in names:
        built = _train_model(workload, name)
        if built is not None:
            model, loss_fn = built
            runs[name] = _train_run(model, loss_fn, x, y, compiled)
    return runs


def _train_model(workload: Workload, name: str):
    """``(model, loss_fn(x, y))`` of one contender, or None if unavailable."""
    if name == "bnnc":
        from bnnc.runtime import torch as bnn

        model = tm.bnnc_model(workload)
        elbo = bnn.ELBOLoss(
            lambda out, target: tm.data_loss(workload, out, target),
            kl_weight=tm.KL_WEIGHT,
        )
        return model, lambda a, b: elbo.monte_carlo(model, a, b)
    if name == "bayesian_torch":
        bt = tm.bayesian_torch_model(workload)
        if bt is None:
            return None

        get_kl_loss = tm.bayesian_torch_kl()

        def bt_loss(a, b):
            kl = get_kl_loss(bt)
            return tm.data_loss(workload, bt(a), b) + tm.KL_WEIGHT * kl

        return bt, bt_loss
    if name == "deterministic":
        det = tm.deterministic_model(workload)
    elif name == "floor":
        det = tm.floor_model(workload)
    else:
        raise ValueError(f"unknown contender {name!r}")
    return det, lambda a, b: tm.data_loss(workload, det(a), b)


def _loop_predict(model: nn.Module, x, samples: int, compiled: bool) -> Run:
    """``samples`` forward passes per prediction, the mean softmax (no grad)."""
    model.eval()
    forward = torch.compile(model) if compiled else model

    def run(n: int) -> object:
        out = None
        with torch.no_grad():
            for _ in range(n):
                logits = torch.stack([forward(x) for _ in range(samples)])
                out = torch.softmax(logits, dim=-1).mean(dim=0)
        return out

    return run


def predict_contenders(
    workload: Workload,
    batch: int,
    seq_len: int,
    samples: int,
    seed: int,
    compiled: bool,
) -> dict[str, Run]:
    """Predictive class probabilities from ``samples`` posterior samples: bnnc
    through ``predictive_probs``, the others as a loop of forward passes (the
    floor draws on every pass) and the same mean softmax."""
    from bnnc.runtime import torch as bnn

    torch.manual_seed(seed)
    x, _ = _data(workload, batch, seq_len, seed)
    runs: dict[str, Run] = {}

    model = tm.bnnc_model(workload)
    model.eval()
    target = torch.compile(model) if compiled else model

    def bnnc_run(n: int) -> object:
        out = None
        for _ in range(n):
            out = bnn.predictive_probs(target, x, num_samples=samples)
        return out

    runs["bnnc"] = bnnc_run
    runs["deterministic"] = _loop_predict(
        tm.deterministic_model(workload), x, samples, compiled
    )
    runs["floor"] = _loop_predict(tm.floor_model(workload), x, samples, compiled)
    bt = tm.bayesian_torch_model(workload)
    if bt is not None:
        runs["bayesian_torch"] = _loop_predict(bt, x, samples, compiled)
    return runs
