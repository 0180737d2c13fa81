"""The front end's entry points: parse text, parse a file, load a file with imports."""

from __future__ import annotations

import os
from pathlib import Path

from bnnc.compiler import ir
from bnnc.compiler.diagnostics import (
    CompileError,
    Diagnostic,
    DiagnosticSink,
    did_you_mean,
)
from bnnc.dsl import source
from bnnc.dsl.lower import IR_MAX_DEPTH, MAX_DEPTH, Lowering, check_depth, json_depth
from bnnc.dsl.parser import parse_tree

MAX_IMPORT_DEPTH = 50
"""Longest accepted chain of files importing each other (BNN005 beyond)."""


def parse(text: str, path: str = "<input>") -> ir.Program:
    """Parse one file's text into IR; imports are recorded, not loaded.

    Raises :class:`~bnnc.compiler.diagnostics.CompileError` with every problem
    found; no other exception escapes for any input text.
    """
    data = text.encode("utf-8", "surrogatepass")
    program, diagnostics = _parse_text(text, path, data)
    _raise_if_errors(diagnostics, {path: text})
    assert program is not None
    return program


def parse_file(path: str | Path) -> ir.Program:
    """Read and parse one ``.bnn`` file; its imports are recorded, not loaded."""
    name = str(path)
    read = source.read(name)
    if isinstance(read, source.ReadFailure):
        sources = {name: read.text} if read.text is not None else {}
        raise CompileError([read.diagnostic], sources)
    program, diagnostics = _parse_source(read)
    _raise_if_errors(diagnostics, {name: read.text})
    assert program is not None
    return program


def load(path: str | Path) -> ir.Program:
    """Read and parse a ``.bnn`` file and, recursively, every file it imports.

    Import paths are relative to the importing file's directory; each file is
    loaded once (by resolved path) and shared, so a diamond import loads its
    bottom file once. ``Import.program`` holds the imported program.
    """
    loader = _Loader()
    try:
        program = loader.file(str(path), None)
    except RecursionError:  # not expected: import chains are bounded
        loader.diagnostics.append(
            Diagnostic("BNN005", "imports nest too deeply", None, file=str(path))
        )
        program = None
    _raise_if_errors(loader.diagnostics, loader.sources)
    assert program is not None
    loader.check_depth(program)
    _raise_if_errors(loader.diagnostics, loader.sources)
    return program


def _raise_if_errors(diagnostics: list[Diagnostic], sources: dict[str, str]) -> None:
    if any(d.severity == "error" for d in diagnostics):
        raise CompileError(diagnostics, sources)


def _parse_source(read: source.Source) -> tuple[ir.Program | None, list[Diagnostic]]:
    return _parse_text(read.text, read.path, None, read.sha256)


def _parse_text(
    text: str, path: str, data: bytes | None, sha256: str | None = None
) -> tuple[ir.Program | None, list[Diagnostic]]:
    if data is not None:
        if len(data) > source.MAX_BYTES:
            return None, [source.too_large(path, len(data))]
        sha256 = source.sha256_hex(data)
    assert sha256 is not None
    try:
        tree, diagnostics = parse_tree(text, path)
        if tree is None:
            return None, diagnostics
        deep = check_depth(tree)
        sink = DiagnosticSink()
        lowering = Lowering(text, path, sink)
        if deep is not None:
            sink.error(
                "BNN005",
                f"expression nested too deeply (more than {MAX_DEPTH} levels, "
                "counting a call or tuple as two)",
                lowering.span(deep),
                "split it into several statements",
            )
            return None, sink.diagnostics
        program = lowering.program(tree, sha256)
    except RecursionError:
        return None, [
            Diagnostic("BNN005", "input is nested too deeply", None, file=path)
        ]
    return (None if sink.has_errors else program), sink.diagnostics


class _Loader:
    """Loads a file and its imports, collecting diagnostics and source texts."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.sources: dict[str, str] = {}
        self.cache: dict[Path, ir.Program | None] = {}
        self.stack: list[tuple[Path, str]] = []
        self.depths: dict[int, int] = {}

    def file(self, path: str, at: ir.Span | None) -> ir.Program | None:
        """The program in ``path`` with its imports loaded (None on errors)."""
        resolved = _resolve(path)
        if resolved in self.cache:
            return self.cache[resolved]
        read = source.read(path, at)
        if isinstance(read, source.ReadFailure):
            self.diagnostics.append(read.diagnostic)
            if read.text is not None:
                self.sources[path] = read.text
            self.cache[resolved] = None
            return None
        self.sources[path] = read.text
        program, diagnostics = _parse_source(read)
        self.diagnostics.extend(diagnostics)
        if program is None:
            self.cache[resolved] = None
            return None
        self.stack.append((resolved, path))
        imports = [
            self.import_(program, imp, resolved, path) for imp in program.imports
        ]
        self.stack.pop()
        program = program.model_copy(update={"imports": imports})
        self.cache[resolved] = program
        return program

    def import_(
        self, program: ir.Program, imp: ir.Import, resolved: Path, path: str
    ) -> ir.Import:
        shown = os.path.normpath(os.path.join(os.path.dirname(path), imp.path))
        target = _resolve(str(resolved.parent / imp.path))
        chain = [p for p, _ in self.stack]
        if target in chain:
            cycle = [shown_path for _, shown_path in self.stack[chain.index(target) :]]
            self.diagnostics.append(
                Diagnostic(
                    "BNN004",
                    "import cycle: " + " -> ".join([*cycle, shown]),
                    imp.span,
                )
            )
            return imp
        if not _exists(resolved.parent / imp.path):
            self.diagnostics.append(
                Diagnostic(
                    "BNN003",
                    f"imported file `{imp.path}` not found (looked for `{shown}`)",
                    imp.span,
                )
            )
            return imp
        if len(self.stack) >= MAX_IMPORT_DEPTH:
            self.diagnostics.append(
                Diagnostic(
                    "BNN005",
                    f"imports nest more than {MAX_IMPORT_DEPTH} files deep",
                    imp.span,
                )
            )
            return imp
        imported = self.file(shown, imp.span)
        if imported is None:
            return imp
        defined = [net.name for net in imported.networks]
        for name, span in zip(imp.names, imp.name_spans, strict=False):
            if imported.network(name) is None:
                self.diagnostics.append(
                    Diagnostic(
                        "BNN211",
                        f"`{imp.path}` defines no network `{name}`",
                        span,
                        hints=did_you_mean(name, defined),
                    )
                )
        return imp.model_copy(update={"program": imported})

    def depth(self, program: ir.Program) -> int:
        """How deeply the JSON form of ``program`` nests, imports included."""
        key = id(program)
        if key not in self.depths:
            own = json_depth(program.model_dump(mode="json", exclude={"imports"}))
            deepest = max(own, 5 if program.imports else 0)  # name_spans
            for imp in program.imports:
                if imp.program is not None:
                    # Program > imports list > Import > program
                    deepest = max(deepest, 3 + self.depth(imp.program))
            self.depths[key] = deepest
        return self.depths[key]

    def check_depth(self, program: ir.Program) -> None:
        """BNN005 when imports nest the IR deeper than its JSON form allows."""
        if not program.imports:
            # One file's IR nests at most MAX_DEPTH plus the few levels around an
            # expression (tests/dsl/test_dsl_errors.py), well within the limit;
            # measuring it would dump the whole program to JSON.
            return
        depth = self.depth(program)
        if depth <= IR_MAX_DEPTH:
            return
        imp = max(
            (i for i in program.imports if i.program is not None),
            key=lambda i: self.depth(i.program),  # type: ignore[arg-type]
        )
        self.diagnostics.append(
            Diagnostic(
                "BNN005",
                f"imports nest too deeply: the IR of `{program.source}` would be "
                f"{depth} levels deep (the limit is {IR_MAX_DEPTH})",
                imp.span,
                hints=("import the networks directly instead of through a long chain",),
            )
        )


def _resolve(path: str) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
