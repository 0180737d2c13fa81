"""Save and load a model's state, ``frozen`` flags and random streams included.

``nnx.state(model)`` holds every variable: ``mu``/``rho`` (``nnx.Param``), the
current samples (:class:`~.distributions.Sample`), the priors
(:class:`~.distributions.Prior`), ``Fixed*`` weights and the random-stream
state (``nnx.RngKey``, ``nnx.RngCount``), and ``nnx.update(model, state)``
restores them. It does **not** hold the ``frozen`` flags: they are plain Python
attributes of the modules (static in the graph, so that ``nnx.jit`` can branch
on them), and a model restored that way keeps its own flags.

:func:`model_state` / :func:`restore_model_state` carry both: a flat
``{name: numpy array}`` dict (names are the variables' paths joined with
``.``, as in :mod:`bnnc.runtime.transfer`; random keys are stored as their key
data) plus one entry ``"__bnnc__"`` holding the ``frozen`` flags of every
Bayesian module and the random keys' implementations as JSON. :func:`save_model`
and :func:`load_model` write and read that dict as an ``.npz`` file, loaded with
``allow_pickle=False`` (no arbitrary pickles).

After a round trip a frozen model computes bit for bit the same outputs, and an
unfrozen one resumes sampling from the saved random streams: its next calls
draw what the saved model's next calls would have drawn.
"""

from __future__ import annotations

import io
import json
import os
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .base import BayesianModule

__all__ = ["load_model", "model_state", "restore_model_state", "save_model"]

FileLike = str | os.PathLike[str] | IO[bytes]

#: Name of the metadata entry (frozen flags, key implementations, format).
META_KEY = "__bnnc__"
_FORMAT = "bnnc-nnx-state/1"


def _name(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path)


def _variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    return {
        _name(path): node
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable)
    }


def _frozen_flags(model: nnx.Module) -> dict[str, bool]:
    return {
        _name(path): bool(module.frozen)
        for path, module in nnx.iter_modules(model)
        if isinstance(module, BayesianModule) and module.is_bayesian
    }


def _is_key(value: Any) -> bool:
    return hasattr(value, "dtype") and jax.dtypes.issubdtype(
        value.dtype, jax.dtypes.prng_key
    )


def model_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every variable of ``model`` and its ``frozen`` flags, as numpy arrays.

    Args:
        model: A model built from this runtime (e.g. by ``bnnc.build``).

    Returns:
        ``{variable name: array}`` plus ``"__bnnc__"``: a 0-d string array
        with the JSON ``{"format", "frozen": {module name: flag}, "keys":
        {variable name: key implementation}}``. Picklable, and what
        :func:`save_model` writes.
    """
    arrays: dict[str, np.ndarray] = {}
    key_impls: dict[str, str] = {}
    for name, variable in _variables(model).items():
        value = variable.get_value()
        if _is_key(value):
            key_impls[name] = str(jax.random.key_impl(value))
            value = jax.random.key_data(value)
        arrays[name] = np.array(value)
    meta = {"format": _FORMAT, "frozen": _frozen_flags(model), "keys": key_impls}
    arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def restore_model_state(
    model: nnx.Module, state: dict[str, np.ndarray] | Any
) -> nnx.Module:
    """Write a :func:`model_state` dict into ``model`` (in place).

    Values keep their saved dtype and are copied exactly; the ``frozen`` flag
    of every Bayesian module is set as saved.

    Args:
        model: A model of the same architecture as the saved one.
        state: A dict from :func:`model_state` (or the mapping ``np.load``
            returns for a :func:`save_model` file).

    Returns:
        ``model``.

    Raises:
        ValueError: If the names, shapes or Bayesian modules differ (nothing
            is changed then).
    """
    if META_KEY not in state:
        raise ValueError(f"not a bnnc model state: no {META_KEY!r} entry")
    meta = json.loads(str(np.asarray(state[META_KEY])))
    if meta.get("format") != _FORMAT:
        raise ValueError(f"unknown model state format {meta.get('format')!r}")
    variables = _variables(model)
    names = {name for name in state if name != META_KEY}
    flags = _frozen_flags(model)
    problems = []
    if missing := sorted(variables.keys() - names):
        problems.append("missing in the state: " + ", ".join(missing))
    if unexpected := sorted(names - variables.keys()):
        problems.append("unexpected (absent from the model): " + ", ".join(unexpected))
    values: dict[str, Any] = {}
    for name in sorted(names & variables.keys()):
        value = np.asarray(state[name])
        if name in meta["keys"]:
            value = jax.random.wrap_key_data(value, impl=meta["keys"][name])
        else:
            value = jnp.asarray(value)
        expected = tuple(variables[name].get_value().shape)
        if value.shape != expected:
            problems.append(f"mis-shaped {name}: state {value.shape}, model {expected}")
        values[name] = value
    if sorted(flags) != sorted(meta["frozen"]):
        problems.append(
            "Bayesian modules differ: state "
            f"{sorted(meta['frozen'])}, model {sorted(flags)}"
        )
    if problems:
        raise ValueError("cannot restore the model state:\n  " + "\n  ".join(problems))
    for name, value in values.items():
        variables[name].set_value(value)
    modules = dict(nnx.iter_modules(model))
    for path, module in modules.items():
        name = _name(path)
        if name in meta["frozen"]:
            module.frozen = bool(meta["frozen"][name])
    return model


def save_model(model: nnx.Module, file: FileLike) -> None:
    """Write :func:`model_state` of ``model`` to ``file`` as an ``.npz`` archive.

    Args:
        model: A model built from this runtime.
        file: A path (numpy appends ``.npz`` when it lacks it) or a binary file
            object.
    """
    np.savez(file, **model_state(model))


def load_model(model: nnx.Module, file: FileLike) -> nnx.Module:
    """Load a file written by :func:`save_model` into ``model`` (in place).

    Args:
        model: A model of the same architecture as the saved one.
        file: A path or a binary file object.

    Returns:
        ``model``, with the saved variables, random streams and ``frozen``
        flags.
    """
    if not isinstance(file, (str, os.PathLike)):
        file = io.BytesIO(file.read())
    with np.load(file, allow_pickle=False) as archive:
        state = {name: archive[name] for name in archive.files}
    return restore_model_state(model, state)
