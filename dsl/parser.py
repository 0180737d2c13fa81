"""Parsing ``.bnn`` text into a Lark tree; syntax errors become diagnostics.

The grammar lives in ``bnnc/grammars/bnn.lark``. After the first syntax error the
parser restarts at the next top-level declaration (a line that starts with
``network``, ``prior``, ``posterior``, ``estimator`` or ``from`` in column 1),
so one run reports the first error of every broken declaration.
"""

from __future__ import annotations

import functools
import re

from lark import Lark, Token, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from bnnc.compiler.diagnostics import Diagnostic
from bnnc.compiler.ir import Span
from bnnc.grammars import grammar_text

MAX_SYNTAX_ERRORS = 20
"""At most this many syntax errors are reported per file."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESTART = re.compile(r"^(?:network|prior|posterior|estimator|from)\b", re.MULTILINE)

# Terminals that can start an expression; an "expected" set containing them all
# is shown as "an expression".
_EXPRESSION_START = frozenset(
    {"NAME", "INT", "FLOAT", "STRING", "TRUE", "FALSE", "NONE", "AUTO", "MINUS", "LPAR"}
)
# Terminals that can continue an expression; shown as "an operator".
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "FLOORDIV", "PERCENT"})
_CONTINUATIONS = _OPERATORS | {"DOT", "LPAR"}
_DESCRIPTIONS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "end of file",
}


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    """The (cached) LALR parser for ``.bnn`` text."""
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        # Lark keys the cached LALR tables by grammar and options, in the temp
        # dir; it cuts ~150 ms off every `bnnc check`. Unwritable dirs are fine.
        cache=True,
    )


@functools.lru_cache(maxsize=1)
def _literals() -> dict[str, str]:
    """Terminal name -> literal text, for every fixed-string terminal."""
    return {
        t.name: t.pattern.value for t in parser().terminals if t.pattern.type == "str"
    }


@functools.lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """The reserved words: every fixed-string terminal that looks like a name."""
    return frozenset(v for v in _literals().values() if _NAME.match(v))


def _keyword_types() -> frozenset[str]:
    return frozenset(k for k, v in _literals().items() if _NAME.match(v))


def parse_tree(text: str, path: str) -> tuple[Tree | None, list[Diagnostic]]:
    """The parse tree of ``text``, or None and the syntax errors found."""
    try:
        return parser().parse(text), []
    except UnexpectedInput as error:
        first = error
    diagnostics = [_diagnose(first, text, path)]
    restarts = [text.count("\n", 0, m.start()) + 1 for m in _RESTART.finditer(text)]
    start_line = 1
    error = first
    while len(diagnostics) < MAX_SYNTAX_ERRORS:
        line, column = _position(error)
        later = [s for s in restarts if s > start_line and (s, 1) >= (line, column)]
        if not later:
            break
        start_line = later[0]
        offset = _line_offset(text, start_line)
        rest = "\n" * (start_line - 1) + text[offset:]  # keeps lines and columns
        try:
            parser().parse(rest)
        except UnexpectedInput as again:
            error = again
            diagnostics.append(_diagnose(again, rest, path))
        else:
            break
    return None, diagnostics


def _line_offset(text: str, line: int) -> int:
    offset = 0
    for _ in range(line - 1):
        offset = text.index("\n", offset) + 1
    return offset


def _position(error: UnexpectedInput) -> tuple[int, int]:
    if isinstance(error, UnexpectedToken):
        return _token_line(error.token), _token_column(error.token)
    return error.line or 1, error.column or 1


def _token_line(token: Token) -> int:
    return token.line if isinstance(token.line, int) else 1


def _token_column(token: Token) -> int:
    return token.column if isinstance(token.column, int) else 1


def _diagnose(error: UnexpectedInput, text: str, path: str) -> Diagnostic:
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, text, path)
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        return _unexpected_token(error, text, path)
    return _unexpected_end(error, text, path)


def _unexpected_character(
    error: UnexpectedCharacters, text: str, path: str
) -> Diagnostic:
    line, column = error.line, error.column
    char = text[error.pos_in_stream] if 0 <= error.pos_in_stream < len(text) else ""
    span = Span(
        file=path, line=line, column=column, end_line=line, end_column=column + 1
    )
    if char == '"':
        return Diagnostic(
            "BNN102",
            "unterminated string",
            span,
            hints=('a string ends with `"` on the same line',),
        )
    if char.isprintable() and not char.isspace() and char != "`":
        shown = f"`{char}`"
    else:
        shown = f"U+{ord(char):04X}" if char else "character"
    hints: tuple[str, ...] = ()
    if char == "'":
        hints = ('strings are written in double quotes: "..."',)
    elif char.isalpha() or char.isdigit():
        hints = ("names are made of ASCII letters, digits and `_`",)
    return Diagnostic("BNN102", f"unexpected character {shown}", span, hints=hints)


def _unexpected_token(error: UnexpectedToken, text: str, path: str) -> Diagnostic:
    token = error.token
    line, column = _token_line(token), _token_column(token)
    end_line = token.end_line if isinstance(token.end_line, int) else line
    end_column = (
        token.end_column if isinstance(token.end_column, int) else column + len(token)
    )
    span = Span(
        file=path, line=line, column=column, end_line=end_line, end_column=end_column
    )
    expected = _expected(error)
    message = f"unexpected {_describe(token)}"
    if expected:
        message += f", expected {expected}"
    hints: tuple[str, ...] = ()
    if token.type in _keyword_types() and "NAME" in _accepts(error):
        hints = (f"`{token}` is a reserved word; choose another name",)
    elif (
        token.type == "EQUAL" and "==" in text[token.start_pos - 1 : token.end_pos + 1]
    ):
        hints = ("there is no `==` in .bnn; `=` assigns",)
    return Diagnostic("BNN101", message, span, hints=hints)


def _unexpected_end(error: UnexpectedInput, text: str, path: str) -> Diagnostic:
    # Point just after the last token (Lark's $END borrows its position).
    line, column = _end_of_text(text)
    span = Span(
        file=path, line=line, column=column, end_line=line, end_column=column + 1
    )
    message = "unexpected end of file"
    expected = (
        _expected(error) if isinstance(error, UnexpectedToken | UnexpectedEOF) else ""
    )
    if expected:
        message += f", expected {expected}"
    return Diagnostic("BNN103", message, span)


def _end_of_text(text: str) -> tuple[int, int]:
    """Line and column just after the last character that is not a comment/space."""
    lines = text.split("\n")
    for number in range(len(lines), 0, -1):
        content = _strip_comment(lines[number - 1]).rstrip()
        if content:
            return number, len(content) + 1
    return 1, 1


def _strip_comment(line: str) -> str:
    in_string = False
    escaped = False
    for index, char in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            return line[:index]
    return line


def _accepts(error: UnexpectedInput) -> set[str]:
    accepts = getattr(error, "accepts", None) or getattr(error, "expected", None)
    return set(accepts or ())


def _expected(error: UnexpectedInput) -> str:
    names = _accepts(error)
    items: list[str] = []
    operator = False
    if names >= _EXPRESSION_START:
        items.append("an expression")
        names -= _EXPRESSION_START
    elif names >= _OPERATORS:
        operator = True
        names -= _CONTINUATIONS
    literals = _literals()
    keyword_types = _keyword_types()
    for name in sorted(names, key=lambda n: (n in keyword_types, n not in literals, n)):
        if name in literals:
            items.append(f"`{literals[name]}`")
        elif name in _DESCRIPTIONS:
            items.append(_DESCRIPTIONS[name])
    if operator:
        items.append("an operator")
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    shown = ", ".join(items[:8]) + (", ..." if len(items) > 8 else "")
    return f"one of {shown}"


def _describe(token: Token) -> str:
    if token.type in _keyword_types():
        return f"keyword `{token}`"
    if token.type == "NAME":
        return f"name `{token}`"
    if token.type in ("INT", "FLOAT"):
        return f"number `{token}`"
    if token.type == "STRING":
        return f"string {token}"
    return f"`{token}`"
