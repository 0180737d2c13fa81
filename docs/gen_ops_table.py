"""Generate the table of ops in docs/language.md from the operator registry.

    python docs/gen_ops_table.py           # print the table
    python docs/gen_ops_table.py --write   # replace it in docs/language.md
    python docs/gen_ops_table.py --check   # exit 1 if docs/language.md is stale

The table sits between the ``<!-- ops-table:begin -->`` and
``<!-- ops-table:end -->`` markers. Imports the registry only (no torch, no jax).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnnc.compiler.registry import REGISTRY, Arg, Op

DOC = Path(__file__).with_name("language.md")
BEGIN = "<!-- ops-table:begin -->"
END = "<!-- ops-table:end -->"


def literal(value: object) -> str:
    """A default value as it is written in a .bnn file."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ")"
    return repr(value)


def argument(arg: Arg) -> str:
    """``name`` or ``name=default``."""
    return arg.name if arg.required else f"{arg.name}={literal(arg.default)}"


def tensors(op: Op) -> list[str]:
    """The tensor operands a functional op is called with."""
    if op.kind == "layer":
        return []
    if op.tensor_inputs is None:
        return ["x1", "x2", "..."]
    if op.tensor_inputs == 1:
        return ["x"]
    return [f"x{i + 1}" for i in range(op.tensor_inputs)]


def row(op: Op) -> str:
    """One markdown table row."""
    args = ", ".join([*tensors(op), *(argument(a) for a in op.args)])
    summary = op.summary.replace("|", "\\|")
    kind = "layer (Bayesian)" if op.bayesian else op.kind
    return f"| `{op.name}` | {kind} | `{op.name}({args})` | {summary} |"


def table() -> str:
    """The whole table, one row per registry entry in registry order."""
    lines = ["| Name | Kind | Call | Summary |", "| --- | --- | --- | --- |"]
    lines += [row(op) for op in REGISTRY.values()]
    return "\n".join(lines)


def replaced(document: str) -> str:
    """``document`` with the text between the markers replaced by the table."""
    head, begin, rest = document.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{DOC}: markers {BEGIN} / {END} not found")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update language.md")
    group.add_argument("--check", action="store_true", help="fail if it is stale")
    options = parser.parse_args(argv)
    if not options.write and not options.check:
        print(table())
        return 0
    document = DOC.read_text(encoding="utf-8")
    updated = replaced(document)
    if options.check:
        if updated != document:
            print(f"{DOC} is stale: run python docs/gen_ops_table.py --write")
            return 1
        return 0
    DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
