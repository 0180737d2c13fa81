"""Run one input through the whole front end and check the robustness property.

The property, for every input (text or bytes):

- it either compiles, or raises :class:`~bnnc.compiler.diagnostics.CompileError`
  carrying at least one error, every diagnostic with a registered code and a
  valid position (no span, or ``1 <= line <= lines of its file``,
  ``column >= 1``, ``column <= len(line) + 1``, and an end not before the
  start); nothing else escapes (no other exception, no ``RecursionError``);
- it takes at most :data:`MAX_SECONDS` (parse, check and both backends);
- when it compiles: every network has checked inputs and outputs (an
  unreported error otherwise), the code generated for every backend parses with
  :func:`ast.parse`, compiling again (from a fresh parse) gives the same bytes,
  and the IR round-trips through ``ir.to_json`` / ``ir.from_json``.

:func:`check_text`, :func:`check_file` and :func:`check_ir` never raise; they return a
:class:`Verdict` whose ``problems`` list is empty when the property holds.
"""

from __future__ import annotations

import ast
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.backends import BACKENDS
from bnnc.compiler.diagnostics import CODES, CompileError, Diagnostic

MAX_SECONDS = 2.0
"""Longest any single input may take through parse, check and both backends.

Measured as this process's CPU time, which other processes on a busy machine
do not inflate (the front end is single-threaded, so it is also the time a
user waits on an idle machine)."""


@dataclass
class Verdict:
    """What happened to one input."""

    outcome: str = ""  # "compiled", "rejected", "escape"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    codes: tuple[str, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)  # backend -> source
    program: ir.Program | None = None

    @property
    def ok(self) -> bool:
        """Whether the property held (time limit included)."""
        return not self.problems and self.seconds <= MAX_SECONDS

    def report(self) -> str:
        """A short description for an assertion message."""
        lines = [f"{self.outcome} in {self.seconds:.3f} s", *self.problems]
        if self.seconds > MAX_SECONDS:
            lines.append(f"took {self.seconds:.2f} s (limit {MAX_SECONDS} s)")
        return "\n".join(lines)


def check_text(text: str, path: str = "fuzz.bnn") -> Verdict:
    """The property for ``text`` parsed with :func:`bnnc.dsl.parse`."""
    return _timed(lambda: dsl.parse(text, path), {path: text}, lambda: text)


def check_file(path: Path) -> Verdict:
    """The property for a file loaded with its imports (:func:`bnnc.dsl.load`).

    Covers what only files have: bytes that are not UTF-8, a byte-order mark,
    the size limit and imports.
    """

    def text() -> str:
        return path.read_bytes().decode("utf-8-sig")

    return _timed(lambda: dsl.load(path), {}, text)


def check_ir(json_text: str) -> Verdict:
    """The property for an IR given as JSON, as ``bnnc compile model.json`` reads it.

    JSON that the IR's schema refuses is a rejection (BNN104), as in the CLI.
    """

    def load() -> ir.Program:
        try:
            return ir.from_json(json_text)
        except ValueError:
            invalid = Diagnostic("BNN104", "invalid IR JSON", file="<ir>")
            raise CompileError([invalid], {}) from None

    return _timed(load, {}, None)


def _timed(
    load: Callable[[], ir.Program],
    sources: dict[str, str],
    text: Callable[[], str] | None,
) -> Verdict:
    start = time.process_time()
    try:
        verdict = _run(load, sources, text)
    except Exception:  # anything but CompileError escaping is the bug we look for
        verdict = Verdict("escape", problems=[traceback.format_exc(limit=-8)])
    verdict.seconds = time.process_time() - start
    return verdict


def _run(
    load: Callable[[], ir.Program],
    sources: dict[str, str],
    text: Callable[[], str] | None,
) -> Verdict:
    try:
        program = load()
    except CompileError as error:
        return _rejected(error, sources)
    verdict = Verdict("compiled", program=program)
    problems = verdict.problems
    if ir.from_json(ir.to_json(program)) != program:
        problems.append("the IR does not round-trip through JSON")
    try:
        checked = bnnc.check(program)
    except CompileError as error:
        return _rejected(error, sources)
    for name, info in checked.networks.items():
        # A network accepted without outputs means an error went unreported.
        if not info.outputs or not info.inputs:
            problems.append(f"network {name} checked without inputs or outputs")
    for backend in sorted(BACKENDS):
        try:
            first = bnnc.compile(program, backend=backend)
        except CompileError as error:  # e.g. BNN307: the file defines no network
            return _rejected(error, sources)
        again = bnnc.compile(load(), backend=backend)
        if again != first:
            problems.append(f"{backend}: compiling twice gives different code")
        try:
            ast.parse(first)
        except SyntaxError as error:
            problems.append(f"{backend}: generated code does not parse: {error}")
        verdict.outputs[backend] = first
    if text is None:
        return verdict
    # `dsl.parse` of the same text round-trips too (a file's imports aside).
    reparsed = dsl.parse(text(), program.source or "<input>")
    if ir.from_json(ir.to_json(reparsed)) != reparsed:
        problems.append("dsl.parse -> to_json -> from_json does not round-trip")
    return verdict


def _rejected(error: CompileError, sources: dict[str, str]) -> Verdict:
    known = {**error.sources, **sources}
    verdict = Verdict("rejected", codes=tuple(d.code for d in error.diagnostics))
    if not any(d.severity == "error" for d in error.diagnostics):
        verdict.problems.append("CompileError without an error diagnostic")
    for diagnostic in error.diagnostics:
        verdict.problems += diagnostic_problems(diagnostic, known)
    if not isinstance(error.render(), str):  # rendering must not fail either
        verdict.problems.append("render() did not return text")
    return verdict


def diagnostic_problems(diagnostic: Diagnostic, sources: dict[str, str]) -> list[str]:
    """Why ``diagnostic`` has an invalid code or position (empty when fine)."""
    problems: list[str] = []
    where = f"{diagnostic.code} {diagnostic.message!r}"
    if diagnostic.code not in CODES:
        problems.append(f"{where}: unregistered code")
    if diagnostic.severity not in ("error", "warning"):
        problems.append(f"{where}: severity {diagnostic.severity!r}")
    span = diagnostic.span
    if span is None:
        return problems
    position = (span.line, span.column, span.end_line, span.end_column)
    if span.line < 1 or span.column < 1:
        problems.append(f"{where}: position {position} before the start")
    if (span.end_line, span.end_column) < (span.line, span.column):
        problems.append(f"{where}: span {position} ends before it starts")
    text = sources.get(span.file or diagnostic.path)
    if text is not None:
        lines = text.split("\n")  # the parser's notion of a line
        if not 1 <= span.line <= len(lines) or span.end_line > len(lines):
            problems.append(f"{where}: line of {position} beyond {len(lines)} lines")
        elif span.column > len(lines[span.line - 1]) + 1:
            problems.append(f"{where}: column of {position} beyond its line")
    return problems
