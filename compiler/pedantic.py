"""Pedantic warnings: what a careful Bayesian modeller would want to hear.

The checker rejects programs that cannot run; these warnings flag programs
that run but are probably not what was meant. They are opt-in (``bnnc check
--pedantic``) and never errors:

- **BNN601** a Bayesian ``Linear`` / ``Conv1d`` / ``Conv2d`` layer's prior std
  is more than 10 times larger or smaller than its fan-in scale
  ``1/sqrt(fan_in)`` (``fan_in`` = input features, or input channels / groups
  x kernel area), so the prior predicts pre-activations of a very different
  scale than the inputs';
- **BNN602** a layer's initial posterior std ``softplus(rho_init)`` is above
  its prior std: the posterior starts wider than the prior;
- **BNN603** a layer is called but the result of that call never reaches any
  output of the network (a Bayesian layer still samples its weights and adds
  its KL term to the loss);
- **BNN604** a network that no other network uses has no Bayesian layer at
  all, directly or in a sub-network: it is an ordinary deterministic network.

Sizes are taken with the network's parameter defaults; a check whose sizes
depend on a parameter without a default is skipped.

>>> import bnnc
>>> from bnnc.compiler.pedantic import pedantic_warnings
>>> checked = bnnc.check("examples/digits.bnn")
>>> [w.code for w in pedantic_warnings(checked)]
['BNN601']
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from bnnc.compiler import ir
from bnnc.compiler.check.results import CheckedProgram, LayerInfo, NetworkInfo
from bnnc.compiler.check.values import AUTO, Evaluator, Value, bind_arguments
from bnnc.compiler.diagnostics import Diagnostic, DiagnosticSink, sort
from bnnc.compiler.graph import has_bayesian_layer, parameter_defaults
from bnnc.compiler.registry import REGISTRY
from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import Unknown

__all__ = ["FAN_IN_FACTOR", "pedantic_warnings"]

# BNN601 fires when the prior std is outside [1/F, F] x 1/sqrt(fan_in).
FAN_IN_FACTOR = 10.0

_FAN_IN_OPS = ("Linear", "Conv1d", "Conv2d")


def pedantic_warnings(
    checked: CheckedProgram, *, imported: bool = False
) -> list[Diagnostic]:
    """Pedantic warnings about the networks a program defines, in source order.

    With ``imported``, networks the program imports are examined too.
    """
    infos = list(checked.networks.values()) if imported else checked.main_networks()
    found: list[Diagnostic] = []
    for info in infos:
        known = parameter_defaults(info.network)
        for layer in info.layers.values():
            found.extend(_prior_scale(info, layer, known))
            found.extend(_posterior_width(info, layer))
        found.extend(_dead_calls(info))
    found.extend(_deterministic(checked, infos))
    return sort(found)


def _warning(code: str, message: str, span: ir.Span | None, *hints: str) -> Diagnostic:
    return Diagnostic(code, message, span, "warning", tuple(hints))


# --------------------------------------------------------------------------------------
# BNN601: prior std against the fan-in scale
# --------------------------------------------------------------------------------------


def _prior_scale(
    info: NetworkInfo, layer: LayerInfo, known: dict[str, int]
) -> Iterator[Diagnostic]:
    decl = layer.layer
    if layer.op is None or layer.op.name not in _FAN_IN_OPS or not decl.bayesian:
        return
    fan_in = _fan_in(info, layer, known)
    std = layer.prior.get("std")
    if fan_in is None or fan_in <= 0 or not std or std <= 0:
        return
    scale = 1.0 / math.sqrt(fan_in)
    ratio = std / scale
    if 1.0 / FAN_IN_FACTOR <= ratio <= FAN_IN_FACTOR:
        return
    low, high = scale / FAN_IN_FACTOR, scale * FAN_IN_FACTOR
    yield _warning(
        "BNN601",
        f"prior std {std!r} of layer `{decl.name}` is {ratio:.2g}x its fan-in scale "
        f"1/sqrt({fan_in}) = {scale:.2g}",
        _setting_span(decl, "prior") or decl.span,
        f"with {fan_in} inputs per output, a prior std between {low:.2g} and "
        f"{high:.2g} keeps the prior's pre-activations near the scale of the inputs",
        *_origin(info, decl, "prior", "std"),
    )


def _fan_in(info: NetworkInfo, layer: LayerInfo, known: dict[str, int]) -> int | None:
    """Inputs per output unit of a Linear or convolution, with parameter defaults."""
    assert layer.op is not None
    params: dict[str, Value] = {
        p.name: Size.of(p.name) if p.type == "int" else Unknown(p.type)
        for p in info.network.params
    }
    values = bind_arguments(
        layer.layer.name,
        layer.op.args,
        layer.layer.args,
        layer.layer.kwargs,
        layer.layer.span,
        Evaluator(params, known),
        DiagnosticSink(),
        auto_allowed=lambda name: name in layer.op.auto,  # type: ignore[union-attr]
    )
    if values is None:
        return None
    values.update(layer.auto)
    sizes: list[object] = []
    if layer.op.name == "Linear":
        sizes.append(values["input_size"])
    else:
        channels, groups = values["input_channels"], values["groups"]
        if not isinstance(channels, Size) or not isinstance(groups, Size):
            return None
        sizes.append(channels // groups)
        kernel = values["kernel_size"]
        sizes.extend(kernel if isinstance(kernel, tuple) else (kernel,))
    total = 1
    for size in sizes:
        if not isinstance(size, Size) or size is AUTO:
            return None
        number = size.evaluate(known)
        if number is None:
            return None
        total *= number
    return total


# --------------------------------------------------------------------------------------
# BNN602: posterior wider than the prior at initialisation
# --------------------------------------------------------------------------------------


def _softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def _posterior_width(info: NetworkInfo, layer: LayerInfo) -> Iterator[Diagnostic]:
    decl = layer.layer
    if layer.op is None or not decl.bayesian:
        return
    rho = layer.posterior.get("rho_init")
    std = layer.prior.get("std")
    if rho is None or not std or std <= 0:
        return
    sigma = _softplus(rho)
    if sigma <= std:
        return
    yield _warning(
        "BNN602",
        f"initial posterior std of layer `{decl.name}`, softplus(rho_init={rho!r}) = "
        f"{sigma:.2g}, is above its prior std {std!r}",
        _setting_span(decl, "posterior") or decl.span,
        f"start the posterior narrower than the prior: rho_init below "
        f"{_inverse_softplus(std):.3g}; -5 to -7 (std 0.0067 to 0.00091) is usual",
        *_origin(info, decl, "posterior", "rho_init"),
    )


# --------------------------------------------------------------------------------------
# Where a setting comes from
# --------------------------------------------------------------------------------------


def _setting_span(layer: ir.Layer, which: str) -> ir.Span | None:
    setting: ir.Distribution | None = getattr(layer, which)
    return setting.span if setting is not None else None


def _origin(
    info: NetworkInfo, layer: ir.Layer, which: str, key: str
) -> tuple[str, ...]:
    """Which level of the prior/posterior hierarchy set ``key`` (none: the layer)."""
    own: ir.Distribution | None = getattr(layer, which)
    if own is not None and key in own.params:
        return ()  # the warning points at the layer's own setting
    levels: list[tuple[ir.Distribution | None, str]] = [
        (getattr(info.network, which), f"network `{info.name}`'s `{which} default`"),
        (getattr(info.program, which), f"the file's `{which} default`"),
    ]
    for setting, where in levels:
        if setting is not None and key in setting.params:
            line = f" (line {setting.span.line})" if setting.span is not None else ""
            return (f"{key} comes from {where}{line}",)
    return (f"{key} is the runtime default",)


# --------------------------------------------------------------------------------------
# BNN603: layer calls whose result never reaches an output
# --------------------------------------------------------------------------------------


def _dead_calls(info: NetworkInfo) -> Iterator[Diagnostic]:
    body = info.network.body
    read: set[str] = set()
    # SSA-like dataflow: the definition each name refers to at each point.
    current: dict[str, int] = {}
    uses: list[set[int]] = []  # definitions each statement reads
    roots: set[int] = set()
    for index, statement in enumerate(body):
        if isinstance(statement, ir.Assign):
            names = _names(statement.value)
            read.update(names)
            uses.append({current[n] for n in names if n in current})
            current[statement.target] = index
        else:
            for output in statement.outputs:
                names = _names(output.value)
                read.update(names)
                roots.update(current[n] for n in names if n in current)
            uses.append(set())
            break  # the checker rejects statements after `return`
    live: set[int] = set()
    stack = list(roots)
    while stack:
        index = stack.pop()
        if index not in live:
            live.add(index)
            stack.extend(uses[index])
    for index, statement in enumerate(body[: len(uses)]):
        if not isinstance(statement, ir.Assign) or index in live:
            continue
        if statement.target not in read:
            continue  # never read at all: the checker's BNN210 says so already
        for call, decl in _layer_calls(statement.value, info.network):
            op = REGISTRY.get(decl.op)
            if op is None or op.kind != "layer":  # a network used as a layer
                cost = "its weights are never trained by the outputs"
            elif decl.bayesian:
                cost = (
                    "its weights are still sampled and its KL term still counts in "
                    "the loss"
                )
            else:
                cost = "it is computed for nothing"
            if any(index in reads for reads in uses):
                why = f"`{statement.target}` only feeds values that reach no output"
            else:
                why = f"this `{statement.target}` is reassigned before it is read"
            yield _warning(
                "BNN603",
                f"the result of layer `{call.func}` never reaches an output of "
                f"network `{info.name}`",
                call.span,
                f"{why}; {cost}",
            )


def _names(expr: ir.Expr) -> list[str]:
    """Names an expression reads (callees excluded)."""
    if isinstance(expr, ir.Name):
        return [expr.id]
    if isinstance(expr, ir.BinOp):
        return _names(expr.left) + _names(expr.right)
    if isinstance(expr, ir.Neg):
        return _names(expr.operand)
    if isinstance(expr, ir.Attribute):
        return _names(expr.value)
    if isinstance(expr, ir.Tuple):
        return [n for item in expr.items for n in _names(item)]
    if isinstance(expr, ir.Call):
        inner = [*expr.args, *(kw.value for kw in expr.kwargs)]
        return [n for arg in inner for n in _names(arg)]
    return []


def _layer_calls(expr: ir.Expr, network: ir.Network) -> list[tuple[ir.Call, ir.Layer]]:
    """Calls of the network's layers inside ``expr``, in source order."""
    found: list[tuple[ir.Call, ir.Layer]] = []
    if isinstance(expr, ir.Call):
        decl = next((d for d in network.layers if d.name == expr.func), None)
        if decl is not None:
            found.append((expr, decl))
        for arg in [*expr.args, *(kw.value for kw in expr.kwargs)]:
            found.extend(_layer_calls(arg, network))
    elif isinstance(expr, ir.BinOp):
        found.extend(_layer_calls(expr.left, network))
        found.extend(_layer_calls(expr.right, network))
    elif isinstance(expr, ir.Attribute):
        found.extend(_layer_calls(expr.value, network))
    elif isinstance(expr, ir.Neg):
        found.extend(_layer_calls(expr.operand, network))
    elif isinstance(expr, ir.Tuple):
        for item in expr.items:
            found.extend(_layer_calls(item, network))
    return found


# --------------------------------------------------------------------------------------
# BNN604: no Bayesian layer at all
# --------------------------------------------------------------------------------------


def _deterministic(
    checked: CheckedProgram, infos: list[NetworkInfo]
) -> Iterator[Diagnostic]:
    used = {
        decl.op
        for info in infos
        for decl in info.network.layers
        if decl.op in checked.networks
    }
    for info in infos:
        if info.name in used or has_bayesian_layer(checked, info.name):
            continue
        span = info.network.span
        if span is not None:  # point at the `network` keyword
            span = span.model_copy(
                update={"end_line": span.line, "end_column": span.column + 7}
            )
        yield _warning(
            "BNN604",
            f"network `{info.name}` has no Bayesian layer: its predictions carry no "
            "weight uncertainty",
            span,
            "remove `fixed` from at least one layer, e.g. the read-out",
        )
