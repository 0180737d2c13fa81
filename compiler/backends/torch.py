"""The PyTorch backend: ``torch.nn.Module`` classes over ``bnnc.runtime.torch``."""

from __future__ import annotations

import re

from bnnc.compiler.backends.base import FunctionCall, FunctionEmitter, Generator
from bnnc.compiler.check import LayerInfo, NetworkInfo


def _call(
    callee: str,
    call: FunctionCall,
    *options: str,
    always: dict[str, str] | None = None,
) -> str:
    """``callee(tensors..., option=value...)`` with the options the spec wrote."""
    parts = list(call.tensors)
    for name in options:
        if name in call.options:
            parts.append(f"{name}={call.options[name]}")
        elif always and name in always:
            parts.append(f"{name}={always[name]}")
    return f"{callee}({', '.join(parts)})"


def _simple(callee: str, *options: str) -> FunctionEmitter:
    return lambda call: _call(callee, call, *options)


def _with_dim(callee: str, default: str) -> FunctionEmitter:
    return lambda call: _call(callee, call, "dim", always={"dim": default})


def _pool(callee: str) -> FunctionEmitter:
    def emit(call: FunctionCall) -> str:
        parts = [*call.tensors, call.options["kernel_size"]]
        for name in ("stride", "padding"):
            if name in call.options:
                parts.append(f"{name}={call.options[name]}")
        return f"{callee}({', '.join(parts)})"

    return emit


def _flatten(call: FunctionCall) -> str:
    start = call.options.get("start_dim", "1")
    parts = [*call.tensors, start]
    if "end_dim" in call.options:
        parts.append(call.options["end_dim"])
    return f"torch.flatten({', '.join(parts)})"


def _reduce(callee: str) -> FunctionEmitter:
    def emit(call: FunctionCall) -> str:
        parts = [*call.tensors, f"dim={call.options['dim']}"]
        if "keepdim" in call.options:
            parts.append(f"keepdim={call.options['keepdim']}")
        return f"{callee}({', '.join(parts)})"

    return emit


FUNCTION_EMITTERS: dict[str, FunctionEmitter] = {
    "relu": _simple("F.relu"),
    "gelu": _simple("F.gelu"),
    "tanh": _simple("torch.tanh"),
    "sigmoid": _simple("torch.sigmoid"),
    "softplus": _simple("F.softplus"),
    "silu": _simple("F.silu"),
    "elu": _simple("F.elu", "alpha"),
    "leaky_relu": _simple("F.leaky_relu", "negative_slope"),
    "softmax": _with_dim("F.softmax", "-1"),
    "log_softmax": _with_dim("F.log_softmax", "-1"),
    "flatten": _flatten,
    "reshape": lambda call: (
        f"bnn.reshape_batch({call.tensors[0]}, {call.options['shape']})"
    ),
    "dropout": lambda call: (
        f"F.dropout({call.tensors[0]}, p={call.options.get('p', '0.5')}, "
        "training=self.training)"
    ),
    "max_pool1d": _pool("F.max_pool1d"),
    "avg_pool1d": _pool("F.avg_pool1d"),
    "max_pool2d": _pool("F.max_pool2d"),
    "avg_pool2d": _pool("F.avg_pool2d"),
    "layer_norm": _simple("bnn.layer_norm", "eps"),
    "batch_norm": _simple("bnn.batch_norm", "eps"),
    "concat": lambda call: (
        f"torch.cat([{', '.join(call.tensors)}], dim={call.options.get('dim', '1')})"
    ),
    "add": lambda call: f"torch.add({', '.join(call.tensors)})",
    "mean": _reduce("torch.mean"),
    "sum": _reduce("torch.sum"),
}

LAYER_CLASSES = {
    "Linear": "Linear",
    "Conv1d": "Conv1d",
    "Conv2d": "Conv2d",
    "Embedding": "Embedding",
    "LSTM": "LSTM",
}


class TorchGenerator(Generator):
    """Generates ``torch.nn.Module`` subclasses."""

    name = "torch"
    title = "PyTorch"
    tensor_annotation = "torch.Tensor"
    forward_name = "forward"
    module_base = "torch.nn.Module"
    function_emitters = FUNCTION_EMITTERS
    layer_classes = LAYER_CLASSES

    def imports(self, needs_record: bool, body: str) -> list[str]:
        lines = ["from typing import NamedTuple", ""] if needs_record else []
        # One third-party block, in the order ruff's isort gives it in a user's
        # project (where bnnc is an installed, third-party package).
        lines += ["import torch", "from bnnc.runtime import torch as bnn"]
        if re.search(r"\bF\.", body):
            lines.append("from torch.nn import functional as F")
        return lines

    def init_prologue(self, info: NetworkInfo) -> list[str]:
        return ["super().__init__()"]

    def layer_call(self, info: LayerInfo, callee: str, args: list[str]) -> str:
        code = f"{callee}({', '.join(args)})"
        # The runtime LSTM returns (output, (h, c)); the language uses the output.
        return f"{code}[0]" if info.op is not None and info.op.name == "LSTM" else code
