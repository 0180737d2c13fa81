"""bnnc: a compiler for Bayesian neural networks.

Write a model once as a ``.bnn`` spec (or build the IR in Python) and get a
readable PyTorch or JAX module built from bnnc's Bayesian runtime::

    import bnnc

    model = bnnc.build("examples/digits.bnn", backend="torch", classes=10)

Subpackages: :mod:`bnnc.dsl` (the language), :mod:`bnnc.compiler` (IR, checker,
backends, CLI) and :mod:`bnnc.runtime` (distributions and Bayesian layers).
"""

from __future__ import annotations

from pkgutil import extend_path
from typing import Any

# Lets `bnnc.dsl` etc. resolve when a source checkout's `bnnc/` folder shadows
# an installed copy on sys.path (e.g. running python from the repository root).
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
__all__ = ["__version__", "build", "check", "compile"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import bnnc` stays cheap and never imports torch or jax.
    if name in ("build", "check", "compile"):
        from bnnc.compiler import api

        return getattr(api, name)
    raise AttributeError(f"module 'bnnc' has no attribute {name!r}")
