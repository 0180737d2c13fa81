"""Save and load a model's state, ``frozen`` flags included.

``state_dict()`` of a model built from this runtime holds, for every Bayesian
layer, the variational parameters (``mu``, ``rho``), the priors, the current
samples (``weights``, ``bias``, the LSTM's gates) and the ``frozen`` flag
(``<layer>._extra_state``, a 0-d bool tensor); ``load_state_dict`` restores
all of them, so a model saved frozen loads frozen and computes bit for bit the
same outputs. An unfrozen model loads unfrozen and draws fresh weights on its
next call (from torch's global random state, which is not saved).

:func:`save_model` and :func:`load_model` are that round trip through a file,
read back with ``torch.load(..., weights_only=True)`` (no arbitrary pickles).
"""

from __future__ import annotations

import os
from typing import IO, Any

import torch

__all__ = ["load_model", "save_model"]

FileLike = str | os.PathLike[str] | IO[bytes]


def save_model(model: torch.nn.Module, file: FileLike) -> None:
    """Write ``model.state_dict()`` (samples and ``frozen`` flags included) to ``file``.

    Args:
        model: Any ``torch.nn.Module``, e.g. a model from ``bnnc.build``.
        file: A path or a binary file object.
    """
    torch.save(model.state_dict(), file)


def load_model(
    model: torch.nn.Module,
    file: FileLike,
    *,
    map_location: Any = None,
    strict: bool = True,
) -> torch.nn.Module:
    """Load a state written by :func:`save_model` into ``model`` (in place).

    Args:
        model: A model of the same architecture as the saved one.
        file: A path or a binary file object.
        map_location: Passed to ``torch.load`` (e.g. ``"cpu"``).
        strict: Passed to ``load_state_dict``: every name must match. A state
            without ``frozen`` flags (saved by an older bnnc) still loads and
            leaves the flags unchanged.

    Returns:
        ``model``.
    """
    state = torch.load(file, map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=strict)
    return model
