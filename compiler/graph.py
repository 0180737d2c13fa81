"""Network graphs: a checked program as a Graphviz DOT digraph, and rendering.

>>> import bnnc
>>> from bnnc.compiler.graph import to_dot
>>> dot = to_dot(bnnc.check("examples/digits.bnn"))  # doctest: +SKIP

Each network becomes a cluster. Nodes are the network's inputs, every layer
call (a layer called twice is two nodes: a Bayesian layer draws fresh weights
at each call), functional ops, ``+``, output heads and outputs. Edges follow
the data and are labelled with the inferred shape of the value flowing, with
the network's parameter defaults filled in (``[B, 16, 4, 4]``) or, with
``symbolic=True``, as the checker infers them for any parameter values
(``[B, width, 4, 4]``).

Node styles: Bayesian layers are blue rounded boxes with a double border,
``fixed`` layers grey square boxes, networks used as layers ``component``
boxes (blue when they hold a Bayesian layer), functional ops white ellipses,
output heads orange hexagons, inputs and outputs bold ellipses / houses.

:func:`render` turns DOT text into SVG or PNG with Graphviz's ``dot``
program, raising :class:`GraphvizMissing` when it is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from bnnc.compiler import ir
from bnnc.compiler.check.results import CheckedProgram, NetworkInfo
from bnnc.compiler.check.values import EvalError, Evaluator
from bnnc.compiler.registry import DEFAULT_ESTIMATOR, REGISTRY
from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import DistType, TensorType, ValueType

__all__ = ["GraphvizError", "GraphvizMissing", "render", "to_dot"]

Format = Literal["svg", "png"]
FORMATS: tuple[str, ...] = ("svg", "png")

_FONT = "Helvetica"
_BAYESIAN_FILL = "#cfe2ff"
_FIXED_FILL = "#e9ecef"
_HEAD_FILL = "#ffe5cc"


class GraphvizError(RuntimeError):
    """Graphviz failed to render a graph."""


class GraphvizMissing(GraphvizError):  # noqa: N818 (the name the CLI uses)
    """Graphviz's ``dot`` program is not installed (not on ``PATH``)."""


# --------------------------------------------------------------------------------------
# DOT text
# --------------------------------------------------------------------------------------


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string; newlines become centred breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\n").replace("\r", "\n")
    return '"' + escaped.replace("\n", "\\n") + '"'


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{key}={quote(value)}" for key, value in attrs.items())


def to_dot(
    checked: CheckedProgram, network: str | None = None, *, symbolic: bool = False
) -> str:
    """The network ``network`` (default: every network the file defines) as DOT.

    ``network`` may also name an imported network. Shapes on edges use the
    networks' parameter defaults unless ``symbolic`` is true. The text is
    deterministic: the same program gives the same bytes.
    """
    if network is not None:
        if network not in checked.networks:
            known = ", ".join(checked.networks) or "none"
            raise ValueError(f"no network {network!r}; the program has {known}")
        infos = [checked.networks[network]]
    else:
        infos = checked.main_networks()
    title = checked.program.source or "bnnc"
    graph = {"rankdir": "TB", "fontname": _FONT, "label": _basename(title)}
    lines = [
        f"digraph {quote('bnnc')} {{",
        f"  graph [{_attrs({**graph, 'labelloc': 't'})}];",
        f"  node [{_attrs({'fontname': _FONT, 'fontsize': '11'})}];",
        f"  edge [{_attrs({'fontname': _FONT, 'fontsize': '9'})}];",
    ]
    for info in infos:
        lines.extend(_NetworkGraph(checked, info, symbolic).lines())
    lines.append("}")
    return "\n".join(lines) + "\n"


def _basename(path: str) -> str:
    return os.path.basename(path) or path


@dataclass(frozen=True)
class _Flow:
    """Where a forward value comes from: a node, and a field path into it."""

    node: str
    path: str = ""
    type: ValueType | None = None


@dataclass
class _NetworkGraph:
    checked: CheckedProgram
    info: NetworkInfo
    symbolic: bool
    nodes: list[str] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    counter: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    env: dict[str, _Flow] = field(default_factory=dict)
    known: dict[str, Size] = field(default_factory=dict)
    first: list[str] = field(default_factory=list)  # input nodes, ranked together
    last: list[str] = field(default_factory=list)  # output nodes, ranked together

    def __post_init__(self) -> None:
        if not self.symbolic:
            self.known = {
                name: Size.of(value)
                for name, value in parameter_defaults(self.info.network).items()
            }

    # --- output --------------------------------------------------------------------
    def lines(self) -> list[str]:
        net = self.info.network
        for decl in net.inputs:
            node = f"{net.name}/input/{decl.name}"
            tensor = self.info.inputs.get(decl.name)
            label = f"input {decl.name}"
            if tensor is not None:
                label += f"\n{self.describe(tensor)}"
            self.node(node, label, shape="invhouse", style="bold")
            self.first.append(node)
            self.env[decl.name] = _Flow(node, "", tensor)
        for statement in net.body:
            if isinstance(statement, ir.Assign):
                flow = self.flow(statement.value)
                if flow is not None:
                    kind = self.type_of(statement.value) or flow.type
                    self.env[statement.target] = _Flow(flow.node, flow.path, kind)
            else:
                self.outputs(statement)
        cluster = f"cluster_{net.name}"
        attrs = {"label": _signature(net), "fontname": _FONT, "style": "rounded"}
        if net.doc:
            attrs["tooltip"] = net.doc
        body = [f"  subgraph {quote(cluster)} {{"]
        body.extend(f"    {key}={quote(value)};" for key, value in attrs.items())
        body.extend(f"    {line}" for line in self.nodes)
        for group in (self.first, self.last):
            if len(group) > 1:
                members = " ".join(f"{quote(n)};" for n in group)
                body.append(f"    {{ rank=same; {members} }}")
        body.append("  }")
        body.extend(f"  {line}" for line in self.edges)
        return body

    def node(self, name: str, label: str, **attrs: str) -> None:
        self.nodes.append(f"{quote(name)} [{_attrs({'label': label, **attrs})}];")

    def edge(self, source: _Flow, target: str, label: str) -> None:
        self.edges.append(
            f"{quote(source.node)} -> {quote(target)} [{_attrs({'label': label})}];"
        )

    def fresh(self) -> str:
        self.counter += 1
        return f"{self.info.network.name}/n{self.counter}"

    # --- types ---------------------------------------------------------------------
    def type_of(self, expr: ir.Expr) -> ValueType | None:
        found = self.info.expression_types.get(id(expr))
        if found is None and isinstance(expr, ir.Name) and expr.id in self.env:
            return self.env[expr.id].type
        return found

    def describe(self, value: ValueType | None) -> str:
        if value is None:
            return ""
        if isinstance(value, TensorType):
            if self.known:
                value = value.with_dims([d.substitute(self.known) for d in value.dims])
            return value.describe()
        if isinstance(value, DistType):
            stoch = value.field("stoch")
            return value.kind + (self.describe(stoch) if stoch is not None else "")
        inner = ", ".join(f"{n}: {self.describe(t)}" for n, t in value.fields)
        return f"({inner})"

    def label(self, flow: _Flow, expr: ir.Expr) -> str:
        kind = self.type_of(expr) or flow.type
        shape = self.describe(kind)
        if flow.path:
            return f"{flow.path}: {shape}" if shape else flow.path
        return shape

    # --- forward -------------------------------------------------------------------
    def flow(self, expr: ir.Expr) -> _Flow | None:
        """Add the nodes computing ``expr``; where its value comes from."""
        if isinstance(expr, ir.Name):
            return self.env.get(expr.id)
        if isinstance(expr, ir.Attribute):
            inner = self.flow(expr.value)
            if inner is None:
                return None
            path = f"{inner.path}.{expr.name}" if inner.path else expr.name
            return _Flow(inner.node, path, self.type_of(expr))
        if isinstance(expr, ir.BinOp):
            sources = self.sources([expr.left, expr.right])
            node = self.fresh()
            self.node(node, expr.op, shape="circle")
            self.connect(sources, node)
            return _Flow(node, "", self.type_of(expr))
        if isinstance(expr, ir.Call):
            return self.call(expr)
        return None

    def sources(self, inputs: Iterable[ir.Expr]) -> list[tuple[_Flow, str]]:
        """Add the nodes computing ``inputs`` first, so nodes follow the data."""
        found = []
        for arg in inputs:
            source = self.flow(arg)
            if source is not None:
                found.append((source, self.label(source, arg)))
        return found

    def connect(self, sources: list[tuple[_Flow, str]], node: str) -> None:
        for source, label in sources:
            self.edge(source, node, label)

    def call(self, expr: ir.Call) -> _Flow | None:
        decl = next((d for d in self.info.network.layers if d.name == expr.func), None)
        if decl is not None:
            return self.layer_call(expr, decl)
        op = REGISTRY.get(expr.func)
        tensors, options = self.split(expr)
        sources = self.sources(tensors)
        node = self.fresh()
        text = ", ".join(
            [
                *(show(e) for e in options),
                *(f"{k.name}={show(k.value)}" for k in expr.kwargs),
            ]
        )
        title = f"{expr.func}({text})" if text else expr.func
        if op is not None and op.kind == "head":
            self.node(
                node,
                f"{title}\nhead",
                shape="hexagon",
                style="filled",
                fillcolor=_HEAD_FILL,
            )
        else:
            self.node(node, title, shape="ellipse")
        self.connect(sources, node)
        return _Flow(node, "", self.type_of(expr))

    def layer_call(self, expr: ir.Call, decl: ir.Layer) -> _Flow:
        sources = self.sources(expr.args)
        node = self.fresh()
        count = self.calls[expr.func] = self.calls.get(expr.func, 0) + 1
        title = expr.func + (f" (call {count})" if count > 1 else "")
        info = self.info.layers.get(expr.func)
        op = REGISTRY.get(decl.op)
        if op is None or op.kind != "layer":  # a network used as a layer
            bayesian = has_bayesian_layer(self.checked, decl.op)
            self.node(
                node,
                f"{title}\n{decl.op}",
                shape="component",
                style="filled",
                fillcolor=_BAYESIAN_FILL if bayesian else _FIXED_FILL,
                tooltip=_layer_tooltip(decl, f"network {decl.op}"),
            )
            self.connect(sources, node)
            return _Flow(node, "", self.type_of(expr) or self.sub_output(decl.op))
        if decl.bayesian:
            detail = "Bayesian"
            if info is not None:
                detail = (
                    f"prior {_setting(info.prior)}; "
                    f"posterior {_setting(info.posterior)}"
                )
                if info.estimator != DEFAULT_ESTIMATOR:
                    detail += f"; estimator {info.estimator}"
            self.node(
                node,
                f"{title}\n{decl.op} (Bayesian)",
                shape="box",
                style="rounded,filled,bold",
                peripheries="2",
                fillcolor=_BAYESIAN_FILL,
                tooltip=_layer_tooltip(decl, detail),
            )
        else:
            self.node(
                node,
                f"{title}\nfixed {decl.op}",
                shape="box",
                style="filled",
                fillcolor=_FIXED_FILL,
                tooltip=_layer_tooltip(decl, "fixed: deterministic weights"),
            )
        self.connect(sources, node)
        return _Flow(node, "", self.type_of(expr))

    def sub_output(self, network: str) -> ValueType | None:
        """What a sub-network returns when the checker kept no type (a head)."""
        info = self.checked.networks.get(network)
        if info is not None and len(info.outputs) == 1 and not info.outputs[0][0]:
            kind = info.outputs[0][1]
            return DistType(kind.kind, ()) if isinstance(kind, DistType) else None
        return None

    def split(self, expr: ir.Call) -> tuple[list[ir.Expr], list[ir.Expr]]:
        """The tensor inputs of a functional op or head, and its other arguments."""
        op = REGISTRY.get(expr.func)
        args = list(expr.args)
        if op is not None and op.kind == "head":
            return args[:1], args[1:]
        tensors: list[ir.Expr] = []
        while args and self.is_tensor(args[0]):
            tensors.append(args.pop(0))
        return tensors, args

    def is_tensor(self, expr: ir.Expr) -> bool:
        # As the checker decides: leading arguments that refer to values.
        if isinstance(expr, ir.Name):
            return expr.id not in {p.name for p in self.info.network.params}
        if isinstance(expr, ir.Call | ir.Attribute):
            return True
        if isinstance(expr, ir.BinOp):
            return self.is_tensor(expr.left) or self.is_tensor(expr.right)
        return False

    def outputs(self, statement: ir.Return) -> None:
        types = dict(self.info.outputs) if self.info.outputs else {}
        net = self.info.network.name
        for output in statement.outputs:
            source = self.flow(output.value)
            name = output.name
            node = f"{net}/output/{name}" if name else f"{net}/output"
            self.node(node, f"output {name}" if name else "output", shape="house")
            self.last.append(node)
            if source is None:
                continue
            kind = types.get(name) or self.type_of(output.value) or source.type
            label = self.describe(kind)
            if source.path:
                label = f"{source.path}: {label}" if label else source.path
            self.edge(source, node, label)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def parameter_defaults(network: ir.Network) -> dict[str, int]:
    """The integer parameters of a network that have a default, with its value."""
    known: dict[str, int] = {}
    for param in network.params:
        if param.type != "int" or param.default is None:
            continue
        try:
            value = Evaluator({}, {}).evaluate(param.default)
        except EvalError:
            continue
        if isinstance(value, Size) and value.constant is not None:
            known[param.name] = value.constant
    return known


def _signature(network: ir.Network) -> str:
    params = []
    for param in network.params:
        text = f"{param.name}: {param.type}"
        if param.default is not None:
            text += f" = {show(param.default)}"
        params.append(text)
    lines = [f"network {network.name}("]
    for i, text in enumerate(params):
        text += ", " if i < len(params) - 1 else ""
        if len(lines[-1]) + len(text) > 60 and not lines[-1].endswith("("):
            lines.append("    ")
        lines[-1] += text
    return "\n".join(line.rstrip() for line in lines) + ")"


def _setting(values: dict[str, float]) -> str:
    return "Gaussian(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"


def _layer_tooltip(layer: ir.Layer, detail: str) -> str:
    args = [show(a) for a in layer.args] + [
        f"{k.name}={show(k.value)}" for k in layer.kwargs
    ]
    for which in ("prior", "posterior"):
        setting: ir.Distribution | None = getattr(layer, which)
        if setting is not None:
            args.append(f"{which}={_setting(setting.params)}")
    if layer.estimator is not None:
        args.append(f"estimator={layer.estimator.name}")
    fixed = "fixed " if not layer.bayesian else ""
    text = f"{layer.name} = {fixed}{layer.op}({', '.join(args)})\n{detail}"
    if layer.comment:
        text += f"\n# {layer.comment}"
    return text


def has_bayesian_layer(
    checked: CheckedProgram, network: str, seen: frozenset[str] = frozenset()
) -> bool:
    """Whether a network holds a Bayesian layer, directly or in a sub-network."""
    info = checked.networks.get(network)
    if info is None or network in seen:
        return False
    for decl in info.network.layers:
        op = REGISTRY.get(decl.op)
        if op is not None and op.kind == "layer":
            if decl.bayesian:
                return True
        elif has_bayesian_layer(checked, decl.op, seen | {network}):
            return True
    return False


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "/": 2, "%": 2}


def show(expr: ir.Expr) -> str:
    """An expression as ``.bnn`` source text (for labels)."""
    if isinstance(expr, ir.Int):
        return str(expr.value)
    if isinstance(expr, ir.Float):
        return repr(expr.value)
    if isinstance(expr, ir.Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, ir.NoneLit):
        return "none"
    if isinstance(expr, ir.Auto):
        return "auto"
    if isinstance(expr, ir.Str):
        escaped = expr.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(expr, ir.Name):
        return expr.id
    if isinstance(expr, ir.Tuple):
        items = [show(item) for item in expr.items]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(expr, ir.Neg):
        inner = show(expr.operand)
        return f"-({inner})" if isinstance(expr.operand, ir.BinOp) else f"-{inner}"
    if isinstance(expr, ir.BinOp):
        mine = _PRECEDENCE[expr.op]
        left, right = show(expr.left), show(expr.right)
        if isinstance(expr.left, ir.BinOp) and _PRECEDENCE[expr.left.op] < mine:
            left = f"({left})"
        if isinstance(expr.right, ir.BinOp) and _PRECEDENCE[expr.right.op] <= mine:
            right = f"({right})"
        return f"{left} {expr.op} {right}"
    if isinstance(expr, ir.Attribute):
        return f"{show(expr.value)}.{expr.name}"
    args = [show(a) for a in expr.args] + [
        f"{k.name}={show(k.value)}" for k in expr.kwargs
    ]
    return f"{expr.func}({', '.join(args)})"


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def render(dot: str, fmt: Format = "svg", *, timeout: float = 60.0) -> bytes:
    """Render DOT text to SVG or PNG bytes with Graphviz's ``dot`` program.

    Raises :class:`GraphvizMissing` when ``dot`` is not on ``PATH`` and
    :class:`GraphvizError` when it fails.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown graph format {fmt!r}; choose svg or png")
    executable = shutil.which("dot")
    if executable is None:
        raise GraphvizMissing(
            "Graphviz's `dot` is not installed; install graphviz "
            "(e.g. `apt-get install graphviz` or `brew install graphviz`) "
            "or use the DOT text"
        )
    try:
        result = subprocess.run(
            [executable, f"-T{fmt}"],
            input=dot.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GraphvizError(f"Graphviz's `dot` failed: {error}") from None
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"Graphviz's `dot` failed: {detail}")
    return result.stdout
