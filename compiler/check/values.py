"""Compile-time values: evaluating argument expressions and binding them to ops."""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bnnc.compiler import ir
from bnnc.compiler.diagnostics import DiagnosticSink, did_you_mean
from bnnc.compiler.registry import REQUIRED, Arg
from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import Unknown

# Placeholder for an `auto` argument until its layer's first call resolves it.
AUTO = Size.of("?auto")

Value = Size | float | bool | str | None | tuple | Unknown

MAX_SIZE = 2**40  # larger sizes are certainly typos and would overflow int64 maths


class EvalError(Exception):
    """A compile-time expression could not be evaluated."""

    def __init__(self, code: str, message: str, span: ir.Span | None, *hints: str):
        super().__init__(message)
        self.code, self.message, self.span, self.hints = code, message, span, hints


@dataclass
class Evaluator:
    """Evaluates argument expressions against a network's parameter bindings."""

    params: Mapping[str, Value]
    known_values: Mapping[str, int]
    # Symbolic input dims (name -> input), for a precise message when used.
    runtime_dims: Mapping[str, str] = field(default_factory=dict)
    network: str = ""

    def __call__(self, expr: ir.Expr, *, allow_auto: bool = False) -> Value:
        return self.evaluate(expr, allow_auto=allow_auto)

    def evaluate(self, expr: ir.Expr, *, allow_auto: bool = False) -> Value:
        """The value of ``expr``; raises :class:`EvalError`."""
        if isinstance(expr, ir.Int):
            if abs(expr.value) > MAX_SIZE:
                raise EvalError(
                    "BNN104",
                    f"integer {expr.value} is too large (sizes are limited to 2**40)",
                    expr.span,
                )
            return Size.of(expr.value)
        if isinstance(expr, ir.Float):
            if not math.isfinite(expr.value):
                raise EvalError("BNN104", "numbers must be finite", expr.span)
            return expr.value
        if isinstance(expr, ir.Bool):
            return expr.value
        if isinstance(expr, ir.Str):
            return expr.value
        if isinstance(expr, ir.NoneLit):
            return None
        if isinstance(expr, ir.Auto):
            if not allow_auto:
                raise EvalError(
                    "BNN304",
                    "`auto` is only allowed for a layer's input size",
                    expr.span,
                    "write the size, or an expression of the network's parameters",
                )
            return AUTO
        if isinstance(expr, ir.Tuple):
            return tuple(self.evaluate(item) for item in expr.items)
        if isinstance(expr, ir.Name):
            if expr.id in self.params:
                return self.params[expr.id]
            if expr.id in self.runtime_dims:
                raise EvalError(
                    "BNN301",
                    f"`{expr.id}` is a run-time dimension of input "
                    f"`{self.runtime_dims[expr.id]}`, not a compile-time value",
                    expr.span,
                    "to size layers with it, make it a parameter: "
                    f"`network {self.network or 'Net'}({expr.id}: int)`",
                )
            raise EvalError(
                "BNN201",
                f"unknown name `{expr.id}` in a compile-time argument",
                expr.span,
                *did_you_mean(expr.id, self.params),
            )
        if isinstance(expr, ir.Neg):
            return self._arith("-", Size.of(0), self.evaluate(expr.operand), expr)
        if isinstance(expr, ir.BinOp):
            return self._arith(
                expr.op, self.evaluate(expr.left), self.evaluate(expr.right), expr
            )
        raise EvalError(
            "BNN301",
            "a call cannot be used as a compile-time argument",
            expr.span,
            "layer arguments are numbers, parameters or arithmetic on them",
        )

    def _arith(self, op: str, left: Value, right: Value, expr: ir.Expr) -> Value:
        for operand in (left, right):
            if isinstance(operand, bool | str | tuple) or operand is None:
                raise EvalError(
                    "BNN301",
                    f"`{op}` needs numbers, not {describe(operand)}",
                    expr.span,
                )
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            is_int = all(
                isinstance(v, Size) or (isinstance(v, Unknown) and v.type == "int")
                for v in (left, right)
            )
            return Unknown("int" if is_int and op != "/" else "float")
        if isinstance(left, Size) and isinstance(right, Size) and op != "/":
            if op in ("//", "%") and self.known(right) == 0:
                raise EvalError("BNN305", "division by zero", expr.span)
            if (
                op in ("//", "%")
                and right.constant is None
                and self.known(right) is None
            ):
                pass  # stays symbolic
            result = {
                "+": lambda: left + right,
                "-": lambda: left - right,
                "*": lambda: left * right,
                "//": lambda: left // right,
                "%": lambda: left % right,
            }[op]()
            known = self.known(result)
            if known is not None and abs(known) > MAX_SIZE:
                raise EvalError(
                    "BNN104", f"size {known} is too large (limit {MAX_SIZE})", expr.span
                )
            return result
        a, b = self.as_float(left), self.as_float(right)
        if a is None or b is None:
            return Unknown("float")
        if op in ("/", "//", "%") and b == 0:
            raise EvalError("BNN305", "division by zero", expr.span)
        value = {
            "+": a + b,
            "-": a - b,
            "*": a * b,
            "/": a / b if b else math.nan,
            "//": a // b if b else math.nan,
            "%": a % b if b else math.nan,
        }[op]
        if not math.isfinite(value):
            raise EvalError("BNN104", "arithmetic overflowed", expr.span)
        return value

    def known(self, size: Size) -> int | None:
        """Integer value of a size under the known parameter values."""
        return size.evaluate(self.known_values)

    def as_float(self, value: Value) -> float | None:
        """A number as float, or None when it is not known."""
        if isinstance(value, float):
            return value
        if isinstance(value, Size):
            known = self.known(value)
            return None if known is None else float(known)
        return None


def describe(value: Value) -> str:
    """A short description of a value's type for messages."""
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, Size):
        return "an int"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple):
        return "a tuple"
    if value is None:
        return "none"
    if isinstance(value, Unknown):
        return f"a {value.type} parameter"
    return type(value).__name__


def bind_arguments(
    what: str,
    specs: Sequence[Arg],
    args: Sequence[ir.Expr],
    kwargs: Sequence[ir.Keyword],
    span: ir.Span | None,
    evaluate: Evaluator,
    sink: DiagnosticSink,
    *,
    auto_allowed: Callable[[str], bool] = lambda name: False,
) -> dict[str, Value] | None:
    """Match arguments to ``specs``, evaluate and check them.

    Returns every argument's value (defaults filled in), or None after reporting
    errors to ``sink``.
    """
    ok = True
    given: dict[str, tuple[ir.Expr, ir.Span | None]] = {}
    names = [spec.name for spec in specs]
    if len(args) > len(specs):
        extra = args[len(specs)]
        sink.error(
            "BNN207",
            f"{what} takes at most {len(specs)} positional argument(s), "
            f"got {len(args)}",
            extra.span or span,
            f"arguments: {', '.join(names) or '(none)'}",
        )
        ok = False
    for spec, expr in zip(specs, args, strict=False):
        given[spec.name] = (expr, expr.span)
    suggested: set[str] = set()  # args an unknown keyword was probably meant as
    for kw in kwargs:
        if kw.name not in names:
            hints = did_you_mean(kw.name, names)
            suggested.update(n for n in names if hints and f"`{n}`" in hints[0])
            sink.error(
                "BNN204",
                f"{what} has no argument `{kw.name}`",
                kw.span or span,
                *(hints or (f"arguments: {', '.join(names)}",)),
            )
            ok = False
        elif kw.name in given:
            sink.error(
                "BNN206", f"argument `{kw.name}` of {what} given twice", kw.span or span
            )
            ok = False
        else:
            given[kw.name] = (kw.value, kw.span or kw.value.span)
    values: dict[str, Value] = {}
    for spec in specs:
        if spec.name not in given:
            if spec.required and spec.name not in suggested:
                sink.error(
                    "BNN205",
                    f"{what} is missing argument `{spec.name}`",
                    span,
                    f"arguments: {_signature(specs)}",
                )
                ok = False
            else:
                values[spec.name] = _default_value(spec)
            continue
        expr, where = given[spec.name]
        try:
            value = evaluate(expr, allow_auto=auto_allowed(spec.name))
        except EvalError as error:
            sink.error(error.code, error.message, error.span or where, *error.hints)
            ok = False
            continue
        if (
            isinstance(value, float)
            and spec.kind in ("size", "int", "int_or_pair", "dim", "shape")
            and isinstance(expr, ir.BinOp)
            and expr.op == "/"
        ):
            sink.error(
                "BNN305",
                f"argument `{spec.name}` of {what} must be an int, but `/` gives a "
                "float",
                where,
                "use `//` for integer division",
            )
            ok = False
            continue
        checked = check_kind(what, spec, value, where, evaluate, sink)
        if checked is _INVALID:
            ok = False
        else:
            values[spec.name] = checked
    return values if ok else None


_INVALID = object()


def _signature(specs: Sequence[Arg]) -> str:
    return ", ".join(
        spec.name
        if spec.required
        else f"{spec.name}={spec.default!r}".replace("None", "none")
        .replace("True", "true")
        .replace("False", "false")
        for spec in specs
    )


def _default_value(spec: Arg) -> Value:
    default = spec.default
    if default is REQUIRED or default is None:
        return None
    if isinstance(default, bool | float | str):
        return default
    if isinstance(default, int):
        return default if spec.kind == "dim" else Size.of(default)
    return default  # pragma: no cover - registry only uses the kinds above


def check_kind(
    what: str,
    spec: Arg,
    value: Value,
    span: ir.Span | None,
    evaluate: Evaluator,
    sink: DiagnosticSink,
) -> object:
    """Check ``value`` against the argument's kind and range; convert it."""

    def wrong(expected: str) -> object:
        sink.error(
            "BNN301",
            f"argument `{spec.name}` of {what} must be {expected}, got "
            f"{describe(value)}",
            span,
        )
        return _INVALID

    def in_range(number: float | None) -> bool:
        if number is None:
            return True
        low, high = spec.minimum, spec.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = []
            if low is not None:
                bounds.append(f">= {low:g}")
            if high is not None:
                bounds.append(f"<= {high:g}")
            sink.error(
                "BNN302",
                f"argument `{spec.name}` of {what} must be {' and '.join(bounds)}, "
                f"got {number:g}",
                span,
            )
            return False
        return True

    if value is None:
        return None if spec.optional else wrong(_kind_text(spec))
    if value is AUTO:
        return AUTO
    if isinstance(value, Unknown):
        expected = {"float": "float", "bool": "bool"}.get(spec.kind, "int")
        if value.type == expected or (expected == "float" and value.type == "int"):
            return value
        return wrong(_kind_text(spec))
    kind = spec.kind
    if kind in ("size", "int"):
        if not isinstance(value, Size):
            return wrong(_kind_text(spec))
        return value if in_range(evaluate.known(value)) else _INVALID
    if kind == "int_or_pair":
        # A tuple must be a pair: shape rules read both items of it.
        items = value if isinstance(value, tuple) else (value,)
        if len(items) != (2 if isinstance(value, tuple) else 1) or not all(
            isinstance(v, Size) for v in items
        ):
            return wrong("an int or a pair of ints")
        if not all(in_range(evaluate.known(v)) for v in items):
            return _INVALID
        return value
    if kind == "float":
        number = evaluate.as_float(value) if not isinstance(value, bool) else None
        if isinstance(value, bool) or not isinstance(value, float | Size):
            return wrong("a number")
        return (
            (number if number is not None else Unknown("float"))
            if in_range(number)
            else _INVALID
        )
    if kind == "bool":
        return value if isinstance(value, bool) else wrong("true or false")
    if kind == "dim":
        if not isinstance(value, Size) or value.constant is None:
            if isinstance(value, Size):
                sink.error(
                    "BNN301",
                    f"argument `{spec.name}` of {what} must be an integer literal "
                    f"(an axis), not an expression of parameters (`{value}`)",
                    span,
                )
                return _INVALID
            return wrong("an integer literal (an axis)")
        return value.constant
    if kind == "shape":
        items = value if isinstance(value, tuple) else (value,)
        if not items or not all(isinstance(v, Size) for v in items):
            return wrong("a tuple of sizes such as (16, 4, 4)")
        for item in items:
            known = evaluate.known(item)
            if known is not None and known < 1 and known != -1:
                sink.error(
                    "BNN302",
                    f"sizes in `{spec.name}` must be positive or -1, got {known}",
                    span,
                )
                return _INVALID
        return tuple(items)
    return wrong(_kind_text(spec))  # pragma: no cover


def _kind_text(spec: Arg) -> str:
    return {
        "size": "a positive int",
        "int": "an int",
        "int_or_pair": "an int or a pair of ints",
        "float": "a number",
        "bool": "true or false",
        "dim": "an integer axis",
        "shape": "a tuple of sizes",
    }[spec.kind] + (" or none" if spec.optional else "")


# Names that generated code uses itself, or that would shadow Python or
# torch.nn.Module / flax.nnx.Module attributes. Spec names may not take them.
GENERATED_NAMES = frozenset(
    {
        "self",
        "torch",
        "F",
        "bnn",
        "jax",
        "jnp",
        "nnx",
        "np",
        "math",
        "typing",
        "NamedTuple",
        "Tensor",
        "Array",
        "super",
        "annotations",
        "rngs",
        "forward",
        "training",
        "train",
        "eval",
        "parameters",
        "buffers",
        "modules",
        "children",
        "state_dict",
        "load_state_dict",
        "to",
        "cpu",
        "cuda",
        "float",
        "double",
        "half",
        "apply",
        "zero_grad",
        "register_buffer",
        "register_parameter",
        "register_module",
        "add_module",
        "named_modules",
        "named_parameters",
        "named_buffers",
        "named_children",
        "requires_grad_",
        "type",
        "share_memory",
        "extra_repr",
        "get_submodule",
        "get_parameter",
        "get_buffer",
        "compile",
        "bfloat16",
        "ipu",
        "xpu",
        "mtia",
        "dump_patches",
        "call_super_init",
        "iter_children",
        "iter_modules",
        "set_attributes",
        "sow",
        "perturb",
        "split",
        "update",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_backward_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_state_dict_pre_hook",
        "register_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_load_state_dict_post_hook",
        "get_extra_state",
        "set_extra_state",
        "set_submodule",
        "to_empty",
        "T_destination",
        "kl_cost",
        "freeze",
        "unfreeze",
        "is_bayesian",
        "frozen",
        "deterministic",
    }
)
PYTHON_BUILTINS = frozenset(
    {
        "print",
        "len",
        "range",
        "int",
        "str",
        "bool",
        "list",
        "dict",
        "set",
        "tuple",
        "object",
        "isinstance",
        "getattr",
        "setattr",
        "hasattr",
        "id",
        "min",
        "max",
        "sum",
        "abs",
        "input",
        "open",
        "exec",
        "eval",
        "compile",
        "globals",
        "locals",
        "vars",
        "dir",
        "iter",
        "next",
        "map",
        "filter",
        "zip",
        "enumerate",
        "sorted",
        "reversed",
        "any",
        "all",
        "hash",
        "repr",
        "format",
        "type",
        "super",
        "property",
        "staticmethod",
        "classmethod",
        "Exception",
        "ValueError",
        "TypeError",
        "None",
        "True",
        "False",
        "__import__",
    }
)


def reserved_reason(name: str) -> str | None:
    """Why ``name`` cannot name a parameter, input, layer or value (None if ok)."""
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "it is a Python keyword"
    if name.startswith("_"):
        return "names starting with `_` are reserved for generated code"
    if name in GENERATED_NAMES:
        return "generated code uses this name"
    if name in PYTHON_BUILTINS:
        return "it shadows a Python builtin used by generated code"
    if not name.isascii() or not name.isidentifier():
        return "names must be ASCII identifiers"
    return None
