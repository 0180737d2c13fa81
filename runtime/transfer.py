"""Copy a model's state between the PyTorch and the JAX (Flax NNX) runtimes.

Both runtimes give every tensor the same name, shape and layout, so a torch
``state_dict`` key such as ``conv2.weights_distribution.mu`` names the NNX
variable at path ``('conv2', 'weights_distribution', 'mu')``. The copy covers
every tensor the runtimes define: variational parameters (``mu``, ``rho``),
current samples (``weights``, ``bias``, the LSTM's ``wf, bf, ...``), prior
hyperparameters (``mu_prior``, ``std_prior``) and the weights of ``Fixed*``
layers; and the ``frozen`` flag of every Bayesian module. NNX random-stream
state (``nnx.Rngs``) has no torch counterpart and is left alone.

Values are copied exactly (float32 in, float32 out), so
``torch -> nnx -> torch`` reproduces the original tensors bit for bit.

torch, numpy and jax are imported inside the functions, so importing this
module imports neither framework.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "frozen_flags",
    "nnx_to_torch",
    "state_names",
    "torch_to_nnx",
]


def _is_torch_module(module: Any) -> bool:
    return hasattr(module, "state_dict") and hasattr(module, "named_buffers")


def _path_name(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path)


def _torch_tensors(module: Any) -> dict[str, tuple[Any, Any, str, bool]]:
    """``name -> (tensor, owning module, attribute, is_parameter)`` of ``module``."""
    tensors: dict[str, tuple[Any, Any, str, bool]] = {}
    for owner_name, owner in module.named_modules():
        prefix = f"{owner_name}." if owner_name else ""
        for attribute, parameter in owner.named_parameters(recurse=False):
            tensors.setdefault(prefix + attribute, (parameter, owner, attribute, True))
        for attribute, buffer in owner.named_buffers(recurse=False):
            if attribute in owner._non_persistent_buffers_set:
                continue
            tensors.setdefault(prefix + attribute, (buffer, owner, attribute, False))
    return tensors


def _nnx_variables(module: Any) -> dict[str, Any]:
    """``name -> nnx.Variable`` for every non-RNG variable of ``module``."""
    from flax import nnx

    variables: dict[str, Any] = {}
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable) and not isinstance(node, nnx.RngState):
            variables[_path_name(path)] = node
    return variables


def state_names(module: Any) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor that the transfer functions copy.

    Args:
        module: A ``torch.nn.Module`` (its parameters and persistent buffers,
            named as in ``state_dict``) or an ``nnx.Module`` (its variables
            other than random-stream state, paths joined with ``.``).

    Returns:
        ``{name: shape}``.
    """
    if _is_torch_module(module):
        return {
            name: tuple(tensor.shape)
            for name, (tensor, *_) in _torch_tensors(module).items()
        }
    return {
        name: tuple(variable.get_value().shape)
        for name, variable in _nnx_variables(module).items()
    }


def frozen_flags(module: Any) -> dict[str, bool]:
    """``{module name: frozen}`` for every bnnc Bayesian (or fixed) module.

    Works on torch and NNX models; the root module's name is ``""``.
    """
    if _is_torch_module(module):
        from bnnc.runtime.torch import BayesianModule as TorchBayesian

        return {
            name: bool(sub.frozen)
            for name, sub in module.named_modules()
            if isinstance(sub, TorchBayesian)
        }
    from flax import nnx

    from bnnc.runtime.jax import BayesianModule as JaxBayesian

    return {
        _path_name(path): bool(sub.frozen)
        for path, sub in nnx.iter_modules(module)
        if isinstance(sub, JaxBayesian)
    }


def _check_match(
    source: dict[str, tuple[int, ...]],
    target: dict[str, tuple[int, ...]],
    source_flags: dict[str, bool],
    target_flags: dict[str, bool],
    direction: str,
) -> None:
    """Raise ValueError listing every difference between the two models."""
    problems = []
    missing = sorted(target.keys() - source.keys())
    unexpected = sorted(source.keys() - target.keys())
    mis_shaped = sorted(
        f"{name}: source {source[name]}, target {target[name]}"
        for name in source.keys() & target.keys()
        if source[name] != target[name]
    )
    if missing:
        problems.append("missing in the source: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected (absent from the target): " + ", ".join(unexpected))
    if mis_shaped:
        problems.append("mis-shaped: " + "; ".join(mis_shaped))
    flag_names = sorted(source_flags.keys() ^ target_flags.keys())
    if flag_names:
        problems.append(
            "Bayesian modules present on one side only: "
            + ", ".join(repr(name) for name in flag_names)
        )
    if problems:
        raise ValueError(
            f"cannot copy {direction}: the models differ.\n  " + "\n  ".join(problems)
        )


def torch_to_nnx(torch_module: Any, nnx_module: Any) -> None:
    """Copy every tensor and ``frozen`` flag of a torch model into an NNX model.

    Args:
        torch_module: A model built from ``bnnc.runtime.torch``.
        nnx_module: The same model built from ``bnnc.runtime.jax``; updated in
            place (variable values are replaced, the graph is unchanged).

    Raises:
        ValueError: If names or shapes differ (nothing is copied then).
    """
    import jax.numpy as jnp
    from flax import nnx

    tensors = _torch_tensors(torch_module)
    variables = _nnx_variables(nnx_module)
    source_flags, target_flags = frozen_flags(torch_module), frozen_flags(nnx_module)
    _check_match(
        {name: tuple(t.shape) for name, (t, *_) in tensors.items()},
        {name: tuple(v.get_value().shape) for name, v in variables.items()},
        source_flags,
        target_flags,
        "torch -> nnx",
    )
    for name, variable in variables.items():
        tensor = tensors[name][0]
        array = tensor.detach().cpu().numpy()
        variable.set_value(jnp.asarray(array, dtype=variable.get_value().dtype))
    modules = {_path_name(path): sub for path, sub in nnx.iter_modules(nnx_module)}
    for name, frozen in source_flags.items():
        modules[name].frozen = frozen


def nnx_to_torch(nnx_module: Any, torch_module: Any) -> None:
    """Copy every variable and ``frozen`` flag of an NNX model into a torch model.

    Parameters are overwritten in place (``copy_`` without gradient);
    buffers (samples, priors) are replaced by fresh tensors on the buffer's
    device and dtype, which also detaches samples from any autograd graph.

    Args:
        nnx_module: A model built from ``bnnc.runtime.jax``.
        torch_module: The same model built from ``bnnc.runtime.torch``;
            updated in place.

    Raises:
        ValueError: If names or shapes differ (nothing is copied then).
    """
    import numpy as np
    import torch

    tensors = _torch_tensors(torch_module)
    variables = _nnx_variables(nnx_module)
    source_flags, target_flags = frozen_flags(nnx_module), frozen_flags(torch_module)
    _check_match(
        {name: tuple(v.get_value().shape) for name, v in variables.items()},
        {name: tuple(t.shape) for name, (t, *_) in tensors.items()},
        source_flags,
        target_flags,
        "nnx -> torch",
    )
    with torch.no_grad():
        for name, (tensor, owner, attribute, is_parameter) in tensors.items():
            value = torch.from_numpy(np.array(variables[name].get_value()))
            value = value.to(device=tensor.device, dtype=tensor.dtype)
            if is_parameter:
                tensor.copy_(value)
            else:
                owner._buffers[attribute] = value
    modules = dict(torch_module.named_modules())
    for name, frozen in source_flags.items():
        modules[name].frozen = frozen
