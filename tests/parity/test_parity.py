"""PyTorch <-> JAX parity: one spec, the same numbers in both frameworks.

For every example network and every registry op, the torch model's variational
parameters and current samples are transferred to the JAX model, both are
frozen at those samples, and outputs, KL costs and parameter counts must agree
(max abs diff <= 1e-5 in float32). Transfer must also round-trip exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.check import NetworkInfo
from bnnc.compiler.registry import REGISTRY
from bnnc.compiler.types import TensorType

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")

from bnnc.runtime import jax as jbnn  # noqa: E402
from bnnc.runtime import torch as tbnn  # noqa: E402
from bnnc.runtime import transfer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))
TOLERANCE = 1e-5

# One small spec per registry op; `test_every_op_has_a_case` keeps it complete.
OP_CASES: dict[str, str] = {
    "Linear": """network Case {
        input x: Tensor[B, 6]
        layers {
            a = Linear(6, 5)
            b = fixed Linear(5, 4)
            c = Linear(4, 3, use_bias=false)
        }
        forward { return c(b(a(x))) }
    }""",
    "Conv1d": """network Case {
        input x: Tensor[B, 4, 17]
        layers {
            a = Conv1d(4, 6, kernel_size=3, stride=2, padding=1, dilation=2, groups=2)
            b = fixed Conv1d(6, 3, kernel_size=2, use_bias=false)
        }
        forward { return b(a(x)) }
    }""",
    "Conv2d": """network Case {
        input x: Tensor[B, 2, 9, 8]
        layers {
            a = Conv2d(2, 4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                       groups=2)
            b = fixed Conv2d(4, 3, kernel_size=3, dilation=(1, 2), padding=1)
        }
        forward { return b(a(x)) }
    }""",
    "Embedding": """network Case {
        input t: Tensor[B, 7, dtype=int64]
        layers {
            a = Embedding(11, 5, padding_idx=0, max_norm=0.05)
            b = fixed Embedding(11, 5, padding_idx=2)
        }
        forward { return concat(a(t), b(t), dim=2) }
    }""",
    "LSTM": """network Case {
        input t: Tensor[B, 6, dtype=int64]
        layers { a = LSTM(13, 4, 5, 3, padding_idx=0)  b = fixed LSTM(13, 3, 4, 2) }
        forward { return concat(a(t), b(t), dim=1) }
    }""",
}
# Heads: compared on their deterministic tensors (mean/std, logits/probs).
OP_CASES["Normal"] = """network Case {
    input x: Tensor[B, 5]
    layers { a = Linear(5, 6) }
    forward { return Normal(a(x)) }
}"""
OP_CASES["Categorical"] = """network Case {
    input x: Tensor[B, 5]
    layers { a = Linear(5, 6)  b = Linear(5, 4) }
    forward {
        return (c=Categorical(a(x), groups=2), s=Categorical(b(x), spherical=true))
    }
}"""
OP_CASES["Bernoulli"] = """network Case {
    input x: Tensor[B, 5]
    layers { a = Linear(5, 6)  b = Linear(5, 4) }
    forward { return (b=Bernoulli(a(x), groups=3), s=Bernoulli(b(x), spherical=true)) }
}"""
_ELEMENTWISE = {
    "relu": "relu(x)",
    "gelu": "gelu(x)",
    "tanh": "tanh(x)",
    "sigmoid": "sigmoid(x)",
    "softplus": "softplus(x)",
    "silu": "silu(x)",
    "elu": "elu(x, alpha=0.5)",
    "leaky_relu": "leaky_relu(x, negative_slope=0.2)",
    "softmax": "softmax(x, dim=1)",
    "log_softmax": "log_softmax(x)",
    "flatten": "flatten(x, start_dim=1, end_dim=2)",
    "reshape": "reshape(x, (4, -1))",
    "dropout": "dropout(x, p=0.3)",
    "max_pool1d": "flatten(max_pool1d(x, 2, stride=1, padding=1))",
    "avg_pool1d": "flatten(avg_pool1d(x, 3, padding=1))",
    "max_pool2d": "flatten(max_pool2d(reshape(x, (1, 8, 6)), (2, 3), padding=1))",
    "avg_pool2d": "flatten(avg_pool2d(reshape(x, (2, 4, 6)), 2, stride=1))",
    "layer_norm": "layer_norm(x)",
    "batch_norm": "batch_norm(x, eps=0.001)",
    "concat": "concat(x, relu(x), dim=2)",
    "add": "add(x, tanh(x))",
    "mean": "mean(x, dim=1, keepdim=true)",
    "sum": "sum(x, dim=2)",
}
for _op, _expression in _ELEMENTWISE.items():
    OP_CASES[_op] = f"""network Case {{
        input x: Tensor[B, 8, 6]
        layers {{ a = Linear(6, 6) }}
        forward {{ return {_expression.replace("(x", "(a(x)", 1)} }}
    }}"""


def test_every_op_has_a_case() -> None:
    assert set(OP_CASES) == set(REGISTRY)
    for op, text in OP_CASES.items():
        program = dsl.parse(text, f"{op}.bnn")
        used = {layer.op for layer in program.networks[0].layers} | _calls(program)
        assert op in used, op


def _calls(program: ir.Program) -> set[str]:
    found: set[str] = set()

    def visit(expr: ir.Expr) -> None:
        if isinstance(expr, ir.Call):
            found.add(expr.func)
            for arg in (*expr.args, *(k.value for k in expr.kwargs)):
                visit(arg)
        elif isinstance(expr, ir.BinOp):
            visit(expr.left)
            visit(expr.right)

    for statement in program.networks[0].body:
        for value in (
            [statement.value]
            if isinstance(statement, ir.Assign)
            else [o.value for o in statement.outputs]
        ):
            visit(value)
    return found


def _concrete(tensor: TensorType, info: NetworkInfo) -> list[int]:
    known = {}
    for param in info.network.params:
        if isinstance(param.default, ir.Int):
            known[param.name] = param.default.value
    dims = []
    for dim in tensor.dims:
        free = {s: 3 if s == "B" else 12 for s in dim.symbols() - set(known)}
        dims.append(dim.evaluate({**known, **free}))
    return dims


def _inputs(info: NetworkInfo, vocabulary: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = []
    for tensor in info.inputs.values():
        shape = _concrete(tensor, info)
        if tensor.is_float:
            arrays.append(rng.standard_normal(shape).astype(np.float32))
        else:
            arrays.append(rng.integers(0, vocabulary, shape).astype(np.int64))
    return arrays


def _vocabulary(model: torch.nn.Module) -> int:
    sizes = [m.num_embeddings for m in model.modules() if hasattr(m, "num_embeddings")]
    return min(sizes) if sizes else 1


def _flat(result: object, info: NetworkInfo) -> list[np.ndarray]:
    """Output arrays; a head's container gives its deterministic tensors."""
    if len(info.outputs) == 1 and info.outputs[0][0] is None:
        values = [result]
    else:
        values = [getattr(result, name) for name, _ in info.outputs]
    arrays = []
    for value in values:
        if dataclasses.is_dataclass(value):  # NormalStoch, CategoricalStoch, ...
            parts = [
                getattr(value, f.name)
                for f in dataclasses.fields(value)
                if f.name != "stoch"  # sampled with each framework's own noise
            ]
        else:
            parts = [value]
        arrays += [np.asarray(p.detach() if hasattr(p, "detach") else p) for p in parts]
    return arrays


def assert_parity(source: ir.Program | Path, network: str) -> None:
    """Build both models, share weights, freeze, compare everything."""
    info = bnnc.check(source).networks[network]
    torch.manual_seed(0)
    torch_model = bnnc.build(source, "torch", network=network)
    jax_model = bnnc.build(source, "jax", network=network, rngs=nnx.Rngs(1))
    # Freeze first: a layer with a sample-free gradient estimator (flipout,
    # local reparameterisation) draws its samples when it is frozen; the
    # transfer then copies them and the frozen flags.
    tbnn.freeze_all(torch_model)
    transfer.torch_to_nnx(torch_model, jax_model)
    jbnn.freeze_all(jax_model)
    torch_model.eval()
    jax_model.eval()
    arrays = _inputs(info, _vocabulary(torch_model))
    with torch.no_grad():
        expected = _flat(torch_model(*(torch.from_numpy(a) for a in arrays)), info)
    actual = _flat(jax_model(*(jax.numpy.asarray(a) for a in arrays)), info)
    for want, got in zip(expected, actual, strict=True):
        assert want.shape == got.shape
        assert np.abs(want - got).max() <= TOLERANCE, np.abs(want - got).max()
    torch_kl, torch_count = tbnn.total_kl(torch_model)
    jax_kl, jax_count = jbnn.total_kl(jax_model)
    assert torch_count == jax_count
    normalised = float(torch_kl.detach()) / max(torch_count, 1)
    assert abs(normalised - float(jax_kl) / max(jax_count, 1)) <= TOLERANCE
    assert float(tbnn.KLDivergenceLoss()(torch_model).detach()) == pytest.approx(
        float(jbnn.KLDivergenceLoss()(jax_model)), abs=TOLERANCE
    )
    torch_params = sum(p.numel() for p in torch_model.parameters())
    jax_params = sum(
        int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(jax_model, nnx.Param))
    )
    assert torch_params == jax_params


@pytest.mark.parametrize("op", sorted(OP_CASES))
def test_op_parity(op: str) -> None:
    assert_parity(dsl.parse(OP_CASES[op], f"{op}.bnn"), "Case")


EXAMPLE_NETWORKS = [
    pytest.param(path, info.name, id=f"{path.name}::{info.name}")
    for path in EXAMPLES
    for info in bnnc.check(path).main_networks()
    if all(p.default is not None for p in info.network.params)
]


@pytest.mark.parametrize(("path", "network"), EXAMPLE_NETWORKS)
def test_example_parity(path: Path, network: str) -> None:
    assert_parity(path, network)


@pytest.mark.parametrize(("path", "network"), EXAMPLE_NETWORKS)
def test_transfer_round_trips_exactly(path: Path, network: str) -> None:
    torch.manual_seed(0)
    original = bnnc.build(path, "torch", network=network)
    tbnn.freeze_all(original)
    jax_model = bnnc.build(path, "jax", network=network, rngs=nnx.Rngs(2))
    transfer.torch_to_nnx(original, jax_model)
    torch.manual_seed(1)
    copy = bnnc.build(path, "torch", network=network)
    transfer.nnx_to_torch(jax_model, copy)
    before, after = original.state_dict(), copy.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    frozen = [
        m.frozen
        for m in copy.modules()
        if isinstance(m, tbnn.BayesianModule) and m.is_bayesian
    ]
    assert frozen and all(frozen)


ESTIMATOR_CASE = """estimator default = {estimator}
network Case {{
    input x: Tensor[B, 2, 9, 8]
    input s: Tensor[B, 4, 17]
    layers {{
        a = Conv2d(2, 4, kernel_size=3, stride=(2, 1), padding=1, groups=2)
        c = Conv1d(4, 6, kernel_size=3, stride=2, padding=1, dilation=2)
        h = Linear(auto, 3)
    }}
    forward {{ return h(concat(flatten(a(x)), flatten(c(s)), dim=1)) }}
}}"""


@pytest.mark.parametrize("estimator", ["local_reparameterization", "flipout"])
def test_estimator_parity(estimator: str) -> None:
    """Gradient estimators: the deterministic parts agree across frameworks.

    Frozen (frozen in torch first: freezing a layer with one of these
    estimators draws its samples, then the transfer copies them and the
    flags), outputs and KL agree; unfrozen with sigma -> 0 (rho = -60), both
    give op(x, mu) + b_mu whatever each framework's noise.
    """
    program = dsl.parse(ESTIMATOR_CASE.format(estimator=estimator), "case.bnn")
    info = bnnc.check(program).networks["Case"]
    arrays = _inputs(info, 1)

    def outputs(torch_model: torch.nn.Module, jax_model: nnx.Module) -> float:
        with torch.no_grad():
            expected = torch_model(*(torch.from_numpy(a) for a in arrays)).numpy()
        actual = np.asarray(jax_model(*(jax.numpy.asarray(a) for a in arrays)))
        assert expected.shape == actual.shape
        return float(np.abs(expected - actual).max())

    torch.manual_seed(0)
    torch_model = bnnc.build(program, "torch", network="Case")
    assert {m.estimator for m in torch_model.children()} == {estimator}
    tbnn.freeze_all(torch_model)
    jax_model = bnnc.build(program, "jax", network="Case", rngs=nnx.Rngs(1))
    assert {m.estimator for m in (jax_model.a, jax_model.c, jax_model.h)} == {estimator}
    transfer.torch_to_nnx(torch_model, jax_model)
    assert outputs(torch_model, jax_model) <= TOLERANCE
    for kl in ("closed_form", "sample"):
        torch_kl = float(tbnn.total_kl(torch_model, kl)[0].detach())
        jax_kl = float(jbnn.total_kl(jax_model, kl)[0])
        assert torch_kl == pytest.approx(jax_kl, rel=1e-5)

    tbnn.unfreeze_all(torch_model)
    with torch.no_grad():
        for name, value in torch_model.named_parameters():
            if name.endswith("rho"):
                value.fill_(-60.0)
    transfer.torch_to_nnx(torch_model, jax_model)
    assert not jax_model.h.frozen
    assert outputs(torch_model, jax_model) <= TOLERANCE
