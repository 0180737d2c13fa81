"""The ``bnnc`` command line.

Exit status: 0 success, 1 errors in the input (diagnostics printed), 2 wrong
command-line usage. No input, however broken, produces a Python traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from bnnc import __version__

if TYPE_CHECKING:
    from bnnc.compiler.diagnostics import Diagnostic

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 2 and a one-line hint on usage errors."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bnnc",
        description="Compile .bnn Bayesian neural network specs to PyTorch or "
        "JAX/Flax NNX modules.",
        epilog="Examples:\n"
        "  bnnc check examples/digits.bnn\n"
        "  bnnc compile examples/digits.bnn --backend torch -o digits_model.py\n"
        "  bnnc ir examples/digits.bnn > digits.json\n"
        "Exit status: 0 ok, 1 errors in the input, 2 bad command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bnnc {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )

    check = commands.add_parser(
        "check",
        help="check specs for errors (names, types, shapes)",
        description="Parse and check each FILE; print every error found.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help=".bnn or IR .json file")
    check.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    check.add_argument(
        "--pedantic",
        action="store_true",
        help="also warn about questionable priors, posteriors and unused Bayesian "
        "layers",
    )

    compile_ = commands.add_parser(
        "compile",
        help="generate a Python module from a spec",
        description="Check FILE and generate a Python module for the backend.",
    )
    compile_.add_argument("file", metavar="FILE", help=".bnn or IR .json file")
    compile_.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "jax"],
        help="target framework: torch (PyTorch) or jax (Flax NNX)",
    )
    compile_.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output path, or - for stdout (default: FILE's stem + _<backend>.py)",
    )
    compile_.add_argument(
        "--force",
        action="store_true",
        help="overwrite OUT even if bnnc did not generate it",
    )

    ir_ = commands.add_parser(
        "ir",
        help="print a spec's IR as JSON",
        description="Parse FILE (with its imports) and print the IR as JSON.",
    )
    ir_.add_argument("file", metavar="FILE", help=".bnn file")
    ir_.add_argument("--no-check", action="store_true", help="skip the checker")

    commands.add_parser(
        "schema",
        help="print the IR's JSON Schema",
        description="Print the JSON Schema of the bnnc IR.",
    )

    fmt = commands.add_parser(
        "fmt",
        help="format specs canonically (comments kept)",
        description="Rewrite each FILE in bnnc's canonical style, keeping comments. "
        "With --check, change nothing and exit 1 if a file would change.",
    )
    fmt.add_argument("files", nargs="+", metavar="FILE", help=".bnn file")
    fmt.add_argument(
        "--check", action="store_true", help="report files that are not formatted"
    )

    graph = commands.add_parser(
        "graph",
        help="draw a network with its inferred shapes",
        description="Write the network as a Graphviz graph: DOT always; SVG or PNG "
        "(by the output's suffix) when Graphviz's `dot` is installed.",
    )
    graph.add_argument("file", metavar="FILE", help=".bnn or IR .json file")
    graph.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        default="-",
        help="out.dot, out.svg or out.png (default: DOT on stdout)",
    )
    graph.add_argument("--network", help="only this network (default: all)")
    graph.add_argument(
        "--symbolic",
        action="store_true",
        help="label edges with symbolic shapes instead of parameter defaults",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with _few_collections():
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("bnnc: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug in bnnc, never the user's input
        if os.environ.get("BNNC_DEBUG"):
            raise
        print(
            f"bnnc: internal error: {type(error).__name__}: {error}\n"
            "This is a bug in bnnc; rerun with BNNC_DEBUG=1 for details and "
            "please report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while a command runs.

    A command builds a parse tree, the IR and the checker's results, nearly all
    of it alive to the end and free of cycles; with the default thresholds the
    collector rescans it over and over (a quarter of the time for 10,000 layers).
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _report(error: object, stream: TextIO | None = None) -> None:
    from bnnc.compiler.diagnostics import CompileError

    assert isinstance(error, CompileError)
    stream = stream or sys.stderr  # looked up now: tests may replace sys.stderr
    print(error.render(), file=stream)
    count = sum(1 for d in error.diagnostics if d.severity == "error")
    print(f"bnnc: {count} error{'s' if count != 1 else ''}", file=stream)


def _warnings(checked: object) -> None:
    from bnnc.compiler.api import sources_of
    from bnnc.compiler.diagnostics import render_all

    warnings = getattr(checked, "warnings", [])
    if warnings:
        print(render_all(warnings, sources_of(checked.program)), file=sys.stderr)  # type: ignore[attr-defined]


def _check(args: argparse.Namespace) -> int:
    from bnnc.compiler import api
    from bnnc.compiler.diagnostics import CompileError, printable

    status = EXIT_OK
    for file in args.files:
        try:
            checked = api.check(file)
        except CompileError as error:
            _report(error)
            status = EXIT_INPUT
            continue
        if args.pedantic:
            from bnnc.compiler.pedantic import pedantic_warnings

            checked.warnings.extend(pedantic_warnings(checked))
        _warnings(checked)
        if not args.quiet:
            names = ", ".join(info.name for info in checked.main_networks())
            print(f"{printable(file)}: ok ({names or 'no networks'})")
    return status


def _compile(args: argparse.Namespace) -> int:
    from bnnc.compiler import api
    from bnnc.compiler.diagnostics import CompileError, Diagnostic, render_all

    source = Path(args.file)
    output = args.output
    if output is None:
        output = str(source.with_name(f"{source.stem}_{args.backend}.py"))
    target = None if output == "-" else Path(output)
    if target is not None:
        problem = _output_problem(target, source, args.force)
        if problem is not None:
            print(render_all([problem], {}), file=sys.stderr)
            return EXIT_INPUT
    try:
        checked = api.check(args.file)
        # From the checked program: api.generate() would check it a second time.
        generated = api._generate(checked, args.backend)
    except CompileError as error:
        _report(error)
        return EXIT_INPUT
    _warnings(checked)
    if target is None:
        sys.stdout.write(generated.source)
        return EXIT_OK
    try:
        api.write_atomically(target, generated.source)
    except OSError as error:
        diagnostic = Diagnostic(
            "BNN502",
            f"cannot write output: {error.strerror or error}",
            file=str(target),
        )
        print(render_all([diagnostic], {}), file=sys.stderr)
        return EXIT_INPUT
    print(f"wrote {target}", file=sys.stderr)
    return EXIT_OK


def _output_problem(target: Path, source: Path, force: bool) -> object:
    from bnnc.compiler import api
    from bnnc.compiler.diagnostics import Diagnostic

    if target.exists() and target.resolve() == source.resolve():
        return Diagnostic(
            "BNN501", "output would overwrite the input spec", file=str(target)
        )
    if target.is_dir():
        return Diagnostic("BNN502", "output path is a directory", file=str(target))
    if target.exists() and not force and not api.is_generated_file(target):
        return Diagnostic(
            "BNN501",
            "refusing to overwrite a file that bnnc did not generate",
            file=str(target),
            hints=("pass --force to overwrite it, or choose another -o path",),
        )
    return None


def _ir(args: argparse.Namespace) -> int:
    from bnnc.compiler import api, ir
    from bnnc.compiler.diagnostics import CompileError

    try:
        program = (
            api.check(args.file).program if not args.no_check else api.load(args.file)
        )
    except CompileError as error:
        _report(error)
        return EXIT_INPUT
    sys.stdout.write(ir.to_json(program) + "\n")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from bnnc.compiler import ir

    sys.stdout.write(ir.schema_json() + "\n")
    return EXIT_OK


def _fmt(args: argparse.Namespace) -> int:
    from bnnc.compiler import api
    from bnnc.compiler.diagnostics import CompileError, Diagnostic, printable
    from bnnc.dsl import source
    from bnnc.dsl.format import format_source

    status = EXIT_OK
    for file in args.files:
        read = source.read(file)
        if isinstance(read, source.ReadFailure):  # BNN001, BNN002, BNN005
            texts = {file: read.text} if read.text is not None else {}
            _report(CompileError([read.diagnostic], texts))
            status = EXIT_INPUT
            continue
        text = read.text
        try:
            formatted = format_source(text, file)
        except CompileError as error:
            _report(error)
            status = EXIT_INPUT
            continue
        except Exception as error:  # the formatter failed; the file is kept
            if os.environ.get("BNNC_DEBUG"):
                raise
            _report(CompileError([_format_failure(file, text, error)], {file: text}))
            status = EXIT_INPUT
            continue
        if formatted == text:
            continue
        if args.check:
            print(f"would reformat {printable(file)}")
            status = EXIT_INPUT
            continue
        try:
            api.write_atomically(Path(file), formatted)
        except OSError as error:
            diagnostic = Diagnostic(
                "BNN502",
                f"cannot write the formatted file: {error.strerror or error}",
                file=file,
                hints=("the file is left unchanged",),
            )
            _report(CompileError([diagnostic], {}))
            status = EXIT_INPUT
            continue
        print(f"reformatted {printable(file)}", file=sys.stderr)
    return status


def _format_failure(file: str, text: str, error: Exception) -> Diagnostic:
    """BNN503 (BNN005 for a stack overflow) for a formatter failure, located."""
    from bnnc.compiler.diagnostics import Diagnostic
    from bnnc.compiler.ir import Span
    from bnnc.dsl.format import FormatterError

    hints = ("the file is left unchanged",)
    if isinstance(error, RecursionError):
        return Diagnostic(
            "BNN005", "input is nested too deeply to format", file=file, hints=hints
        )
    if isinstance(error, FormatterError):
        reason = str(error).splitlines()[0].removeprefix(f"{file}: ")
    else:
        reason = f"internal error ({type(error).__name__}: {error})"
    offset = getattr(error, "offset", None)
    span = None
    if isinstance(offset, int) and 0 <= offset <= len(text):
        line_start = text.rfind("\n", 0, offset) + 1
        line = text.count("\n", 0, offset) + 1
        column = offset - line_start + 1
        span = Span(
            file=file, line=line, column=column, end_line=line, end_column=column + 1
        )
    return Diagnostic(
        "BNN503",
        f"bnnc fmt cannot format this file: {reason}",
        span,
        file=file,
        hints=(
            *hints,
            "this is a bug in bnnc fmt, not in the file; please report it "
            "(BNNC_DEBUG=1 shows the details)",
        ),
    )


def _graph(args: argparse.Namespace) -> int:
    from bnnc.compiler import api
    from bnnc.compiler.diagnostics import CompileError, Diagnostic, render_all
    from bnnc.compiler.graph import GraphvizMissing, render, to_dot

    try:
        checked = api.check(args.file)
    except CompileError as error:
        _report(error)
        return EXIT_INPUT
    if args.network and args.network not in checked.networks:
        names = ", ".join(checked.networks) or "none"
        print(f"bnnc: no network {args.network!r}; known: {names}", file=sys.stderr)
        return EXIT_USAGE
    dot = to_dot(checked, args.network, symbolic=args.symbolic)
    if args.output == "-":
        sys.stdout.write(dot)
        return EXIT_OK
    target = Path(args.output)
    suffix = target.suffix.lower()
    if suffix not in (".dot", ".gv", ".svg", ".png"):
        print("bnnc: graph output must end in .dot, .svg or .png", file=sys.stderr)
        return EXIT_USAGE
    data = dot.encode()
    if suffix in (".svg", ".png"):
        try:
            data = render(dot, suffix[1:])
        except GraphvizMissing as error:
            fallback = target.with_suffix(".dot")
            api.write_atomically(fallback, dot)
            print(
                f"bnnc: {error}; wrote the DOT graph to {fallback} instead "
                "(install Graphviz, e.g. `apt-get install graphviz`, for SVG/PNG)",
                file=sys.stderr,
            )
            return EXIT_INPUT
    try:
        api.write_atomically(target, data)
    except OSError as error:
        diagnostic = Diagnostic(
            "BNN502",
            f"cannot write output: {error.strerror or error}",
            file=str(target),
        )
        print(render_all([diagnostic], {}), file=sys.stderr)
        return EXIT_INPUT
    print(f"wrote {target}", file=sys.stderr)
    return EXIT_OK


_COMMANDS = {
    "check": _check,
    "compile": _compile,
    "ir": _ir,
    "schema": _schema,
    "fmt": _fmt,
    "graph": _graph,
}

__all__ = ["main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
