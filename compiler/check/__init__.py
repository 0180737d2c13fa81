"""The checker: names, argument types and constraints, and shape inference.

:func:`check_program` reports every independent error of a program in one
:class:`~bnnc.compiler.diagnostics.CompileError`, or returns a
:class:`~bnnc.compiler.check.results.CheckedProgram` in which every layer's
``auto`` size is resolved and every forward value has a symbolic shape.
"""

from bnnc.compiler.check.program import check_program
from bnnc.compiler.check.results import CheckedProgram, LayerInfo, NetworkInfo

__all__ = ["CheckedProgram", "LayerInfo", "NetworkInfo", "check_program"]
