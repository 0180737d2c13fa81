"""Diagnostics: located, coded error and warning messages.

Every problem bnnc finds in user input becomes a :class:`Diagnostic` rendered as::

    path:line:col: error[BNN201]: unknown layer or op `conv3`
      |
    7 |         x = conv3(x)
      |             ^^^^^
      = hint: did you mean `conv2`?

Codes are documented in ``docs/errors.md``; :data:`CODES` is the registry of
codes and their one-line titles, so a test can check the two agree.

Everything a diagnostic prints that can come from the input (file names,
messages quoting names or strings, hints, source lines) goes through
:func:`printable`: control characters and other non-printable characters are
escaped (``\x1b``, ``\x07``, ``\u202e``), so a hostile spec cannot send
terminal escape sequences or bidi overrides to the terminal; source excerpts
keep the caret under the right column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bnnc.compiler.ir import Span

Severity = Literal["error", "warning"]

CODES: dict[str, str] = {
    # 0xx: reading files
    "BNN001": "file cannot be read",
    "BNN002": "file is not valid UTF-8",
    "BNN003": "imported file not found",
    "BNN004": "import cycle",
    "BNN005": "input too large or too deeply nested",
    # 1xx: syntax
    "BNN101": "syntax error: unexpected token",
    "BNN102": "syntax error: unexpected character",
    "BNN103": "syntax error: unexpected end of file",
    "BNN104": "invalid literal",
    "BNN105": "invalid prior or posterior setting",
    "BNN106": "invalid input type",
    # 2xx: names
    "BNN201": "unknown name",
    "BNN202": "duplicate definition",
    "BNN203": "unknown layer op or network",
    "BNN204": "unknown argument",
    "BNN205": "missing required argument",
    "BNN206": "argument given twice",
    "BNN207": "too many positional arguments",
    "BNN208": "name used before it is assigned",
    "BNN209": "reserved name",
    "BNN210": "unused name",
    "BNN211": "imported name not found",
    "BNN212": "network instantiates itself (cycle)",
    # 3xx: types and argument values
    "BNN301": "wrong argument type",
    "BNN302": "argument out of range",
    "BNN303": "inconsistent arguments",
    "BNN304": "`auto` not allowed here",
    "BNN305": "division by zero or non-integer size",
    "BNN306": "op cannot be fixed or given a prior",
    "BNN307": "network has no return",
    "BNN308": "statement after return",
    "BNN309": "wrong dtype",
    "BNN310": "unknown or unsupported gradient estimator",
    # 4xx: shapes
    "BNN401": "wrong number of dimensions",
    "BNN402": "size mismatch",
    "BNN403": "`auto` cannot be inferred",
    "BNN404": "spatial size too small",
    "BNN405": "shapes cannot be combined",
    "BNN406": "dimension out of range",
    "BNN407": "reshape size mismatch",
    # 5xx: command line and output
    "BNN501": "refusing to overwrite a file bnnc did not generate",
    "BNN502": "output cannot be written",
    "BNN503": "file cannot be formatted",
    # 6xx: pedantic warnings (bnnc.compiler.pedantic)
    "BNN601": "prior std far from the layer's fan-in scale",
    "BNN602": "posterior starts wider than the prior",
    "BNN603": "layer result never reaches an output",
    "BNN604": "network has no Bayesian layer",
}


@dataclass(frozen=True)
class Diagnostic:
    """One message about the input, with its location and optional hints."""

    code: str
    message: str
    span: Span | None = None
    severity: Severity = "error"
    hints: tuple[str, ...] = ()
    file: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unregistered diagnostic code {self.code}")

    @property
    def path(self) -> str:
        """The file the diagnostic is about (from the span when it has one)."""
        if self.span is not None and self.span.file:
            return self.span.file
        return self.file or "<input>"

    def headline(self) -> str:
        """``path:line:col: error[BNNnnn]: message``, on one printable line."""
        where = printable(self.path)
        if self.span is not None:
            where = f"{where}:{self.span.line}:{self.span.column}"
        return f"{where}: {self.severity}[{self.code}]: {printable(self.message)}"

    def render(self, source: str | None = None) -> str:
        """The headline, the source line with a caret under the span, and hints."""
        lines = [self.headline()]
        if self.span is not None and source is not None:
            lines.extend(_excerpt(source, self.span))
        lines.extend(f"  = hint: {printable(hint)}" for hint in self.hints)
        return "\n".join(lines)


def _escaped(char: str) -> str:
    """A non-printable character as Python writes it in a string literal."""
    return repr(char)[1:-1]  # \x1b, \x07, \n, \u202e, \U000e0001, \ud800


def printable(text: str) -> str:
    """``text`` safe to print on a terminal, on one line.

    Characters that are not printable (``str.isprintable``: C0 and C1 control
    characters such as ESC, BEL, CR, newline and tab, DEL, bidi overrides and
    other format characters, line separators, lone surrogates) are written as
    escapes (``\x1b``); everything else, non-ASCII letters included, is kept.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


_EXCERPT_WIDTH = 120


def _excerpt_line(line: str) -> tuple[str, list[int]]:
    """The printable form of a source line and where each character starts in it.

    A tab becomes one space, other non-printable characters their escapes; the
    list has one entry per character of ``line`` plus one for its end, so a
    source column maps to the column of the printed text.
    """
    pieces = [" " if c == "\t" else c if c.isprintable() else _escaped(c) for c in line]
    starts = [0]
    for piece in pieces:
        starts.append(starts[-1] + len(piece))
    return "".join(pieces), starts


def _excerpt(source: str, span: Span) -> list[str]:
    # Only "\n" ends a line for the parser; splitlines() would also split on
    # form feeds or U+2028 and put the caret on the wrong line.
    text_lines = [line.removesuffix("\r") for line in source.split("\n")]
    if not 1 <= span.line <= len(text_lines):
        return []
    text, starts = _excerpt_line(text_lines[span.line - 1])

    def column(index: int) -> int:  # printed column of character ``index``
        last = len(starts) - 1
        return starts[min(index, last)] + max(index - last, 0)

    number = str(span.line)
    gutter = " " * len(number)
    start = column(max(span.column - 1, 0))
    if span.end_line == span.line:
        width = max(column(max(span.end_column - 1, 0)) - start, 1)
    else:
        width = max(len(text) - start, 1)
    if len(text) > _EXCERPT_WIDTH:  # show a window around the caret
        left = max(0, min(start - 20, len(text) - _EXCERPT_WIDTH))
        text = text[left : left + _EXCERPT_WIDTH]
        start -= left
        if left:
            text, start = "..." + text[3:], start
    width = min(width, max(len(text) - start, 1))
    return [
        f"{gutter} |",
        f"{number} | {text}",
        f"{gutter} | {' ' * start}{'^' * width}",
    ]


class CompileError(Exception):
    """Raised when input has errors; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: dict[str, str]):
        self.diagnostics = sort(diagnostics)
        self.sources = dict(sources)
        super().__init__(self.render())

    def render(self) -> str:
        """All diagnostics, rendered with source excerpts."""
        return render_all(self.diagnostics, self.sources)


def render_all(diagnostics: Iterable[Diagnostic], sources: dict[str, str]) -> str:
    """Render diagnostics in a stable order (file, line, column, code)."""
    return "\n".join(d.render(sources.get(d.path)) for d in sort(diagnostics))


def sort(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in source order, duplicates removed."""
    seen: set[tuple[object, ...]] = set()
    unique = []
    for d in diagnostics:
        key = (d.path, d.span, d.code, d.message)
        if key not in seen:
            seen.add(key)
            unique.append(d)

    def order(d: Diagnostic) -> tuple[str, int, int, str]:
        line, col = (d.span.line, d.span.column) if d.span else (0, 0)
        return (d.path, line, col, d.code)

    return sorted(unique, key=order)


def did_you_mean(name: str, candidates: Iterable[str]) -> tuple[str, ...]:
    """A hint naming the closest candidate, if one is close enough."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return (f"did you mean `{close[0]}`?",) if close else ()


@dataclass
class DiagnosticSink:
    """Collects diagnostics so that all independent errors are reported."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None, *hints: str) -> None:
        """Record an error."""
        self.diagnostics.append(Diagnostic(code, message, span, "error", hints))

    def warning(self, code: str, message: str, span: Span | None, *hints: str) -> None:
        """Record a warning."""
        self.diagnostics.append(Diagnostic(code, message, span, "warning", hints))

    @property
    def has_errors(self) -> bool:
        """Whether any error (not warning) was recorded."""
        return any(d.severity == "error" for d in self.diagnostics)
