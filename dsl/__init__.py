"""The ``.bnn`` language front end: text to IR.

>>> from bnnc import dsl
>>> program = dsl.parse('''
... network MLP(d_in: int, d_out: int = 1) = sequential {
...     Linear(d_in, 32), relu, Linear(32, d_out)
... }
... ''')
>>> [layer.name for layer in program.networks[0].layers]
['linear_1', 'linear_2']

:func:`parse` parses text, :func:`parse_file` a file, and :func:`load` a file
together with everything it imports. All three raise
:class:`bnnc.compiler.diagnostics.CompileError` (carrying every diagnostic and
the source texts, so that ``error.render()`` shows carets) and no other
exception. The grammar is ``bnnc/grammars/bnn.lark``; the language is described
in ``docs/language.md``.
"""

from __future__ import annotations

from bnnc.dsl.loader import load, parse, parse_file
from bnnc.dsl.parser import keywords

__all__ = ["keywords", "load", "parse", "parse_file"]
