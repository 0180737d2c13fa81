"""The JAX backend: Flax NNX ``nnx.Module`` classes over ``bnnc.runtime.jax``.

Only what differs from the torch backend lives here: imports, the ``rngs``
constructor argument, ``__call__`` instead of ``forward``, and one emitter per
functional op (torch's ``F.*`` become ``jax.nn`` / ``jnp`` / runtime helpers with
torch's exact semantics, so both backends compute the same numbers).
"""

from __future__ import annotations

import re

from bnnc.compiler import ir
from bnnc.compiler.backends.base import FunctionCall, FunctionEmitter, Generator
from bnnc.compiler.check import LayerInfo, NetworkInfo


def _call(callee: str, call: FunctionCall, **renamed: str) -> str:
    """``callee(tensors..., name=value...)`` for the options the spec wrote.

    ``renamed`` maps a registry option name to the JAX keyword (``dim`` ->
    ``axis``); an option mapped to ``""`` is passed positionally.
    """
    parts = list(call.tensors)
    for name, value in call.options.items():
        keyword = renamed.get(name, name)
        parts.append(value if keyword == "" else f"{keyword}={value}")
    return f"{callee}({', '.join(parts)})"


def _simple(callee: str) -> FunctionEmitter:
    return lambda call: _call(callee, call)


def _axis(callee: str) -> FunctionEmitter:
    def emit(call: FunctionCall) -> str:
        dim = call.options.get("dim", "-1")
        return f"{callee}({call.tensors[0]}, axis={dim})"

    return emit


def _pool(callee: str) -> FunctionEmitter:
    def emit(call: FunctionCall) -> str:
        parts = [*call.tensors, call.options["kernel_size"]]
        for name in ("stride", "padding"):
            if name in call.options:
                parts.append(f"{name}={call.options[name]}")
        return f"{callee}({', '.join(parts)})"

    return emit


def _reduce(callee: str) -> FunctionEmitter:
    def emit(call: FunctionCall) -> str:
        parts = [*call.tensors, f"axis={call.options['dim']}"]
        if "keepdim" in call.options:
            parts.append(f"keepdims={call.options['keepdim']}")
        return f"{callee}({', '.join(parts)})"

    return emit


def _flatten(call: FunctionCall) -> str:
    parts = [*call.tensors, call.options.get("start_dim", "1")]
    if "end_dim" in call.options:
        parts.append(call.options["end_dim"])
    return f"bnn.flatten({', '.join(parts)})"


FUNCTION_EMITTERS: dict[str, FunctionEmitter] = {
    "relu": _simple("jax.nn.relu"),
    "gelu": lambda call: f"jax.nn.gelu({call.tensors[0]}, approximate=False)",
    "tanh": _simple("jnp.tanh"),
    "sigmoid": _simple("jax.nn.sigmoid"),
    "softplus": _simple("jax.nn.softplus"),
    "silu": _simple("jax.nn.silu"),
    "elu": _simple("jax.nn.elu"),
    "leaky_relu": _simple("jax.nn.leaky_relu"),
    "softmax": _axis("jax.nn.softmax"),
    "log_softmax": _axis("jax.nn.log_softmax"),
    "flatten": _flatten,
    "reshape": lambda call: (
        f"bnn.reshape_batch({call.tensors[0]}, {call.options['shape']})"
    ),
    "dropout": lambda call: (
        f"bnn.dropout({call.tensors[0]}, {call.options.get('p', '0.5')}, "
        "rngs=self.rngs, deterministic=self.deterministic)"
    ),
    "max_pool1d": _pool("bnn.max_pool1d"),
    "avg_pool1d": _pool("bnn.avg_pool1d"),
    "max_pool2d": _pool("bnn.max_pool2d"),
    "avg_pool2d": _pool("bnn.avg_pool2d"),
    "layer_norm": _simple("bnn.layer_norm"),
    "batch_norm": _simple("bnn.batch_norm"),
    "concat": lambda call: (
        f"jnp.concatenate([{', '.join(call.tensors)}], "
        f"axis={call.options.get('dim', '1')})"
    ),
    "add": lambda call: f"jnp.add({', '.join(call.tensors)})",
    "mean": _reduce("jnp.mean"),
    "sum": _reduce("jnp.sum"),
}

LAYER_CLASSES = {
    "Linear": "Linear",
    "Conv1d": "Conv1d",
    "Conv2d": "Conv2d",
    "Embedding": "Embedding",
    "LSTM": "LSTM",
}


class JaxGenerator(Generator):
    """Generates ``flax.nnx.Module`` subclasses."""

    name = "jax"
    title = "JAX/Flax NNX"
    tensor_annotation = "jax.Array"
    forward_name = "__call__"
    module_base = "nnx.Module"
    function_emitters = FUNCTION_EMITTERS
    layer_classes = LAYER_CLASSES

    def imports(self, needs_record: bool, body: str) -> list[str]:
        lines = ["from typing import NamedTuple", ""] if needs_record else []
        # One third-party block, in ruff's isort order for a user's project.
        lines.append("import jax")
        if re.search(r"\bjnp\.", body):
            lines.append("import jax.numpy as jnp")
        lines += ["from bnnc.runtime import jax as bnn", "from flax import nnx"]
        return lines

    def init_parameters(self, params: list[str]) -> list[str]:
        rngs = "rngs: nnx.Rngs | None = None"
        return [*params, rngs] if "*" in params else [*params, "*", rngs]

    def init_prologue(self, info: NetworkInfo) -> list[str]:
        lines = ["rngs = rngs if rngs is not None else nnx.Rngs(0)"]
        if _uses_dropout(info):
            # model.eval() / model.train() flip `deterministic` on every module.
            lines += ["self.rngs = rngs", "self.deterministic = False"]
        return lines

    def layer_extra_arguments(self, info: LayerInfo | None) -> list[str]:
        return ["rngs=rngs"]

    def network_extra_arguments(self) -> list[str]:
        return ["rngs=rngs"]

    def layer_call(self, info: LayerInfo, callee: str, args: list[str]) -> str:
        code = f"{callee}({', '.join(args)})"
        # The runtime LSTM returns (output, (h, c)); the language uses the output.
        return f"{code}[0]" if info.op is not None and info.op.name == "LSTM" else code


def _uses_dropout(info: NetworkInfo) -> bool:
    """Whether forward calls the `dropout` function (it needs rngs at run time)."""

    def visit(expr: ir.Expr) -> bool:
        if isinstance(expr, ir.Call):
            if expr.func == "dropout" and expr.func not in info.layers:
                return True
            return any(visit(a) for a in (*expr.args, *(k.value for k in expr.kwargs)))
        if isinstance(expr, ir.BinOp):
            return visit(expr.left) or visit(expr.right)
        if isinstance(expr, ir.Neg):
            return visit(expr.operand)
        if isinstance(expr, ir.Attribute):
            return visit(expr.value)
        return False

    for statement in info.network.body:
        if isinstance(statement, ir.Assign) and visit(statement.value):
            return True
        if isinstance(statement, ir.Return) and any(
            visit(o.value) for o in statement.outputs
        ):
            return True
    return False
