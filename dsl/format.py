"""``bnnc fmt``: the canonical formatting of ``.bnn`` source.

>>> from bnnc.dsl.format import format_source
>>> print(format_source("network M(d:int)=sequential{Linear( d,2 ),relu}"), end="")
network M(d: int) = sequential {
    Linear(d, 2), relu
}

:func:`format_source` formats text, :func:`format_file` a file. Both parse
with the normal front end first, so invalid input raises
:class:`~bnnc.compiler.diagnostics.CompileError` (and nothing else); the
result is parsed again and must give the same IR (spans aside, docstrings and
layer comments included), or :class:`FormatterError` is raised instead of
returning text that would mean something else.

The style (``docs/language.md``, "Formatting"):

- 4-space indentation, one declaration or statement per line, `;` dropped,
  LF line ends, no trailing whitespace, one final newline.
- Spaces around `=` in statements and parameter defaults (`d: int = 1`) and
  around binary operators (`2 * width`); none in keyword arguments
  (`p=0.1`); one space after each comma. Parentheses only where precedence
  needs them (and around a negated negation, `-(-x)`). Numbers, strings and
  names are kept as written, as are `fixed`, priors and the choice between
  positional and keyword arguments, empty `()` after a network name or a
  sequential item, and `sequential` versus full networks.
- Layer names in a `layers` block, the names of consecutive `input`
  declarations and the `prior` / `posterior` keywords of consecutive defaults
  are aligned (a blank line starts a new alignment group).
- Blank lines: at most one in a row; none at the start or end of a block;
  exactly one around every top-level network and between top-level items of
  different kinds (imports, defaults) and between the different kinds of
  network members (defaults, inputs, `layers`, `forward`); elsewhere the
  author's choice between none and one is kept.
- A line longer than 88 columns (trailing comments not counted) breaks its
  outermost bracket first: the arguments fill lines aligned after the
  bracket; where one does not fit, or where a comment sits inside the
  brackets, one argument per line, indented 4 more, with a trailing comma and
  the closing bracket on its own line.
- Sequential items keep the author's lines (an item stays on the line of the
  item before it when it started on the line where that one ended); each
  line ends with a comma, the last one too unless the chain is one line.
- Every comment is kept. Comment lines are re-indented to their block; a
  comment after code stays after it, at its column, or two spaces after the
  code where the code now reaches further. Comments in places that have no
  line of their own (inside an expression) move to a line of their own above
  the statement or argument; comments between a declaration's keyword and its
  `{` move to the top of the block. Docstrings (comment lines directly above
  `network`) stay directly above it, and a layer's comment stays on its line.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lark import Token, Tree

from bnnc.compiler import ir
from bnnc.compiler.diagnostics import CompileError
from bnnc.dsl import source
from bnnc.dsl.loader import parse
from bnnc.dsl.parser import parse_tree

__all__ = [
    "INDENT",
    "LINE_LENGTH",
    "FormatResult",
    "FormatterError",
    "format_file",
    "format_source",
    "write_atomic",
]

LINE_LENGTH = 88
"""Lines longer than this (trailing comments not counted) are wrapped."""

INDENT = 4
"""Spaces per indentation level."""

_BINARY = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "floordiv": "//",
    "truediv": "/",
    "mod": "%",
}
_PRECEDENCE = {
    "add": 1,
    "sub": 1,
    "mul": 2,
    "floordiv": 2,
    "truediv": 2,
    "mod": 2,
    "neg": 3,
}
_ATOM = 4
_KEYWORD_LEAVES = ("true", "false", "none", "auto")
_TOKEN_LEAVES = ("int", "float", "string", "name")
_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_BLANK_LINE = re.compile(r"[ \t\r\f]*\Z")
_WHITESPACE = re.compile(r"\s+")


class FormatterError(RuntimeError):
    """The formatter failed on valid input (a bug in bnnc, not in the input).

    Raised rather than returning text whose IR differs from the input's.
    ``offset``, where known, is the offset in the input of the text it failed
    on (``bnnc fmt`` reports the failure there).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class FormatResult:
    """The outcome of formatting one file."""

    path: str
    original: str
    """The file's text as read (decoded; a byte-order mark dropped)."""
    formatted: str
    changed: bool
    """Whether the file's bytes differ from the formatted text's."""


def format_source(text: str, path: str = "<input>") -> str:
    """The canonical formatting of the ``.bnn`` source ``text``.

    Raises :class:`~bnnc.compiler.diagnostics.CompileError` (as
    :func:`bnnc.dsl.parse` does) when ``text`` is not a valid ``.bnn`` file.
    """
    program = parse(text, path)
    return _format_parsed(text, path, program)


def format_file(path: str | Path) -> FormatResult:
    """Read and format one file; nothing is written.

    Raises :class:`~bnnc.compiler.diagnostics.CompileError` when the file cannot
    be read or is not valid.
    """
    name = str(path)
    read = source.read(name)
    if isinstance(read, source.ReadFailure):
        sources = {name: read.text} if read.text is not None else {}
        raise CompileError([read.diagnostic], sources)
    formatted = format_source(read.text, name)
    try:
        raw = Path(name).read_bytes()
    except OSError:
        raw = b""
    return FormatResult(
        path=name,
        original=read.text,
        formatted=formatted,
        changed=raw != formatted.encode("utf-8"),
    )


def write_atomic(path: str | Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` (UTF-8, LF) atomically.

    The text goes to a temporary file in the same directory that then replaces
    ``path``, keeping its permission bits; ``OSError`` on failure, with
    ``path`` untouched.
    """
    target = Path(path)
    directory = target.parent
    fd, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        with contextlib.suppress(OSError):
            os.chmod(temporary, target.stat().st_mode & 0o7777)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _format_parsed(text: str, path: str, program: ir.Program) -> str:
    tree, _ = parse_tree(text, path)
    if tree is None:  # not expected: `parse` accepted the text
        raise FormatterError(f"{path}: the parser rejected text it had accepted")
    formatted = _Formatter(text, tree).program()
    try:
        again = parse(formatted, path)
    except CompileError as error:
        raise FormatterError(
            f"{path}: the formatted text does not parse:\n{error.render()}"
        ) from error
    if ir.without_locations(again) != ir.without_locations(program):
        raise FormatterError(f"{path}: formatting would change the program's meaning")
    return formatted


# --- layout primitives --------------------------------------------------------------


@dataclass(frozen=True)
class _Comment:
    start: int  # offset of the `#`
    line: int  # 1-based
    column: int  # 0-based column of the `#` in its line; -1 after a tab
    text: str  # from the `#`, trailing whitespace dropped
    whole_line: bool  # nothing but whitespace before it on its line
    code: str  # what precedes it on its line, whitespace removed


@dataclass
class _Line:
    """One output line: code and an optional trailing comment.

    In a layout returned by a render method the first line continues the
    current line (no indentation of its own); later lines are complete.
    """

    code: str
    comment: _Comment | None = None


@dataclass(frozen=True)
class _Seq:
    """A bracketed, comma-separated list in the source."""

    opener: int  # offset of the opening bracket
    closer: int  # offset of the closing bracket
    elements: tuple[Tree, ...]
    brackets: str = "()"
    tuple_: bool = False  # a one-element tuple keeps its comma


@dataclass
class _Item:
    """A block member: a declaration, statement or sequential line group."""

    kind: str
    start: int
    end: int
    first_line: int
    last_line: int
    render: Callable[[int, int], list[_Line]]  # (indent, alignment width)
    align: int = 0
    claimed: _Comment | None = None  # a layer comment that must end its line


@dataclass
class _Entry:
    first_line: int
    last_line: int
    comment: _Comment | None = None
    item: int | None = None
    group: int | None = None  # index of the item whose leading part this is
    group_start: bool = False
    blank_before: bool = False


def _comment_column(comment: _Comment, code: str) -> int:
    """Where a comment after ``code`` starts.

    At its column in the input when it followed the same code there (spaces
    aside) and still leaves two spaces; otherwise two spaces after the code.
    """
    least = len(code) + 2
    if comment.column >= least and comment.code == _WHITESPACE.sub("", code):
        return comment.column
    return least


def _start(node: Tree | Token) -> int:
    if isinstance(node, Token):
        return node.start_pos or 0
    return node.meta.start_pos


def _end(node: Tree | Token) -> int:
    if isinstance(node, Token):
        return node.end_pos or 0
    return node.meta.end_pos


def _trees(children: Iterable[Tree | Token], data: str | None = None) -> list[Tree]:
    return [
        c for c in children if isinstance(c, Tree) and (data is None or c.data == data)
    ]


def _precedence(node: Tree) -> int:
    return _PRECEDENCE.get(node.data, _ATOM)


def _join(first: list[_Line], separator: str, second: list[_Line]) -> list[_Line]:
    """``second`` continuing the last line of ``first`` after ``separator``."""
    last = first[-1]
    if last.comment is not None:
        raise FormatterError("code placed after a comment", last.comment.start)
    joined = _Line(last.code + separator + second[0].code, second[0].comment)
    return [*first[:-1], joined, *second[1:]]


def _after(lines: list[_Line], column: int, indent: int) -> tuple[int, int]:
    """The column after ``lines`` (starting at ``column``) and that line's indent."""
    if len(lines) == 1:
        return column + len(lines[0].code), indent
    last = lines[-1].code
    return len(last), len(last) - len(last.lstrip(" "))


def _indented(lines: list[_Line], indent: int) -> list[_Line]:
    first = _Line(" " * indent + lines[0].code, lines[0].comment)
    return [first, *lines[1:]]


class _Formatter:
    """Formats one parsed file; comments are recovered from the source text."""

    def __init__(self, text: str, tree: Tree) -> None:
        self.text = text
        self.tree = tree
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
        blank = [0]
        for line in text.split("\n"):
            blank.append(blank[-1] + (1 if _BLANK_LINE.match(line) else 0))
        self.blank_prefix = blank  # blank lines among lines 1..i
        self.comments = self.scan_comments()
        self.by_line = {c.line: c for c in self.comments}
        self.claims: dict[int, _Comment] = {}  # id(node) -> comment ending its line
        self.claim_layer_comments()
        claimed = {c.start for c in self.claims.values()}
        self.free = [c for c in self.comments if c.start not in claimed]
        self.free_starts = [c.start for c in self.free]
        self.emitted: set[int] = set()
        self.flat_cache: dict[int, str] = {}
        self.region_cache: dict[int, list[tuple[int, int]]] = {}

    # --- source positions and comments ----------------------------------------------
    def line(self, offset: int) -> int:
        """The 1-based line of ``offset``."""
        return bisect.bisect_right(self.line_starts, offset)

    def last_line(self, node: Tree | Token) -> int:
        return self.line(max(_end(node) - 1, _start(node)))

    def blank_between(self, above: int, below: int) -> bool:
        """Whether a blank line lies strictly between lines ``above`` and ``below``."""
        if below - 1 <= above:
            return False
        return self.blank_prefix[below - 1] > self.blank_prefix[above]

    def scan_comments(self) -> list[_Comment]:
        comments: list[_Comment] = []
        for match in _COMMENT_OR_STRING.finditer(self.text):
            if match.group().startswith('"'):
                continue
            start = match.start()
            line = self.line(start)
            before = self.text[self.line_starts[line - 1] : start]
            comments.append(
                _Comment(
                    start=start,
                    line=line,
                    column=-1 if "\t" in before else len(before),
                    text=match.group().rstrip(),
                    whole_line=not before.strip(),
                    code=_WHITESPACE.sub("", before),
                )
            )
        return comments

    def comment_after(self, node: Tree | Token) -> _Comment | None:
        """The comment after ``node`` on the line where it ends."""
        comment = self.by_line.get(self.last_line(node))
        if comment is None or comment.start < _end(node):
            return None
        return comment

    def claim_layer_comments(self) -> None:
        """Comments that the IR makes layer comments stay on the layer's line.

        As in :mod:`bnnc.dsl.lower`: the comment on the line where a layer
        declaration ends, after it (for a sequential item, only when no later
        item starts on that line). Here whole sequential line groups claim the
        comment after their last item.
        """
        for network in _trees(self.tree.children):
            if network.data == "network":
                body = _trees(network.children, "network_body")[0]
                for block in _trees(body.children, "layers_block"):
                    for layer in _trees(block.children, "layer_decl"):
                        comment = self.comment_after(layer)
                        if comment is not None:
                            self.claims[id(layer)] = comment
            elif network.data == "sequential_network":
                body = _trees(network.children, "sequential_body")[0]
                for group in self.sequential_groups(body):
                    comment = self.comment_after(group[-1])
                    if comment is not None:
                        self.claims[id(group[-1])] = comment

    def free_in(self, low: int, high: int) -> list[_Comment]:
        """Unclaimed comments starting in ``[low, high)``."""
        first = bisect.bisect_left(self.free_starts, low)
        last = bisect.bisect_left(self.free_starts, high)
        return self.free[first:last]

    def loose(
        self, low: int, high: int, regions: list[tuple[int, int]]
    ) -> list[_Comment]:
        """Comments in ``[low, high)`` outside every bracket region."""
        return [
            c
            for c in self.free_in(low, high)
            if not any(a <= c.start < b for a, b in regions)
        ]

    def emit(self, comment: _Comment) -> _Comment:
        self.emitted.add(comment.start)
        return comment

    def comment_line(self, comment: _Comment, indent: int) -> _Line:
        self.emit(comment)
        return _Line(" " * indent + comment.text)

    def skip(self, position: int) -> int:
        """The offset of the next token at or after ``position``."""
        text = self.text
        while position < len(text):
            char = text[position]
            if char in " \t\r\n\f":
                position += 1
            elif char == "#":
                newline = text.find("\n", position)
                position = len(text) if newline < 0 else newline
            else:
                break
        return position

    def bracket(self, position: int, char: str) -> int:
        """The offset of ``char``, the next token at or after ``position``."""
        found = self.skip(position)
        if self.text[found : found + 1] != char:
            raise FormatterError(f"expected `{char}` at offset {found}", found)
        return found

    # --- brackets in expressions -----------------------------------------------------
    def call_seq(self, node: Tree) -> _Seq:
        opener = self.bracket(_end(node.children[0]), "(")
        return _Seq(opener, _end(node) - 1, tuple(_trees(node.children[1:])))

    def tuple_seq(self, node: Tree) -> _Seq:
        items = tuple(_trees(node.children))
        return _Seq(
            self.bracket(_start(node), "("),
            _end(node) - 1,
            items,
            tuple_=len(items) == 1,
        )

    def regions(self, node: Tree | Token) -> list[tuple[int, int]]:
        """The outermost bracket regions (opener to closer) inside ``node``."""
        if isinstance(node, Token):
            return []
        key = id(node)
        cached = self.region_cache.get(key)
        if cached is not None:
            return cached
        if node.data == "call":
            result = [(self.call_seq(node).opener, _end(node))]
        elif node.data == "tuple":
            result = [(_start(node), _end(node))]
        else:
            result = [r for child in _trees(node.children) for r in self.regions(child)]
        self.region_cache[key] = result
        return result

    def flat_ok(self, node: Tree) -> bool:
        """Whether no comment sits inside a bracket of ``node``."""
        return not any(self.free_in(a, b) for a, b in self.regions(node))

    # --- flat text --------------------------------------------------------------------
    def flat(self, node: Tree) -> str:
        """``node`` on one line (comments aside)."""
        key = id(node)
        cached = self.flat_cache.get(key)
        if cached is None:
            cached = self.flat_cache[key] = self._flat(node)
        return cached

    def _flat(self, node: Tree) -> str:
        kind = node.data
        children = node.children
        if kind in _BINARY:
            left, right = children
            precedence = _PRECEDENCE[kind]
            return (
                f"{self.flat_part(left, _precedence(left) < precedence)} "
                f"{_BINARY[kind]} "
                f"{self.flat_part(right, _precedence(right) <= precedence)}"
            )
        if kind == "neg":
            operand = children[0]
            return "-" + self.flat_part(operand, _precedence(operand) <= _ATOM - 1)
        if kind == "getattr":
            target, name = children
            return f"{self.flat_part(target, self.attr_parens(target))}.{name}"
        if kind == "call":
            args = ", ".join(self.flat_element(c) for c in _trees(children))
            return f"{children[0]}({args})"
        if kind == "tuple":
            items = [self.flat(c) for c in _trees(children)]
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        if kind in _KEYWORD_LEAVES:
            return kind
        if kind in _TOKEN_LEAVES:
            return str(children[0])
        return self.flat_element(node)

    def flat_part(self, node: Tree, parens: bool) -> str:
        text = self.flat(node)
        return f"({text})" if parens else text

    @staticmethod
    def attr_parens(target: Tree) -> bool:
        return _precedence(target) < _ATOM or target.data in ("int", "float")

    def flat_element(self, node: Tree) -> str:
        """An argument, parameter or named output on one line."""
        kind = node.data
        if kind in ("kwarg", "named_output"):
            key, value = node.children
            return f"{key}={self.flat(value)}"
        if kind == "param":
            name, type_name, *default = node.children
            text = f"{name}: {type_name}"
            return f"{text} = {self.flat(default[0])}" if default else text
        return self.flat(node)

    # --- broken layouts ---------------------------------------------------------------
    def render(self, node: Tree, column: int, indent: int, tail: int) -> list[_Line]:
        """``node`` starting at ``column`` on a line indented by ``indent``.

        ``tail`` columns must stay free after it on its last line.
        """
        if self.flat_ok(node):
            text = self.flat(node)
            if column + len(text) + tail <= LINE_LENGTH:
                return [_Line(text)]
        kind = node.data
        if kind == "call":
            seq = self.call_seq(node)
            return self.render_seq(str(node.children[0]), seq, column, indent, tail)
        if kind == "tuple":
            return self.render_seq("", self.tuple_seq(node), column, indent, tail)
        if kind in _BINARY:
            return self.render_chain(node, column, indent, tail)
        if kind == "neg":
            operand = node.children[0]
            parens = _precedence(operand) <= _ATOM - 1
            inner = self.render_part(operand, parens, column + 1, indent, tail)
            return _join([_Line("-")], "", inner)
        if kind == "getattr":
            target, name = node.children
            suffix = f".{name}"
            inner = self.render_part(
                target, self.attr_parens(target), column, indent, tail + len(suffix)
            )
            return _join(inner, suffix, [_Line("")])
        if kind in ("kwarg", "named_output", "param"):
            return self.render_element(node, column, indent, tail)
        return [_Line(self.flat(node))]

    def render_part(
        self, node: Tree, parens: bool, column: int, indent: int, tail: int
    ) -> list[_Line]:
        if not parens:
            return self.render(node, column, indent, tail)
        inner = self.render(node, column + 1, indent, tail + 1)
        return _join(_join([_Line("(")], "", inner), ")", [_Line("")])

    def chain(self, node: Tree) -> list[tuple[str, Tree, bool]]:
        """The operands of a chain of equally binding operators, left to right.

        Each comes with the operator before it ("" for the first) and whether it
        needs parentheses.
        """
        precedence = _PRECEDENCE[node.data]
        parts: list[tuple[str, Tree, bool]] = []
        while node.data in _BINARY and _PRECEDENCE[node.data] == precedence:
            left, right = node.children
            parts.append((_BINARY[node.data], right, _precedence(right) <= precedence))
            node = left
        parts.append(("", node, _precedence(node) < precedence))
        parts.reverse()
        return parts

    def render_chain(
        self, node: Tree, column: int, indent: int, tail: int
    ) -> list[_Line]:
        """Operands filling lines; a continuation line starts with its operator."""
        parts = self.chain(node)
        continuation = indent + INDENT
        _, first, parens = parts[0]
        lines = self.render_part(first, parens, column, indent, 0)
        for index, (operator, operand, parens) in enumerate(parts[1:], 1):
            end = tail if index == len(parts) - 1 else 0
            if self.flat_ok(operand):
                text = f" {operator} {self.flat_part(operand, parens)}"
                at, _ = _after(lines, column, indent)
                if at + len(text) + end <= LINE_LENGTH:
                    lines = _join(lines, text, [_Line("")])
                    continue
            head = f"{operator} "
            inner = self.render_part(
                operand, parens, continuation + len(head), continuation, end
            )
            lines.extend(_indented(_join([_Line(head)], "", inner), continuation))
        return lines

    def render_element(
        self, node: Tree, column: int, indent: int, tail: int
    ) -> list[_Line]:
        kind = node.data
        if kind in ("kwarg", "named_output"):
            key, value = node.children
            head = f"{key}="
            inner = self.render(value, column + len(head), indent, tail)
            return _join([_Line(head)], "", inner)
        if kind == "param":
            name, type_name, *default = node.children
            head = f"{name}: {type_name}"
            if not default:
                return [_Line(head)]
            head += " = "
            inner = self.render(default[0], column + len(head), indent, tail)
            return _join([_Line(head)], "", inner)
        return self.render(node, column, indent, tail)

    def render_seq(
        self, prefix: str, seq: _Seq, column: int, indent: int, tail: int
    ) -> list[_Line]:
        """``prefix`` and a bracketed list: on one line, filled or exploded."""
        opener, closer = seq.brackets
        if not self.free_in(seq.opener, seq.closer + 1):
            flats = [self.flat_element(e) for e in seq.elements]
            if seq.tuple_:
                flats[0] += ","
            one = f"{prefix}{opener}{', '.join(flats)}{closer}"
            if column + len(one) + tail <= LINE_LENGTH or not flats:
                return [_Line(one)]
            filled = self.fill(prefix + opener, flats, closer, column, tail)
            if filled is not None:
                return filled
        return self.explode(prefix, seq, indent)

    @staticmethod
    def fill(
        head: str, flats: list[str], closer: str, column: int, tail: int
    ) -> list[_Line] | None:
        """Elements filling lines aligned after the opening bracket, or None."""
        inner = column + len(head)
        rows: list[list[str]] = [[]]
        for index, flat in enumerate(flats):
            last = index == len(flats) - 1
            piece = flat + (closer if last else ",")
            need = len(piece) + (tail if last else 0)
            row = rows[-1]
            if row and inner + len(" ".join(row)) + 1 + need <= LINE_LENGTH:
                row.append(piece)
                continue
            if inner + need > LINE_LENGTH:
                return None
            if row:
                rows.append([piece])
            else:
                row.append(piece)
        lines = [_Line(head + " ".join(rows[0]))]
        lines.extend(_Line(" " * inner + " ".join(row)) for row in rows[1:])
        return lines

    def explode(self, prefix: str, seq: _Seq, indent: int) -> list[_Line]:
        """One element per line, indented, with trailing commas; comments kept."""
        opener, closer = seq.brackets
        inner = indent + INDENT
        lines = [_Line(prefix + opener)]
        elements = seq.elements
        opener_line = self.line(seq.opener)
        for index in range(len(elements) + 1):
            low = seq.opener + 1 if index == 0 else _end(elements[index - 1])
            high = _start(elements[index]) if index < len(elements) else seq.closer
            before_line = (
                opener_line if index == 0 else self.last_line(elements[index - 1])
            )
            for position, comment in enumerate(self.free_in(low, high)):
                if position == 0 and comment.line == before_line:
                    lines[-1].comment = self.emit(comment)
                else:
                    lines.append(self.comment_line(comment, inner))
            if index == len(elements):
                break
            element = elements[index]
            for comment in self.loose(
                _start(element), _end(element), self.regions(element)
            ):
                lines.append(self.comment_line(comment, inner))
            rendered = _indented(self.render_element(element, inner, inner, 1), inner)
            rendered[-1].code += ","
            lines.extend(rendered)
        lines.append(_Line(" " * indent + closer))
        return lines

    # --- blocks -----------------------------------------------------------------------
    def block(
        self,
        items: list[_Item],
        low: int,
        high: int,
        opener: int | None,
        indent: int,
        header: list[_Comment],
        forced: Callable[[_Item, _Item], bool],
    ) -> tuple[_Comment | None, list[_Line]]:
        """The lines of a block's members and comments; the comment after ``{``."""
        starts = [item.start for item in items]
        ends = [item.end for item in items]
        leading: list[list[_Comment]] = [[] for _ in range(len(items) + 1)]
        trailing: list[_Comment | None] = [None] * len(items)
        opener_comment: _Comment | None = None
        opener_line = self.line(opener) if opener is not None else None
        for comment in self.free_in(low, high):
            inside = bisect.bisect_right(starts, comment.start) - 1
            if inside >= 0 and comment.start < ends[inside]:
                continue  # the item places it
            before = bisect.bisect_right(ends, comment.start) - 1
            if (
                before >= 0
                and comment.line == items[before].last_line
                and trailing[before] is None
                and items[before].claimed is None
            ):
                trailing[before] = comment
            elif before < 0 and comment.line == opener_line and opener_comment is None:
                opener_comment = comment
            else:
                leading[before + 1].append(comment)

        entries = [_Entry(c.line, c.line, comment=c) for c in header]
        item_entry: list[int] = []
        for index, item in enumerate(items):
            group = [
                _Entry(c.line, c.line, comment=c, group=index) for c in leading[index]
            ]
            group.append(
                _Entry(item.first_line, item.last_line, item=index, group=index)
            )
            group[0].group_start = True
            item_entry.append(len(entries) + len(group) - 1)
            entries.extend(group)
        entries.extend(_Entry(c.line, c.line, comment=c) for c in leading[-1])

        for index in range(1, len(entries)):
            entry = entries[index]
            entry.blank_before = self.blank_between(
                entries[index - 1].last_line, entry.first_line
            )
            group = entry.group
            if (
                entry.group_start
                and group is not None
                and group > 0
                and forced(items[group - 1], items[group])
            ):
                entry.blank_before = True
        for index, item in enumerate(items):
            if item.kind == "network":
                self.separate_docstring(
                    item, leading[index], entries, item_entry[index]
                )

        widths = self.alignment(items, entries, item_entry)
        lines: list[_Line] = []
        for entry in entries:
            if entry.blank_before and lines:
                lines.append(_Line(""))
            if entry.comment is not None:
                lines.append(self.comment_line(entry.comment, indent))
                continue
            assert entry.item is not None
            item = items[entry.item]
            rendered = item.render(indent, widths[entry.item])
            comment = item.claimed or trailing[entry.item]
            if comment is not None:
                if rendered[-1].comment is not None:
                    raise FormatterError("two comments for one line", comment.start)
                rendered[-1].comment = self.emit(comment)
            lines.extend(rendered)
        if opener_comment is not None:
            self.emit(opener_comment)
        return opener_comment, lines

    def separate_docstring(
        self,
        item: _Item,
        leading: list[_Comment],
        entries: list[_Entry],
        item_entry: int,
    ) -> None:
        """Keep exactly the input's docstring lines directly above ``network``.

        The docstring is the run of whole-line comments on the lines right
        above the `network` keyword, when the keyword starts its line. Comments
        before that run get a blank line after them.
        """
        run = 0
        line_start = self.line_starts[item.first_line - 1]
        if not self.text[line_start : item.start].strip():
            line = item.first_line - 1
            while line in self.by_line and self.by_line[line].whole_line:
                run += 1
                line -= 1
        if run > len(leading) or any(
            c.line != item.first_line - run + i
            for i, c in enumerate(leading[len(leading) - run :])
        ):
            raise FormatterError(
                "a docstring is not directly above its network", item.start
            )
        if run < len(leading):
            entries[item_entry - run].blank_before = True

    @staticmethod
    def alignment(
        items: list[_Item], entries: list[_Entry], item_entry: list[int]
    ) -> list[int]:
        """Per item, the width its name is padded to (0: no alignment)."""
        widths = [0] * len(items)
        section: list[int] = []

        def close() -> None:
            width = max((items[i].align for i in section), default=0)
            for i in section:
                widths[i] = width
            section.clear()

        for index, item in enumerate(items):
            if not item.align:
                close()
                continue
            if section:
                previous = section[-1]
                split = items[previous].kind != item.kind or any(
                    entries[e].blank_before
                    for e in range(item_entry[previous] + 1, item_entry[index] + 1)
                )
                if split:
                    close()
            section.append(index)
        close()
        return widths

    def statement(
        self,
        node: Tree,
        indent: int,
        regions: list[tuple[int, int]],
        body: list[_Line],
    ) -> list[_Line]:
        """``body`` indented, after the comments inside ``node`` but in no bracket."""
        lines = [
            self.comment_line(c, indent)
            for c in self.loose(_start(node), _end(node), regions)
        ]
        return [*lines, *_indented(body, indent)]

    def item(
        self,
        node: Tree,
        kind: str,
        render: Callable[[int, int], list[_Line]],
        align: int = 0,
        start: Tree | Token | None = None,
        end: Tree | Token | None = None,
    ) -> _Item:
        first = node if start is None else start
        last = node if end is None else end
        return _Item(
            kind=kind,
            start=_start(first),
            end=_end(last),
            first_line=self.line(_start(first)),
            last_line=self.last_line(last),
            render=render,
            align=align,
            claimed=self.claims.get(id(last)),
        )

    # --- the file ---------------------------------------------------------------------
    def program(self) -> str:
        items = [self.top_item(child) for child in _trees(self.tree.children)]

        def forced(before: _Item, after: _Item) -> bool:
            return "network" in (before.kind, after.kind) or before.kind != after.kind

        _, lines = self.block(items, 0, len(self.text), None, 0, [], forced)
        missing = {c.start for c in self.comments} - self.emitted
        if missing:
            raise FormatterError(
                f"comments lost at offsets {sorted(missing)}", min(missing)
            )
        out: list[str] = []
        for line in lines:
            code = line.code.rstrip()
            if line.comment is not None:
                code = code.ljust(_comment_column(line.comment, code))
                code += line.comment.text
            out.append(code)
        return "\n".join(out) + "\n" if out else ""

    def top_item(self, node: Tree) -> _Item:
        if node.data == "default_setting":
            return self.default_item(node)
        if node.data == "import_stmt":
            return self.item(node, "import", lambda i, _: self.import_lines(node, i))
        return self.item(node, "network", lambda i, _: self.network_lines(node, i))

    def default_item(self, node: Tree) -> _Item:
        keyword = str(node.children[0])
        value = node.children[-1]

        def render(indent: int, width: int) -> list[_Line]:
            head = f"{keyword.ljust(width)} default = "
            body = _join(
                [_Line(head)], "", self.render(value, indent + len(head), indent, 0)
            )
            return self.statement(node, indent, self.regions(value), body)

        return self.item(node, "default", render, align=len(keyword))

    def import_lines(self, node: Tree, indent: int) -> list[_Line]:
        path, *names = (c for c in node.children if isinstance(c, Token))
        text = f"from {path} import {', '.join(str(n) for n in names)}"
        return self.statement(node, indent, [], [_Line(text)])

    # --- networks ---------------------------------------------------------------------
    def network_lines(self, node: Tree, indent: int) -> list[_Line]:
        name = node.children[0]
        params = _trees(node.children, "param_list")
        sequential = node.data == "sequential_network"
        body = _trees(
            node.children, "sequential_body" if sequential else "network_body"
        )[0]
        suffix = " = sequential {" if sequential else " {"
        prefix = f"network {name}"
        regions: list[tuple[int, int]] = []
        if params:
            param_list = params[0]
            seq = _Seq(
                self.bracket(_start(param_list), "("),
                _end(param_list) - 1,
                tuple(_trees(param_list.children)),
            )
            regions.append((seq.opener, seq.closer + 1))
            head = self.render_seq(prefix, seq, indent, indent, len(suffix))
        else:
            head = [_Line(prefix)]
        head[-1].code += suffix
        head = _indented(head, indent)
        opener = self.bracket(_start(body), "{")
        header = self.loose(_start(node), opener, regions)
        inner_indent = indent + INDENT
        if sequential:
            comment, inner = self.sequential_body(body, opener, inner_indent, header)
        else:
            members = [self.member_item(m) for m in _trees(body.children)]
            comment, inner = self.block(
                members,
                opener + 1,
                _end(body) - 1,
                opener,
                inner_indent,
                header,
                lambda before, after: before.kind != after.kind,
            )
        return self.close_block(head, comment, inner, indent)

    @staticmethod
    def close_block(
        head: list[_Line], comment: _Comment | None, inner: list[_Line], indent: int
    ) -> list[_Line]:
        head[-1].comment = comment
        if not inner and comment is None:
            head[-1].code += "}"
            return head
        return [*head, *inner, _Line(" " * indent + "}")]

    def member_item(self, node: Tree) -> _Item:
        kind = node.data
        if kind == "default_setting":
            return self.default_item(node)
        if kind == "input_decl":
            return self.input_item(node)
        keyword = "layers" if kind == "layers_block" else "forward"
        return self.item(node, keyword, lambda i, _: self.inner_block(node, keyword, i))

    def input_item(self, node: Tree) -> _Item:
        name, type_name, *dims = node.children
        seq = _Seq(
            self.bracket(_end(type_name), "["),
            _end(node) - 1,
            tuple(_trees(dims)),
            brackets="[]",
        )

        def render(indent: int, width: int) -> list[_Line]:
            head = f"input {(str(name) + ':').ljust(width)} "
            inner = self.render_seq(str(type_name), seq, indent + len(head), indent, 0)
            body = _join([_Line(head)], "", inner)
            return self.statement(node, indent, [(seq.opener, seq.closer + 1)], body)

        return self.item(node, "input", render, align=len(name) + 1)

    def inner_block(self, node: Tree, keyword: str, indent: int) -> list[_Line]:
        opener = self.bracket(_start(node) + len(keyword), "{")
        header = self.free_in(_start(node), opener)
        if keyword == "layers":
            items = [self.layer_item(c) for c in _trees(node.children)]
        else:
            items = [self.statement_item(c) for c in _trees(node.children)]
        comment, inner = self.block(
            items,
            opener + 1,
            _end(node) - 1,
            opener,
            indent + INDENT,
            header,
            lambda before, after: False,
        )
        head = [_Line(" " * indent + keyword + " {")]
        return self.close_block(head, comment, inner, indent)

    def layer_item(self, node: Tree) -> _Item:
        name = node.children[0]
        fixed = any(isinstance(c, Token) and c.type == "FIXED" for c in node.children)
        op = next(
            c for c in node.children[1:] if isinstance(c, Token) and c.type == "NAME"
        )
        seq = _Seq(
            self.bracket(_end(op), "("), _end(node) - 1, tuple(_trees(node.children))
        )

        def render(indent: int, width: int) -> list[_Line]:
            head = f"{str(name).ljust(width)} = {'fixed ' if fixed else ''}"
            inner = self.render_seq(str(op), seq, indent + len(head), indent, 0)
            body = _join([_Line(head)], "", inner)
            return self.statement(node, indent, [(seq.opener, seq.closer + 1)], body)

        return self.item(node, "layer", render, align=len(name))

    def statement_item(self, node: Tree) -> _Item:
        kind = node.data

        def render(indent: int, _: int) -> list[_Line]:
            if kind == "assign":
                target, value = node.children
                head = f"{target} = "
                inner = self.render(value, indent + len(head), indent, 0)
                regions = self.regions(value)
            elif kind == "return_stmt":
                value = node.children[0]
                head = "return "
                inner = self.render(value, indent + len(head), indent, 0)
                regions = self.regions(value)
            else:
                head = ""
                seq = _Seq(
                    self.bracket(_start(node) + len("return"), "("),
                    _end(node) - 1,
                    tuple(_trees(node.children)),
                )
                inner = self.render_seq("return ", seq, indent, indent, 0)
                regions = [(seq.opener, seq.closer + 1)]
            body = _join([_Line(head)], "", inner)
            return self.statement(node, indent, regions, body)

        return self.item(node, "statement", render)

    # --- sequential networks ----------------------------------------------------------
    def sequential_groups(self, body: Tree) -> list[list[Tree]]:
        """Items on shared lines: one starts on the line where the one before ends."""
        groups: list[list[Tree]] = []
        for item in _trees(body.children):
            if groups and self.line(_start(item)) == self.last_line(groups[-1][-1]):
                groups[-1].append(item)
            else:
                groups.append([item])
        return groups

    def seq_item_parts(self, node: Tree) -> tuple[str, _Seq | None]:
        fixed = any(isinstance(c, Token) and c.type == "FIXED" for c in node.children)
        op = next(c for c in node.children if isinstance(c, Token) and c.type == "NAME")
        head = f"{'fixed ' if fixed else ''}{op}"
        after = self.skip(_end(op))
        if after >= _end(node) or self.text[after] != "(":
            return head, None
        return head, _Seq(after, _end(node) - 1, tuple(_trees(node.children)))

    def seq_item_regions(self, node: Tree) -> list[tuple[int, int]]:
        _, seq = self.seq_item_parts(node)
        return [] if seq is None else [(seq.opener, seq.closer + 1)]

    def sequential_body(
        self, body: Tree, opener: int, indent: int, header: list[_Comment]
    ) -> tuple[_Comment | None, list[_Line]]:
        groups = self.sequential_groups(body)
        one_line = len(groups) == 1 and self.single_line(groups[0], indent)
        items = [
            self.item(
                group[0],
                "group",
                self.group_renderer(group, index < len(groups) - 1 or not one_line),
                start=group[0],
                end=group[-1],
            )
            for index, group in enumerate(groups)
        ]
        return self.block(
            items,
            opener + 1,
            _end(body) - 1,
            opener,
            indent,
            header,
            lambda before, after: False,
        )

    def single_line(self, group: list[Tree], indent: int) -> bool:
        """Whether the only line group of a chain is rendered on one line.

        Comments in an item but outside its brackets go on lines above it (so
        after the first item they break the line).
        """
        if any(
            self.loose(_start(n), _end(n), self.seq_item_regions(n)) for n in group[1:]
        ):
            return False
        flats: list[str] = []
        for node in group:
            head, seq = self.seq_item_parts(node)
            if seq is not None and self.free_in(seq.opener, seq.closer + 1):
                return False
            flats.append(head if seq is None else head + self.flat_seq(seq))
        return indent + len(", ".join(flats)) <= LINE_LENGTH

    def flat_seq(self, seq: _Seq) -> str:
        return "(" + ", ".join(self.flat_element(e) for e in seq.elements) + ")"

    def group_renderer(
        self, group: list[Tree], final_comma: bool
    ) -> Callable[[int, int], list[_Line]]:
        """Renders a line group; ``final_comma``: its last item ends with `,`."""

        def render(indent: int, _: int) -> list[_Line]:
            lines: list[_Line] = []
            current: _Line | None = None
            for index, node in enumerate(group):
                mark = "," if index < len(group) - 1 or final_comma else ""
                head, seq = self.seq_item_parts(node)
                regions = [] if seq is None else [(seq.opener, seq.closer + 1)]
                loose = self.loose(_start(node), _end(node), regions)
                if loose:
                    if current is not None:
                        lines.append(current)
                        current = None
                    lines.extend(self.comment_line(c, indent) for c in loose)
                if seq is None or not self.free_in(seq.opener, seq.closer + 1):
                    flat = head + ("" if seq is None else self.flat_seq(seq)) + mark
                    if (
                        current is not None
                        and len(current.code) + 1 + len(flat) <= LINE_LENGTH
                    ):
                        current.code += " " + flat
                        continue
                    if current is not None:
                        lines.append(current)
                        current = None
                    if seq is None or indent + len(flat) <= LINE_LENGTH:
                        current = _Line(" " * indent + flat)
                        continue
                if current is not None:
                    lines.append(current)
                    current = None
                rendered = self.render_seq(head, seq, indent, indent, len(mark))
                rendered = _indented(rendered, indent)
                rendered[-1].code += mark
                lines.extend(rendered)
            if current is not None:
                lines.append(current)
            return lines

        return render
