"""A static audit of generated modules: no user text can run as code.

:func:`audit` parses a generated module with :mod:`ast` and checks that it
has exactly the shape bnnc emits and nothing a spec could smuggle in:

- only printable ASCII and newlines (so no control character, bidi override or
  zero-width character reaches a comment, a docstring or code);
- the module holds a docstring, the framework imports and classes only; a class
  holds a docstring, record fields and the two methods; no lambda, ``global``,
  ``exec``-like construct, f-string, ``import`` inside a function, ...;
- every string constant is a docstring or one of the strings bnnc emits
  (the runtime's head distribution names);
- every identifier (names, attributes, arguments, classes, keywords) is
  generated vocabulary (learned from the examples and generated specs, minus
  their own spec identifiers), a ``_``-prefixed generated temporary, or an
  identifier of the spec that passes the checker's rules;
- every name read is bound in the module: a function argument, a local
  assigned earlier, an import, a class, or one of a few builtins. So no free
  name such as ``__import__``, ``eval`` or ``os`` can be referenced.
"""

from __future__ import annotations

import ast
import functools
import keyword
import random
import re
from pathlib import Path

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.backends import BACKENDS
from bnnc.compiler.backends.base import HEAD_DISTS
from bnnc.compiler.check.values import reserved_reason
from bnnc.compiler.registry import ESTIMATORS, REGISTRY

ROOT = Path(__file__).resolve().parents[2]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALLOWED_BUILTINS = {"super", "int", "float", "bool", "None", "True", "False"}
_ALLOWED_MODULES = {
    "typing",
    "torch",
    "torch.nn",
    "bnnc.runtime",
    "jax",
    "jax.numpy",
    "flax",
}
_ALLOWED_DUNDERS = {"__init__", "__call__"}
_STRINGS = set(HEAD_DISTS.values()) | set(ESTIMATORS)  # heads' `dist`, `estimator=`
_BANNED_NODES = (
    ast.Lambda,
    ast.Global,
    ast.Nonlocal,
    ast.Delete,
    ast.Try,
    ast.While,
    ast.For,
    ast.With,
    ast.AsyncFunctionDef,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
    ast.JoinedStr,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.NamedExpr,
    ast.Starred,
    ast.Raise,
    ast.Assert,
)


def spec_identifiers(program: ir.Program) -> set[str]:
    """Every identifier an IR program (imports included) can put into code."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("name", "id", "target", "func", "op") and isinstance(
                    item, str
                ):
                    found.add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(program.model_dump())
    return found


def is_validated(name: str) -> bool:
    """Whether a spec identifier is one the checker lets into generated code."""
    return (
        _IDENTIFIER.fullmatch(name) is not None
        and name.isascii()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and reserved_reason(name) is None
    )


def identifiers(tree: ast.AST) -> set[str]:
    """Names, attributes, arguments, keywords, classes and functions in ``tree``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        for attribute in ("id", "attr", "arg", "name", "asname"):
            value = getattr(node, attribute, None)
            if isinstance(value, str):
                found.add(value)
    return found


@functools.lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Identifiers bnnc itself writes, learned from a trusted corpus.

    The corpus is every example plus generated specs covering every op the
    generator models; each program's own identifiers are removed from what its
    generated code uses, so what remains is the compiler's vocabulary.
    """
    from tests.fuzz.specgen import RandomChooser, valid_spec

    programs = [dsl.load(path) for path in sorted((ROOT / "examples").glob("*.bnn"))]
    for seed in range(120):
        spec = valid_spec(RandomChooser(random.Random(seed)))
        if spec.expect_valid:
            programs.append(dsl.parse(spec.text))
    words: set[str] = set()
    for program in programs:
        own = spec_identifiers(program)
        own |= {f"{name}Output" for name in own}
        for backend in BACKENDS:
            tree = ast.parse(bnnc.compile(program, backend=backend))
            words |= {w for w in identifiers(tree) - own if not w.startswith("_")}
    words |= set(REGISTRY)
    words |= {arg.name for op in REGISTRY.values() for arg in op.args}
    for generator in BACKENDS.values():  # runtime layer classes, fixed or not
        words |= {
            f"{prefix}{name}"
            for name in generator.layer_classes.values()
            for prefix in ("", "Fixed")
        }
    return frozenset(words | _ALLOWED_DUNDERS)


def audit(source: str, program: ir.Program) -> list[str]:
    """Problems with one generated module (empty when it is safe)."""
    problems: list[str] = []
    odd = sorted({c for c in source if c != "\n" and not " " <= c <= "~"})
    if odd:
        problems.append(f"characters outside printable ASCII: {odd!r}")
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return [*problems, f"does not parse: {error}"]
    own = spec_identifiers(program)
    networks = {n for n in own if n.endswith("Output")} | {
        f"{name}Output" for name in own
    }
    words = vocabulary()
    for name in sorted(identifiers(tree)):
        if name in words or name in _ALLOWED_DUNDERS:
            continue
        if (
            name.startswith("_")
            and not name.startswith("__")
            and _IDENTIFIER.fullmatch(name)
        ):
            continue  # a generated temporary: spec names never start with `_`
        if name in own and is_validated(name):
            continue
        if name in networks and is_validated(name):
            continue
        problems.append(f"identifier {name!r} is neither vocabulary nor spec")
    for node in ast.walk(tree):
        if isinstance(node, _BANNED_NODES):
            problems.append(f"unexpected {type(node).__name__} on line {node.lineno}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("__")
            and node.attr not in _ALLOWED_DUNDERS
        ):
            problems.append(f"dunder attribute {node.attr!r}")
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            problems.append("a bytes constant")
    problems += _structure(tree)
    problems += _strings(tree)
    problems += _free_names(tree)
    return problems


def _structure(tree: ast.Module) -> list[str]:
    problems: list[str] = []
    for index, statement in enumerate(tree.body):
        if index == 0 and _is_docstring(statement):
            continue
        if isinstance(statement, ast.Import | ast.ImportFrom):
            modules = (
                [statement.module or ""]
                if isinstance(statement, ast.ImportFrom)
                else [alias.name for alias in statement.names]
            )
            if not set(modules) <= _ALLOWED_MODULES:
                problems.append(f"import of {modules}")
            continue
        if not isinstance(statement, ast.ClassDef):
            problems.append(f"module-level {type(statement).__name__}")
            continue
        if statement.decorator_list or statement.keywords:
            problems.append(f"class {statement.name} has decorators or keywords")
        for position, member in enumerate(statement.body):
            if position == 0 and _is_docstring(member):
                continue
            if isinstance(member, ast.AnnAssign) and isinstance(
                member.target, ast.Name
            ):
                continue  # a record field
            if isinstance(member, ast.FunctionDef) and member.name in (
                "__init__",
                "forward",
                "__call__",
            ):
                if member.decorator_list:
                    problems.append(f"decorated method {member.name}")
                for inner in ast.walk(member):
                    if isinstance(inner, ast.Import | ast.ImportFrom | ast.ClassDef):
                        problems.append(f"{type(inner).__name__} inside a method")
                continue
            problems.append(f"class {statement.name}: unexpected {ast.dump(member)}")
    return problems


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _strings(tree: ast.Module) -> list[str]:
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and (
            body and _is_docstring(body[0])
        ):
            docstrings.add(id(body[0].value))  # type: ignore[attr-defined]
    problems = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and node.value not in _STRINGS
        ):
            problems.append(f"string constant {node.value!r} bnnc does not emit")
    return problems


def _free_names(tree: ast.Module) -> list[str]:
    """Names read that nothing in the module binds."""
    module_names = set(_ALLOWED_BUILTINS)
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            for alias in statement.names:
                module_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(statement, ast.ClassDef):
            module_names.add(statement.name)
    problems = []
    for cls in (s for s in tree.body if isinstance(s, ast.ClassDef)):
        for base in cls.bases:
            problems += _unbound(base, module_names)
        for member in cls.body:
            if isinstance(member, ast.AnnAssign):
                problems += _unbound(member.annotation, module_names)
            if not isinstance(member, ast.FunctionDef):
                continue
            bound = set(module_names)
            arguments = member.args
            for arg in [*arguments.args, *arguments.kwonlyargs]:
                bound.add(arg.arg)
                if arg.annotation is not None:
                    problems += _unbound(arg.annotation, module_names)
            for default in [*arguments.defaults, *arguments.kw_defaults]:
                if default is not None:
                    problems += _unbound(default, module_names)
            if member.returns is not None:
                problems += _unbound(member.returns, module_names)
            for statement in member.body:  # in order: a local is bound once assigned
                if isinstance(statement, ast.Assign):
                    problems += _unbound(statement.value, bound)
                    for target in statement.targets:
                        if isinstance(target, ast.Name):
                            bound.add(target.id)
                        else:
                            problems += _unbound(target, bound)
                else:
                    problems += _unbound(statement, bound)
    return problems


def _unbound(node: ast.AST, bound: set[str]) -> list[str]:
    return [
        f"name {n.id!r} is read but never bound"
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound
    ]
