"""Parameter memory: trainable parameters of bnnc's model against its twins.

A Bayesian tensor should cost exactly two trainable tensors of its shape
(``mu`` and ``rho``) and a fixed layer its own weights, so bnnc's trainable
count must equal ``2 * (Bayesian weights) + (fixed weights)`` of the
deterministic twin: 2.0x for an all-Bayesian model, less for the digits CNN
whose ``conv1`` is fixed. It also checks that every trainable tensor of bnnc's
model is a ``mu`` or ``rho`` unless it belongs to a ``Fixed*`` layer.
"""

from __future__ import annotations

from typing import Any

from bench.workloads import Workload


def _cell(
    workload: Workload,
    bnnc: tuple[int, int],
    det: dict[str, tuple[int, int]],
    strays: list[str],
    extra: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """``bnnc``: (count, bytes); ``det``: layer -> (count, bytes)."""
    det_count = sum(c for c, _ in det.values())
    det_bytes = sum(b for _, b in det.values())
    bayes = sum(c for layer, (c, _) in det.items() if workload.is_bayesian(layer))
    expected = 2 * bayes + (det_count - bayes)
    cell: dict[str, Any] = {
        "count": {"bnnc": bnnc[0], "deterministic": det_count},
        "bytes": {"bnnc": bnnc[1], "deterministic": det_bytes},
        "ratio": bnnc[0] / det_count,
        "expected_ratio": expected / det_count,
        "bayesian_fraction": bayes / det_count,
        "only_mu_rho": not strays,
        "not_mu_rho": strays[:10],
    }
    for name, (count, size) in (extra or {}).items():
        cell["count"][name] = count
        cell["bytes"][name] = size
    return cell


def torch_params(workload: Workload) -> dict[str, Any]:
    """Counts for the torch models (torch eager and torch.compile share them)."""
    from bench import torch_models as tm
    from bnnc.runtime import torch as bnn

    model = tm.bnnc_model(workload)
    total = nbytes = 0
    strays = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        total += p.numel()
        nbytes += p.numel() * p.element_size()
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if leaf not in ("mu", "rho") and not isinstance(owner, bnn.FixedModule):
            strays.append(name)
    det: dict[str, tuple[int, int]] = {}
    for name, p in tm.deterministic_model(workload).named_parameters():
        layer = name.split(".")[0]
        count, size = det.get(layer, (0, 0))
        det[layer] = (count + p.numel(), size + p.numel() * p.element_size())
    extra = {}
    bt = tm.bayesian_torch_model(workload)
    if bt is not None:
        params = [p for p in bt.parameters() if p.requires_grad]
        extra["bayesian_torch"] = (
            sum(p.numel() for p in params),
            sum(p.numel() * p.element_size() for p in params),
        )
    return _cell(workload, (total, nbytes), det, strays, extra)


def jax_params(workload: Workload) -> dict[str, Any]:
    """Counts for the JAX models (``nnx.Param`` leaves)."""
    from flax import nnx

    from bench import jax_models as jm
    from bnnc.runtime import jax as bnn

    model = jm.bnnc_model(workload, 0)
    total = nbytes = 0
    strays = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = var.get_value()
        total += value.size
        nbytes += value.size * value.dtype.itemsize
        owner: Any = model
        for key in path[:-1]:
            owner = owner[key] if isinstance(key, int) else getattr(owner, key)
        if path[-1] not in ("mu", "rho") and not isinstance(owner, bnn.FixedModule):
            strays.append("/".join(map(str, path)))
    det: dict[str, tuple[int, int]] = {}
    twin = jm.deterministic_model(workload, 0)
    for path, var in nnx.to_flat_state(nnx.state(twin, nnx.Param)):
        value = var.get_value()
        layer = str(path[0])
        count, size = det.get(layer, (0, 0))
        det[layer] = (count + value.size, size + value.size * value.dtype.itemsize)
    return _cell(workload, (total, nbytes), det, strays)
