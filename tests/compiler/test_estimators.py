"""Gradient estimators in the language: parse, IR, check, format, generate, build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnnc import dsl
from bnnc.compiler import api, ir
from bnnc.compiler.check import check_program
from bnnc.compiler.diagnostics import CompileError
from bnnc.compiler.registry import DEFAULT_ESTIMATOR, ESTIMATORS, REGISTRY, layers
from bnnc.dsl.format import format_source

SPEC = """\
estimator default = flipout

network Net(d: int = 4) {
    estimator default = local_reparameterization
    input x: Tensor[B, d]
    input ids: Tensor[B, T, dtype=int64]
    layers {
        a = Linear(d, 8, estimator=flipout)
        b = Linear(8, 2)
        c = Linear(8, 2, estimator="reparameterization")
        e = Embedding(10, 2)
        f = fixed Linear(8, 2)
        s = Seq()
    }
    forward {
        h = relu(a(x))
        return b(h) + c(h) + f(h) + mean(e(ids), dim=1) + s(reshape(h, (2, 4)))
    }
}

network Seq = sequential { Conv1d(2, 4, 3, padding=1), relu, mean(dim=2), Linear(4, 2) }
"""


def _estimators(checked, network: str) -> dict[str, str]:
    return {n: i.estimator for n, i in checked.networks[network].layers.items()}


def test_registry_declares_the_estimators_of_each_layer() -> None:
    assert ESTIMATORS == ("reparameterization", "local_reparameterization", "flipout")
    assert DEFAULT_ESTIMATOR == "reparameterization"
    for op in layers():
        assert op.estimators[0] == DEFAULT_ESTIMATOR, op.name
    for name in ("Linear", "Conv1d", "Conv2d"):
        assert REGISTRY[name].estimators == ESTIMATORS
    for name in ("Embedding", "LSTM"):
        assert REGISTRY[name].estimators == (DEFAULT_ESTIMATOR,)
    assert all(not op.estimators for op in REGISTRY.values() if op.kind != "layer")


def test_parse_into_the_ir_with_spans() -> None:
    program = dsl.parse(SPEC, "t.bnn")
    assert program.estimator is not None
    assert program.estimator.name == "flipout"
    assert program.estimator.span is not None
    assert (program.estimator.span.line, program.estimator.span.column) == (1, 21)
    net = program.networks[0]
    assert (
        net.estimator is not None and net.estimator.name == "local_reparameterization"
    )
    by_name = {layer.name: layer for layer in net.layers}
    assert by_name["a"].estimator is not None
    assert by_name["a"].estimator.name == "flipout"
    assert by_name["a"].kwargs == []  # not an ordinary keyword argument
    assert by_name["c"].estimator is not None
    assert by_name["c"].estimator.name == "reparameterization"  # the string form
    assert by_name["b"].estimator is None
    # A sequential item takes it too; the sequential network has no default.
    seq = dsl.parse(
        "network S = sequential { Linear(2, 3, estimator=flipout), relu }", "s.bnn"
    ).networks[0]
    assert seq.layers[0].estimator is not None
    assert seq.layers[0].estimator.name == "flipout"


def test_ir_json_round_trip_and_schema() -> None:
    program = dsl.parse(SPEC, "t.bnn")
    assert ir.from_json(ir.to_json(program)) == program
    data = json.loads(ir.to_json(program))
    assert data["estimator"]["name"] == "flipout"
    schema = json.loads(ir.schema_json())
    assert schema["$defs"]["Estimator"]["properties"]["name"]["type"] == "string"
    for owner in ("Program", "Network", "Layer"):
        assert "estimator" in schema["$defs"][owner]["properties"], owner
    # An IR written before estimators existed still reads (the field is optional).
    del data["estimator"]
    for network in data["networks"]:
        del network["estimator"]
        for layer in network["layers"]:
            del layer["estimator"]
    assert ir.Program.model_validate(data).estimator is None


def test_effective_estimator_layer_over_network_over_file() -> None:
    checked = check_program(dsl.parse(SPEC, "t.bnn"))
    assert _estimators(checked, "Net") == {
        "a": "flipout",  # the layer's own
        "b": "local_reparameterization",  # the network default
        "c": "reparameterization",  # the layer's own, written as a string
        "e": "reparameterization",  # an Embedding skips the defaults
        "f": "reparameterization",  # a fixed layer has none
        "s": "reparameterization",  # a network used as a layer has none
    }
    # The file default reaches the sequential network (no network default).
    assert _estimators(checked, "Seq") == {"conv1d_1": "flipout", "linear_1": "flipout"}


def test_imported_networks_keep_the_defaults_of_their_file(tmp_path: Path) -> None:
    (tmp_path / "block.bnn").write_text(
        "estimator default = local_reparameterization\n"
        "network Block = sequential { Linear(4, 4), relu }\n"
        "network Plain = sequential { Linear(4, 4) }\n",
        encoding="utf-8",
    )
    (tmp_path / "main.bnn").write_text(
        'from "block.bnn" import Block, Plain\n'
        "estimator default = flipout\n"
        "network Main {\n"
        "    input x: Tensor[B, 4]\n"
        "    layers { b = Block()  p = Plain()  head = Linear(4, 1) }\n"
        "    forward { return head(p(b(x))) }\n"
        "}\n",
        encoding="utf-8",
    )
    checked = api.check(tmp_path / "main.bnn")
    assert _estimators(checked, "Block") == {"linear_1": "local_reparameterization"}
    assert _estimators(checked, "Plain") == {"linear_1": "local_reparameterization"}
    assert _estimators(checked, "Main")["head"] == "flipout"


def _check_codes(program: ir.Program) -> list[tuple[str, str]]:
    with pytest.raises(CompileError) as caught:
        check_program(program)
    return [(d.code, d.message) for d in caught.value.diagnostics]


def test_python_built_ir_is_checked_like_a_spec() -> None:
    """The checker, not the front end, validates names: an IR from Python too."""
    x = ir.Name(id="x")

    def program(
        name: str, op: str = "Linear", default: str | None = None
    ) -> ir.Program:
        layer = ir.Layer(
            name="fc",
            op=op,
            args=[ir.Int(value=4), ir.Int(value=2)],
            estimator=None if default else ir.Estimator(name=name),
        )
        dtype = "int64" if op == "Embedding" else "float32"
        dims = [ir.Name(id="B"), ir.Int(value=4)]
        net = ir.Network(
            name="Net",
            inputs=[ir.Input(name="x", dims=dims, dtype=dtype)],
            layers=[layer],
            body=[ir.Return(outputs=[ir.Output(value=ir.call("fc", x))])],
            estimator=ir.Estimator(name=default) if default else None,
        )
        return ir.Program(networks=[net])

    checked = check_program(program("local_reparameterization"))
    assert _estimators(checked, "Net") == {"fc": "local_reparameterization"}
    assert _check_codes(program("lrt")) == [("BNN310", "unknown estimator `lrt`")]
    assert _check_codes(program("flipout", "Embedding")) == [
        ("BNN310", "Embedding does not support the estimator `flipout`")
    ]
    assert _check_codes(program("", default="flip")) == [
        ("BNN310", "unknown estimator `flip`")
    ]


def test_diagnostics_are_located_with_hints() -> None:
    text = (
        "network N {\n"
        "    input x: Tensor[B, 4]\n"
        "    layers { fc = Linear(4, 2, estimator=local_reparametrization) }\n"
        "    forward { return fc(x) }\n"
        "}\n"
    )
    with pytest.raises(CompileError) as caught:
        check_program(dsl.parse(text, "t.bnn"))
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "BNN310"
    assert diagnostic.span is not None
    assert (diagnostic.span.line, diagnostic.span.column) == (3, 42)
    assert diagnostic.span.end_column == 42 + len("local_reparametrization")
    assert diagnostic.hints[0] == "did you mean `local_reparameterization`?"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("estimator default = 3", "BNN310"),
        ("estimator default = flipout\nestimator default = flipout", "BNN202"),
        (
            "network N {\n input x: Tensor[B, 2]\n layers { fc = Linear(2, 2) }\n"
            " forward { return relu(fc(x), estimator=flipout) } }",
            "BNN209",
        ),
        (
            "network N = sequential { Linear(2, 2, estimator=flipout, "
            "estimator=flipout) }",
            "BNN206",
        ),
        ("network N = sequential { Linear(2, 2), relu(estimator=flipout) }", "BNN306"),
        ("network estimator = sequential { Linear(2, 2) }", "BNN209"),
    ],
)
def test_front_end_errors(text: str, code: str) -> None:
    with pytest.raises(CompileError) as caught:
        dsl.parse(text, "t.bnn")
    assert code in [d.code for d in caught.value.diagnostics]


def test_format_round_trips_estimators() -> None:
    messy = (
        "estimator   default=flipout\nprior default = Gaussian(std=0.1)\n"
        "network Net(d:int=4){\n  estimator default=local_reparameterization\n"
        "  input x:Tensor[B,d]\n  layers{a=Linear(d,8,estimator=flipout) # c\n"
        '  b=Linear(8,2,estimator="reparameterization",prior=Gaussian(std=1.0))}\n'
        "  forward{return b(relu(a(x)))}}\n"
    )
    formatted = format_source(messy)
    assert formatted.startswith(
        "estimator default = flipout\nprior     default = Gaussian(std=0.1)\n"
    )
    assert "    estimator default = local_reparameterization\n" in formatted
    assert "a = Linear(d, 8, estimator=flipout)  # c" in formatted
    assert 'estimator="reparameterization", prior=Gaussian(std=1.0))' in formatted
    assert format_source(formatted) == formatted
    assert ir.without_locations(dsl.parse(formatted)) == ir.without_locations(
        dsl.parse(messy)
    )


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backends_emit_the_keyword_only_when_not_the_default(backend: str) -> None:
    source = api.compile(dsl.parse(SPEC, "t.bnn"), backend=backend)
    lines = [line.strip() for line in source.splitlines()]
    suffix = ", rngs=rngs)" if backend == "jax" else ")"

    def constructed(attribute: str) -> str:
        return next(line for line in lines if line.startswith(f"self.{attribute} ="))

    assert constructed("a").endswith(f'Linear(d, 8, estimator="flipout"{suffix}')
    assert constructed("b").endswith(
        f'Linear(8, 2, estimator="local_reparameterization"{suffix}'
    )
    for attribute in ("c", "e", "f", "s"):
        assert "estimator" not in constructed(attribute), attribute
    assert constructed("conv1d_1").endswith(
        f'Conv1d(2, 4, 3, padding=1, estimator="flipout"{suffix}'
    )


def test_examples_without_estimators_generate_what_they_did() -> None:
    # The golden files hold the examples' code; an estimator keyword appears
    # only where an example asks for one.
    golden = Path(__file__).with_name("golden")
    for path in golden.glob("*.py"):
        assert "estimator=" not in path.read_text(encoding="utf-8"), path.name


def test_built_torch_model_uses_the_estimators() -> None:
    pytest.importorskip("torch")
    import torch

    model = api.build(dsl.parse(SPEC, "t.bnn"), network="Net")
    assert model.a.estimator == "flipout"
    assert model.b.estimator == "local_reparameterization"
    assert model.c.estimator == "reparameterization"
    assert model.s.conv1d_1.estimator == "flipout"
    out = model(torch.randn(3, 4), torch.randint(0, 10, (3, 5)))
    assert out.shape == (3, 2)
