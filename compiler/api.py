"""The Python API: load, check, compile and build models from specs or IR.

>>> import bnnc
>>> source = bnnc.compile("examples/regression.bnn", backend="torch")  # doctest: +SKIP
>>> model = bnnc.build("examples/regression.bnn", hidden=32)  # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

from bnnc.compiler import ir
from bnnc.compiler.backends import BACKENDS, HEADER_MARK, Generated
from bnnc.compiler.check import CheckedProgram, check_program
from bnnc.compiler.diagnostics import CompileError, Diagnostic

Source = ir.Program | str | os.PathLike[str]


def load(source: Source) -> ir.Program:
    """A program from IR (returned as is) or a ``.bnn`` / ``.json`` file path."""
    if isinstance(source, ir.Program):
        return source
    path = Path(source)
    if path.suffix == ".json":
        return _load_json(path)
    from bnnc import dsl

    return dsl.load(path)


def _load_json(path: Path) -> ir.Program:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CompileError(
            [Diagnostic("BNN001", f"cannot read IR file: {error}", file=str(path))], {}
        ) from None
    try:
        return ir.from_json(text)
    except ValueError as error:
        first = str(error).splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise CompileError(
            [Diagnostic("BNN104", f"invalid IR JSON: {detail}", file=str(path))], {}
        ) from None


def check(source: Source) -> CheckedProgram:
    """Load and check; raises :class:`CompileError` listing every error."""
    program = load(source)
    try:
        return check_program(program)
    except CompileError as error:
        diagnostics = error.diagnostics
        if not isinstance(source, ir.Program):  # e.g. an IR file without spans
            diagnostics = [
                d if d.span is not None or d.file else replace(d, file=str(source))
                for d in diagnostics
            ]
        raise CompileError(diagnostics, sources_of(program)) from None


def generate(source: Source, backend: str = "torch") -> Generated:
    """Check and generate; the result has the source text and a line map."""
    return _generate(check(source), backend)


def _generate(checked: CheckedProgram, backend: str) -> Generated:
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; choose one of {', '.join(sorted(BACKENDS))}"
        )
    if not checked.networks:
        raise CompileError(
            [
                Diagnostic(
                    "BNN307",
                    "nothing to compile: the file defines no network",
                    file=checked.program.source,
                )
            ],
            {},
        )
    return BACKENDS[backend](checked).generate()


def compile(source: Source, backend: str = "torch") -> str:
    """Generated Python source for a spec or IR."""
    return generate(source, backend).source


def build(
    source: Source,
    backend: str = "torch",
    *,
    network: str | None = None,
    **params: Any,
) -> Any:
    """A ready model instance, without writing a file.

    ``network`` picks the class (default: the last network the file defines,
    usually the one composing the others); ``params`` go to its constructor.
    """
    checked = check(source)
    names = [info.name for info in checked.main_networks()]
    chosen = network or (names[-1] if names else None)
    if chosen is None or chosen not in checked.networks:
        raise ValueError(
            f"no network {chosen!r} to build; the program defines "
            f"{', '.join(names) or 'none'}"
        )
    generated = _generate(checked, backend)
    digest = hashlib.sha256(generated.source.encode()).hexdigest()[:16]
    module = load_generated(generated.source, name=f"bnnc_generated_{digest}")
    return getattr(module, chosen)(**params)


def load_generated(source: str, *, name: str = "bnnc_generated") -> types.ModuleType:
    """Execute generated source as a module registered in ``sys.modules``.

    ``build`` names modules by the source's hash, so the same source is executed
    once: its classes stay the same objects, which pickling and ``nnx.jit``
    caches rely on.
    """
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__bnnc_source__", None) == source:
        return existing
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__bnnc_source__ = source  # type: ignore[attr-defined]
    sys.modules[name] = module  # classes must be importable for pickling/compile
    exec(builtins.compile(source, f"<bnnc:{name}>", "exec"), module.__dict__)
    return module


def sources_of(program: ir.Program) -> dict[str, str]:
    """Source text of every file in a program (for rendering diagnostics)."""
    sources: dict[str, str] = {}
    stack = [program]
    while stack:
        current = stack.pop()
        if current.source and current.source not in sources:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                # Bytes, not read_text(): its newline translation would turn a
                # lone "\r" into a line break the parser does not count.
                sources[current.source] = (
                    Path(current.source).read_bytes().decode("utf-8-sig")
                )
        stack.extend(i.program for i in current.imports if i.program is not None)
    return sources


def is_generated_file(path: Path) -> bool:
    """Whether ``path`` starts with bnnc's generated-code header."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith(HEADER_MARK)
    except OSError:
        return False


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` via a temporary file and an atomic rename."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
