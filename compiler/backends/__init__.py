"""Code generators, one per framework, sharing :mod:`.base`.

``BACKENDS`` maps a backend name to its generator class. Importing a backend
never imports its framework: generated code does that.
"""

from __future__ import annotations

from bnnc.compiler.backends.base import HEADER_MARK, Generated, Generator
from bnnc.compiler.backends.jax import JaxGenerator
from bnnc.compiler.backends.torch import TorchGenerator

BACKENDS: dict[str, type[Generator]] = {"torch": TorchGenerator, "jax": JaxGenerator}

__all__ = ["BACKENDS", "HEADER_MARK", "Generated", "Generator"]
