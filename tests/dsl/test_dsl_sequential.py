"""Desugaring of `network N(...) = sequential { ... }`."""

from __future__ import annotations

import pytest

from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.ir import (
    Assign,
    Call,
    Distribution,
    Float,
    Input,
    Int,
    Keyword,
    Layer,
    Name,
    Network,
    Output,
    Param,
    Return,
)

MLP = """\
# A plain MLP.
network MLP(d_in: int, hidden: int = 64, d_out: int = 1) = sequential {
    Linear(d_in, hidden), relu, Linear(hidden, hidden), relu, dropout(p=0.1),
    fixed Linear(hidden, d_out)   # read-out
}
"""


def x() -> Name:
    return Name(id="x")


def test_mlp_desugars_to_ordinary_network(plain):
    net = dsl.parse(MLP).networks[0]
    expected = Network(
        name="MLP",
        doc="A plain MLP.",
        sequential=True,
        params=[
            Param(name="d_in", type="int"),
            Param(name="hidden", type="int", default=Int(value=64)),
            Param(name="d_out", type="int", default=Int(value=1)),
        ],
        inputs=[Input(name="x", dims=[Name(id="B"), Name(id="d_in")])],
        layers=[
            Layer(
                name="linear_1", op="Linear", args=[Name(id="d_in"), Name(id="hidden")]
            ),
            Layer(
                name="linear_2",
                op="Linear",
                args=[Name(id="hidden"), Name(id="hidden")],
            ),
            Layer(
                name="linear_3",
                op="Linear",
                args=[Name(id="hidden"), Name(id="d_out")],
                bayesian=False,
                comment="read-out",
            ),
        ],
        body=[
            Assign(target="x", value=Call(func="linear_1", args=[x()])),
            Assign(target="x", value=Call(func="relu", args=[x()])),
            Assign(target="x", value=Call(func="linear_2", args=[x()])),
            Assign(target="x", value=Call(func="relu", args=[x()])),
            Assign(
                target="x",
                value=Call(
                    func="dropout",
                    args=[x()],
                    kwargs=[Keyword(name="p", value=Float(value=0.1))],
                ),
            ),
            Assign(target="x", value=Call(func="linear_3", args=[x()])),
            Return(outputs=[Output(value=x())]),
        ],
    )
    assert plain(net) == plain(expected)


def test_statements_span_their_items():
    net = dsl.parse(MLP, "mlp.bnn").networks[0]
    relu = net.body[1]
    assert (relu.span.line, relu.span.column, relu.span.end_column) == (3, 27, 31)
    assert relu.value.span == relu.span
    assert relu.value.args[0].span == relu.span
    last = net.layers[-1]
    assert (last.span.line, last.span.column, last.span.end_column) == (4, 5, 32)
    assert net.body[-1].span == last.span  # `return x` spans the last item
    assert net.inputs[0].span == net.layers[0].span
    assert net.span.line == 2


@pytest.mark.parametrize(
    ("first", "dims", "dtype"),
    [
        ("Linear(16, 4)", ["B", 16], "float32"),
        ("Linear(input_size=n, output_size=4)", ["B", "n"], "float32"),
        ("Conv2d(3, 8, kernel_size=3)", ["B", 3, "H", "W"], "float32"),
        ("Conv2d(n, 8, 3)", ["B", "n", "H", "W"], "float32"),
        ("Conv1d(2, 8, 3)", ["B", 2, "L"], "float32"),
        ("Embedding(1000, 32)", ["B", "T"], "int64"),
        ("Embedding(2 * n, 32)", ["B", "T"], "int64"),
        ("LSTM(100, 16, 32, 2)", ["B", "T"], "int64"),
    ],
)
def test_inferred_input(first, dims, dtype):
    net = dsl.parse(f"network S(n: int = 4) = sequential {{ {first}, relu }}").networks[
        0
    ]
    (inp,) = net.inputs
    assert inp.name == "x"
    assert inp.dtype == dtype
    shown = [d.value if isinstance(d, ir.Int) else d.id for d in inp.dims]
    assert shown == dims


def test_layer_names_count_per_op_and_networks_are_layers(plain):
    net = dsl.parse(
        "network S = sequential { Conv2d(1, 4, 3), relu, Conv2d(4, 4, 3), "
        "ResBlock(channels=4), ResBlock, flatten, Linear(auto, 2, "
        "prior=Gaussian(std=0.5)), }"
    ).networks[0]
    assert [(layer.name, layer.op) for layer in net.layers] == [
        ("conv2d_1", "Conv2d"),
        ("conv2d_2", "Conv2d"),
        ("resblock_1", "ResBlock"),
        ("resblock_2", "ResBlock"),
        ("linear_1", "Linear"),
    ]
    assert net.layers[3].args == [] and net.layers[3].kwargs == []
    assert net.layers[4].prior == Distribution(
        span=net.layers[4].prior.span, params={"std": 0.5}
    )
    assert [s.value.func for s in net.body[:-1]] == [
        "conv2d_1",
        "relu",
        "conv2d_2",
        "resblock_1",
        "resblock_2",
        "flatten",
        "linear_1",
    ]


def test_functional_item_arguments_follow_the_tensor(plain):
    net = dsl.parse(
        "network S = sequential { Linear(4, 4), leaky_relu(0.2), softmax(dim=-1) }"
    ).networks[0]
    assert plain(net.body[1].value) == plain(
        Call(func="leaky_relu", args=[x(), Float(value=0.2)])
    )
    assert plain(net.body[2].value) == plain(
        ir.call("softmax", x(), dim=ir.Neg(operand=Int(value=1)))
    )


def test_trailing_comment_goes_to_the_last_layer_on_its_line():
    net = dsl.parse(
        "network S = sequential {\n"
        "  Linear(4, 4), Linear(4, 4),  # second\n"
        "  Linear(4, 1)\n"
        "}\n"
    ).networks[0]
    assert [layer.comment for layer in net.layers] == [None, "second", None]


def test_sequential_round_trips_through_json():
    program = dsl.parse(MLP, "mlp.bnn")
    assert ir.from_json(ir.to_json(program)) == program
