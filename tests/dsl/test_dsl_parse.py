"""Parsing every construct of the .bnn language into the expected IR."""

from __future__ import annotations

import hashlib

import pytest

from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.ir import (
    Assign,
    Attribute,
    Auto,
    BinOp,
    Bool,
    Call,
    Distribution,
    Float,
    Input,
    Int,
    Keyword,
    Layer,
    Name,
    Neg,
    Network,
    NoneLit,
    Output,
    Param,
    Program,
    Return,
    Span,
    Str,
    Tuple,
)

DIGITS = """\
# digits.bnn: a Bayesian CNN for 8x8 digit images
prior     default = Gaussian(mu=0.0, std=0.1)
posterior default = Gaussian(mu_init=0.0, rho_init=-7.0)
from "blocks.bnn" import ResBlock, Head        # import networks of another file

# A comment block right above a network becomes its docstring.
#
# It may have several lines.
network DigitsCNN(classes: int = 10, width: int = 8, rate: float = 0.1) {
    prior default = Gaussian(std=0.5)          # network-level override
    input image: Tensor[B, 1, 8, 8]            # B: symbolic dim
    input ids: Tensor[B, T, dtype=int64]

    layers {
        conv1 = fixed Conv2d(1, width, kernel_size=3, padding=1)  # deterministic layer
        conv2 = Conv2d(width, 2 * width, kernel_size=(3, 3), padding=1)  # Bayesian
        head  = Linear(auto, classes, prior=Gaussian(std=1.0),
                       posterior=Gaussian(rho_init=-5.0))
        block = ResBlock(channels=16)          # another network used as a layer
    }

    forward {
        x = max_pool2d(relu(conv1(image)), 2)
        x = x + block(x)                       # `+` on tensors is elementwise add
        y = dropout(x, p=rate)
        z = enc(x).mean
        return head(flatten(y))                # single output
    }
}
"""


def n(name: str) -> Name:
    return Name(id=name)


def c(func: str, *args: ir.Expr, **kwargs: ir.Expr) -> Call:
    return ir.call(func, *args, **kwargs)


def test_full_network_matches_hand_built_ir(plain):
    program = dsl.parse(DIGITS, "digits.bnn")
    expected = Program(
        source="digits.bnn",
        source_sha256=hashlib.sha256(DIGITS.encode()).hexdigest(),
        prior=Distribution(params={"mu": 0.0, "std": 0.1}),
        posterior=Distribution(params={"mu_init": 0.0, "rho_init": -7.0}),
        imports=[ir.Import(path="blocks.bnn", names=["ResBlock", "Head"])],
        networks=[
            Network(
                name="DigitsCNN",
                doc="A comment block right above a network becomes its docstring."
                "\n\nIt may have several lines.",
                params=[
                    Param(name="classes", type="int", default=Int(value=10)),
                    Param(name="width", type="int", default=Int(value=8)),
                    Param(name="rate", type="float", default=Float(value=0.1)),
                ],
                inputs=[
                    Input(
                        name="image",
                        dims=[n("B"), Int(value=1), Int(value=8), Int(value=8)],
                    ),
                    Input(name="ids", dims=[n("B"), n("T")], dtype="int64"),
                ],
                layers=[
                    Layer(
                        name="conv1",
                        op="Conv2d",
                        args=[Int(value=1), n("width")],
                        kwargs=[
                            Keyword(name="kernel_size", value=Int(value=3)),
                            Keyword(name="padding", value=Int(value=1)),
                        ],
                        bayesian=False,
                        comment="deterministic layer",
                    ),
                    Layer(
                        name="conv2",
                        op="Conv2d",
                        args=[
                            n("width"),
                            BinOp(op="*", left=Int(value=2), right=n("width")),
                        ],
                        kwargs=[
                            Keyword(
                                name="kernel_size",
                                value=Tuple(items=[Int(value=3), Int(value=3)]),
                            ),
                            Keyword(name="padding", value=Int(value=1)),
                        ],
                        comment="Bayesian",
                    ),
                    Layer(
                        name="head",
                        op="Linear",
                        args=[Auto(), n("classes")],
                        prior=Distribution(params={"std": 1.0}),
                        posterior=Distribution(params={"rho_init": -5.0}),
                    ),
                    Layer(
                        name="block",
                        op="ResBlock",
                        kwargs=[Keyword(name="channels", value=Int(value=16))],
                        comment="another network used as a layer",
                    ),
                ],
                body=[
                    Assign(
                        target="x",
                        value=c(
                            "max_pool2d",
                            c("relu", c("conv1", n("image"))),
                            Int(value=2),
                        ),
                    ),
                    Assign(
                        target="x",
                        value=BinOp(op="+", left=n("x"), right=c("block", n("x"))),
                    ),
                    Assign(target="y", value=c("dropout", n("x"), p=n("rate"))),
                    Assign(
                        target="z",
                        value=Attribute(value=c("enc", n("x")), name="mean"),
                    ),
                    Return(outputs=[Output(value=c("head", c("flatten", n("y"))))]),
                ],
                prior=Distribution(params={"std": 0.5}),
            )
        ],
    )
    assert plain(program) == plain(expected)


def test_small_network_exact_ir_with_spans():
    text = "network N(k: int = 2) {\n  forward { return k * 3 }\n}\n"
    program = dsl.parse(text, "n.bnn")

    def span(line: int, col: int, end_line: int, end_col: int) -> Span:
        return Span(
            file="n.bnn", line=line, column=col, end_line=end_line, end_column=end_col
        )

    expected = Program(
        span=span(1, 1, 3, 2),
        source="n.bnn",
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
        networks=[
            Network(
                span=span(1, 1, 3, 2),
                name="N",
                params=[
                    Param(
                        span=span(1, 11, 1, 21),
                        name="k",
                        type="int",
                        default=Int(span=span(1, 20, 1, 21), value=2),
                    )
                ],
                body=[
                    Return(
                        span=span(2, 13, 2, 25),
                        outputs=[
                            Output(
                                span=span(2, 20, 2, 25),
                                value=BinOp(
                                    span=span(2, 20, 2, 25),
                                    op="*",
                                    left=Name(span=span(2, 20, 2, 21), id="k"),
                                    right=Int(span=span(2, 24, 2, 25), value=3),
                                ),
                            )
                        ],
                    )
                ],
            )
        ],
    )
    assert program == expected


def test_spans_of_layer_call_and_keyword():
    program = dsl.parse(DIGITS, "digits.bnn")
    net = program.networks[0]
    conv2 = net.layers[1]
    assert conv2.span == Span(
        file="digits.bnn", line=16, column=9, end_line=16, end_column=72
    )
    kernel = conv2.kwargs[0]
    assert (kernel.span.line, kernel.span.column, kernel.span.end_column) == (
        16,
        42,
        60,
    )
    assert (kernel.value.span.column, kernel.value.span.end_column) == (54, 60)
    first = net.body[0]
    assert isinstance(first, Assign)
    pool = first.value
    assert (pool.span.line, pool.span.column, pool.span.end_column) == (23, 13, 46)
    conv1_call = pool.args[0].args[0]
    assert conv1_call.func == "conv1"
    assert (conv1_call.span.column, conv1_call.span.end_column) == (29, 41)
    assert first.span.column == 9
    assert net.span.line == 9 and net.span.column == 1
    assert net.inputs[1].span.line == 12
    assert program.imports[0].name_spans == [
        Span(file="digits.bnn", line=4, column=26, end_line=4, end_column=34),
        Span(file="digits.bnn", line=4, column=36, end_line=4, end_column=40),
    ]
    getattr_call = net.body[3].value
    assert getattr_call.span.column == 13 and getattr_call.span.end_column == 24
    assert getattr_call.name_span.column == 20  # the attribute name


def test_json_round_trip():
    program = dsl.parse(DIGITS, "digits.bnn")
    text = ir.to_json(program)
    assert ir.from_json(text) == program
    assert ir.to_json(ir.from_json(text)) == text


def test_file_and_network_defaults():
    program = dsl.parse(
        "posterior default = Gaussian(rho_init=-6, mu_init=0.5)\n"
        "network A { posterior default = Gaussian(rho_init=-4.5); "
        "prior default = Gaussian(mu=-1, std=2e-1) }"
    )
    assert program.prior is None
    assert program.posterior.params == {"rho_init": -6.0, "mu_init": 0.5}
    net = program.networks[0]
    assert net.prior.params == {"mu": -1.0, "std": 0.2}
    assert net.posterior.params == {"rho_init": -4.5}
    assert net.prior.family == "Gaussian"


def test_docstrings_and_trailing_comments():
    text = (
        "# file header\n"
        "\n"
        "#   indented text keeps extra spaces\n"
        "#no space\n"
        "network A {\n"
        "  layers {\n"
        '    a = Linear(1, 2)   # first "layer" # with hash\n'
        "    b = Linear(2,\n"
        "               3)  #  second  \n"
        "    # a comment line, not attached\n"
        "    c = Linear(3, 4)\n"
        "  }\n"
        "}\n"
        "network B {}  # trailing\n"
        "network C {}\n"
        '# "not a string" \n'
        "network D {}\n"
        "# only for E\n"
        "network E {} network F {}\n"
    )
    nets = dsl.parse(text).networks
    assert nets[0].doc == "  indented text keeps extra spaces\nno space"
    assert [layer.comment for layer in nets[0].layers] == [
        'first "layer" # with hash',
        "second",
        None,
    ]
    assert nets[1].doc is None
    assert nets[2].doc is None  # the comment above is on a code line
    assert nets[3].doc == '"not a string"'
    assert nets[4].doc == "only for E" and nets[5].doc is None


def test_hash_inside_string_is_not_a_comment():
    program = dsl.parse('from "dir#1/x.bnn" import A  # real comment\n')
    assert program.imports[0].path == "dir#1/x.bnn"


def test_params_types_and_defaults():
    net = dsl.parse(
        "network P(a: int, b: float = -0.5, c: bool = true, d: int = 2 * a + 1,) {}"
    ).networks[0]
    assert [(p.name, p.type) for p in net.params] == [
        ("a", "int"),
        ("b", "float"),
        ("c", "bool"),
        ("d", "int"),
    ]
    assert net.params[0].default is None
    assert net.params[1].default == Neg(
        span=net.params[1].default.span,
        operand=Float(span=net.params[1].default.operand.span, value=0.5),
    )
    assert isinstance(net.params[2].default, Bool) and net.params[2].default.value
    d = net.params[3].default
    assert isinstance(d, BinOp) and d.op == "+" and d.left.op == "*"


def test_network_without_params_and_empty_param_list():
    nets = dsl.parse("network A {}\nnetwork B() {}").networks
    assert [(x.name, x.params, x.body) for x in nets] == [("A", [], []), ("B", [], [])]


@pytest.mark.parametrize(
    ("written", "dtype"),
    [
        ("", "float32"),
        (", dtype=float32", "float32"),
        (", dtype=float64", "float64"),
        (", dtype=int64", "int64"),
        (", dtype=int32", "int32"),
        (", dtype=bool", "bool"),
        (", dtype=int", "int64"),
        (", dtype=float", "float32"),
        (", dtype=int,", "int64"),
    ],
)
def test_input_dtypes(written, dtype):
    net = dsl.parse(f"network A {{ input x: Tensor[B, 4{written}] }}").networks[0]
    assert net.inputs[0].dtype == dtype
    assert [d.model_dump(exclude={"span"}) for d in net.inputs[0].dims] == [
        {"kind": "name", "id": "B"},
        {"kind": "int", "value": 4},
    ]


def test_input_dims_with_parameter_expressions(plain):
    net = dsl.parse(
        "network A(w: int) { input x: Tensor[B, 2 * w, (w + 1) // 2] }"
    ).networks[0]
    assert plain(net.inputs[0])["dims"] == [
        {"kind": "name", "id": "B"},
        plain(BinOp(op="*", left=Int(value=2), right=n("w"))),
        plain(
            BinOp(
                op="//",
                left=BinOp(op="+", left=n("w"), right=Int(value=1)),
                right=Int(value=2),
            )
        ),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", BinOp(op="+", left=Int(value=1), right=BinOp(
            op="*", left=Int(value=2), right=Int(value=3)))),
        ("1 - 2 - 3", BinOp(op="-", left=BinOp(
            op="-", left=Int(value=1), right=Int(value=2)), right=Int(value=3))),
        ("(1 - 2) % 3", BinOp(op="%", left=BinOp(
            op="-", left=Int(value=1), right=Int(value=2)), right=Int(value=3))),
        ("a / b // c", BinOp(op="//", left=BinOp(
            op="/", left=n("a"), right=n("b")), right=n("c"))),
        ("-a * b", BinOp(op="*", left=Neg(operand=n("a")), right=n("b"))),
        ("--a", Neg(operand=Neg(operand=n("a")))),
        ("-f(x).y", Neg(operand=Attribute(value=c("f", n("x")), name="y"))),
        (
            "f(x).a.b",
            Attribute(value=Attribute(value=c("f", n("x")), name="a"), name="b"),
        ),
        ("1_000", Int(value=1000)),
        ("9223372036854775807", Int(value=2**63 - 1)),
        ("1.5", Float(value=1.5)),
        (".5", Float(value=0.5)),
        ("1e-3", Float(value=0.001)),
        ("2.5E+2", Float(value=250.0)),
        ("1_0.2_5", Float(value=10.25)),
        ('"a\\"b\\\\c\\n"', Str(value='a"b\\c\n')),
        ("true", Bool(value=True)),
        ("false", Bool(value=False)),
        ("none", NoneLit()),
        ("auto", Auto()),
        ("()", Tuple(items=[])),
        ("(1,)", Tuple(items=[Int(value=1)])),
        ("(1, (2, 3),)", Tuple(items=[Int(value=1), Tuple(
            items=[Int(value=2), Int(value=3)])])),
        ("((a))", n("a")),
        ("f()", c("f")),
        ("f(x, 1, k=(2, 2), flag=true,)", c(
            "f", n("x"), Int(value=1),
            k=Tuple(items=[Int(value=2), Int(value=2)]), flag=Bool(value=True))),
        ("concat(a, b, dim=1)", c("concat", n("a"), n("b"), dim=Int(value=1))),
    ],
)  # fmt: skip
def test_expressions(text, expected, plain):
    program = dsl.parse(f"network A {{ forward {{ return {text} }} }}")
    ret = program.networks[0].body[0]
    assert plain(ret.outputs[0].value) == plain(expected)


def test_named_outputs_and_statement_separators(plain):
    program = dsl.parse(
        "network E { forward { h = f(x); ; return (mean=mu(h), scale=softplus(s(h)),) "
        "}; };"
    )
    body = program.networks[0].body
    assert plain(body[1]) == plain(
        Return(
            outputs=[
                Output(name="mean", value=c("mu", n("h"))),
                Output(name="scale", value=c("softplus", c("s", n("h")))),
            ]
        )
    )
    single = dsl.parse("network E { forward { return (x) } }").networks[0].body[0]
    assert plain(single) == plain(Return(outputs=[Output(value=n("x"))]))


def test_whitespace_tabs_crlf_and_bom_are_fine(tmp_path):
    text = "network\tA\r\n{\r\n\tforward{return x}}\r\n"
    program = dsl.parse(text)
    assert program.networks[0].name == "A"
    assert program.networks[0].body[0].span.line == 3
    path = tmp_path / "bom.bnn"
    data = b"\xef\xbb\xbf" + "# dé\nnetwork U {}\n".encode()
    path.write_bytes(data)
    loaded = dsl.parse_file(path)
    assert loaded.networks[0].name == "U"
    assert loaded.networks[0].doc == "dé"
    assert loaded.networks[0].span.column == 1  # the BOM is not a column
    assert loaded.source_sha256 == hashlib.sha256(data).hexdigest()


def test_several_networks_and_empty_file():
    assert dsl.parse("").networks == []
    assert dsl.parse("# only a comment\n;").networks == []
    names = [x.name for x in dsl.parse("network A {} network B {}").networks]
    assert names == ["A", "B"]


def test_fixed_and_prior_keyword_arguments_in_layers(plain):
    layer = (
        dsl.parse(
            "network A { layers { "
            "f = fixed Linear(2, 3, use_bias=false, posterior=Gaussian(mu_init=1)) } }"
        )
        .networks[0]
        .layers[0]
    )
    assert plain(layer) == plain(
        Layer(
            name="f",
            op="Linear",
            args=[Int(value=2), Int(value=3)],
            kwargs=[Keyword(name="use_bias", value=Bool(value=False))],
            bayesian=False,
            posterior=Distribution(params={"mu_init": 1.0}),
        )
    )


def test_parse_file_sets_source_and_hash(tmp_path):
    path = tmp_path / "m.bnn"
    data = b"network M {}\n"
    path.write_bytes(data)
    program = dsl.parse_file(path)
    assert program.source == str(path)
    assert program.source_sha256 == hashlib.sha256(data).hexdigest()
    assert program.networks[0].span.file == str(path)


def test_keywords_are_the_reserved_words():
    assert dsl.keywords() == {
        "network", "input", "layers", "forward", "return", "fixed", "sequential",
        "from", "import", "prior", "posterior", "default", "auto", "true", "false",
        "none", "estimator",
    }  # fmt: skip
