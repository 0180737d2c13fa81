"""A small code writer: indentation, ruff-style call wrapping, source mapping.

Like Jinja2's compiler, it records which spec line each generated line came
from (:attr:`CodeWriter.line_map`), and generated statements carry a comment
naming that spec line. Lines are wrapped the way ``ruff format`` would, so the
output passes ``ruff format --check`` as written.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from bnnc.compiler import ir

LINE_LENGTH = 88
INDENT = "    "

Source = tuple[str, int] | None  # (spec file label, line) a generated line came from


@dataclass
class CodeWriter:
    """Accumulates generated lines."""

    lines: list[str] = field(default_factory=list)
    # (generated line, spec file label, spec line), 1-based.
    line_map: list[tuple[int, str, int]] = field(default_factory=list)
    level: int = 0

    def line(self, text: str = "", *, source: Source = None) -> None:
        """Write one line at the current indentation (blank lines unindented)."""
        self.lines.append(f"{INDENT * self.level}{text}" if text else "")
        if source is not None:
            self.line_map.append((len(self.lines), *source))

    def block(self, text: str, *, source: Source = None) -> None:
        """Write several lines (already split) at the current indentation."""
        for piece in text.split("\n"):
            self.line(piece, source=source)

    def indent(self) -> _Indent:
        """Context manager that indents what is written inside it."""
        return _Indent(self)

    def text(self) -> str:
        """The generated source, ending with one newline."""
        return "\n".join(self.lines).rstrip("\n") + "\n"

    @property
    def indent_width(self) -> int:
        """Columns taken by the current indentation."""
        return len(INDENT) * self.level


class _Indent:
    def __init__(self, writer: CodeWriter) -> None:
        self.writer = writer

    def __enter__(self) -> None:
        self.writer.level += 1

    def __exit__(self, *exc: object) -> None:
        self.writer.level -= 1


def wrap_call(head: str, args: Sequence[str], tail: str, indent: int) -> str:
    """``head(args)tail`` on one line, or wrapped as ruff format would.

    ``head`` ends just before the opening parenthesis (e.g. ``self.fc = bnn.Linear``
    or ``def __init__``) and ``tail`` follows the closing one (e.g. ``-> None:``).
    """
    flat = f"{head}({', '.join(args)}){tail}"
    if indent + len(flat) <= LINE_LENGTH or not args:
        return flat
    inner = INDENT + ", ".join(args)
    if indent + len(inner) <= LINE_LENGTH and not any("\n" in a for a in args):
        return f"{head}(\n{inner}\n){tail}"
    body = "\n".join(f"{INDENT}{a}," for a in args)
    return f"{head}(\n{body}\n){tail}"


def py_string(text: str) -> str:
    """A double-quoted Python literal for ``text``; only printable ASCII is kept raw."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif " " <= char <= "~":
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return f'"{"".join(out)}"'


def docstring(text: str) -> str:
    """A triple-quoted docstring body; anything but printable ASCII is escaped."""
    lines = [line.rstrip() for line in text.strip().split("\n")]
    escaped = []
    for line in lines:
        literal = py_string(line)[1:-1].replace('\\"', '"')
        escaped.append(literal.replace('"""', '\\"\\"\\"'))
    body = "\n".join(escaped)
    if body.endswith('"'):
        body += " "
    if len(escaped) == 1:
        return f'"""{body}"""'
    return f'"""{body}\n"""'


def safe_comment(text: str) -> str:
    """Text fit for a ``#`` comment: printable ASCII only, one line."""
    kept = []
    for char in text:
        if " " <= char <= "~":
            kept.append(char)
        elif not unicodedata.category(char).startswith("C"):
            kept.append("?")
    return "".join(kept)


def span_label(span: ir.Span | None, file_label: str) -> str | None:
    """``digits.bnn:12`` for a span, or None."""
    if span is None:
        return None
    return f"{file_label}:{span.line}"


# --------------------------------------------------------------------------------------
# Rendering compile-time expressions
# --------------------------------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "/": 2, "%": 2}


def render_value(expr: ir.Expr, names: dict[str, str]) -> str:
    """Python source for a compile-time expression; ``names`` maps parameters."""
    if isinstance(expr, ir.Int):
        return str(expr.value)
    if isinstance(expr, ir.Float):
        return repr(expr.value)
    if isinstance(expr, ir.Bool):
        return "True" if expr.value else "False"
    if isinstance(expr, ir.NoneLit):
        return "None"
    if isinstance(expr, ir.Str):
        return py_string(expr.value)
    if isinstance(expr, ir.Name):
        return names[expr.id]
    if isinstance(expr, ir.Tuple):
        items = [render_value(item, names) for item in expr.items]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(expr, ir.Neg):
        inner = render_value(expr.operand, names)
        return f"-({inner})" if isinstance(expr.operand, ir.BinOp) else f"-{inner}"
    if isinstance(expr, ir.BinOp):
        mine = _PRECEDENCE[expr.op]
        left = render_value(expr.left, names)
        right = render_value(expr.right, names)
        if isinstance(expr.left, ir.BinOp) and _PRECEDENCE[expr.left.op] < mine:
            left = f"({left})"
        if isinstance(expr.right, ir.BinOp) and _PRECEDENCE[expr.right.op] <= mine:
            right = f"({right})"
        return f"{left} {expr.op} {right}"
    raise ValueError(f"cannot render {type(expr).__name__} as a value")
