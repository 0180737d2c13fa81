"""Diagnostics of the front end: exact rendered text, codes, and robustness."""

from __future__ import annotations

import random

import pytest

from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.diagnostics import CompileError
from bnnc.dsl.lower import IR_MAX_DEPTH, json_depth

# --- syntax errors, rendered exactly ------------------------------------------------


def test_missing_closing_paren(errors):
    text = "network A {\n  forward {\n    x = relu(conv(x)\n    return x\n  }\n}\n"
    assert errors(text) == (
        "t.bnn:4:5: error[BNN101]: unexpected keyword `return`, "
        "expected one of `,`, `)`\n"
        "  |\n"
        "4 |     return x\n"
        "  |     ^^^^^^"
    )  # fmt: skip


def test_unexpected_character(errors):
    assert errors("network A {\n  forward { x = a $ b; return x }\n}\n") == (
        "t.bnn:2:19: error[BNN102]: unexpected character `$`\n"
        "  |\n"
        "2 |   forward { x = a $ b; return x }\n"
        "  |                   ^"
    )


def test_unexpected_end_of_file(errors):
    assert errors("network A {\n  forward {\n    return x   # done\n") == (
        "t.bnn:3:13: error[BNN103]: unexpected end of file, expected one of "
        "`}`, `;`, a name, `return`\n"
        "  |\n"
        "3 |     return x   # done\n"
        "  |             ^"
    )


def test_missing_expression(errors):
    assert errors("network A {\n  forward { return x + }\n}\n") == (
        "t.bnn:2:24: error[BNN101]: unexpected `}`, expected an expression\n"
        "  |\n"
        "2 |   forward { return x + }\n"
        "  |                        ^"
    )


def test_missing_comma_between_arguments(errors):
    assert errors("network A {\n  layers { a = Linear(1 2) }\n}\n") == (
        "t.bnn:2:25: error[BNN101]: unexpected number `2`, expected one of "
        "`,`, `)`, an operator\n"
        "  |\n"
        "2 |   layers { a = Linear(1 2) }\n"
        "  |                         ^"
    )


def test_missing_colon_in_parameter(errors):
    assert errors("network A(width int) {}") == (
        "t.bnn:1:17: error[BNN101]: unexpected name `int`, expected `:`\n"
        "  |\n"
        "1 | network A(width int) {}\n"
        "  |                 ^^^"
    )


def test_unterminated_string(errors):
    assert errors('from "blocks.bnn import A\n') == (
        "t.bnn:1:6: error[BNN102]: unterminated string\n"
        "  |\n"
        '1 | from "blocks.bnn import A\n'
        "  |      ^\n"
        '  = hint: a string ends with `"` on the same line'
    )


def test_single_quoted_string(errors):
    assert errors("network A { forward { return f('x') } }") == (
        "t.bnn:1:32: error[BNN102]: unexpected character `'`\n"
        "  |\n"
        "1 | network A { forward { return f('x') } }\n"
        "  |                                ^\n"
        '  = hint: strings are written in double quotes: "..."'
    )


def test_double_equals(errors):
    assert errors("network A { forward { return a == b } }") == (
        "t.bnn:1:32: error[BNN101]: unexpected `=`, expected one of `}`, `;`, "
        "a name, `return`, an operator\n"
        "  |\n"
        "1 | network A { forward { return a == b } }\n"
        "  |                                ^\n"
        "  = hint: there is no `==` in .bnn; `=` assigns"
    )


def test_missing_comma_in_sequential(errors):
    assert errors("network S = sequential { Linear(1, 2) relu }") == (
        "t.bnn:1:39: error[BNN101]: unexpected name `relu`, expected one of `,`, `}`\n"
        "  |\n"
        "1 | network S = sequential { Linear(1, 2) relu }\n"
        "  |                                       ^^^^"
    )


def test_reserved_word_as_layer_name(errors):
    assert errors("network A {\n  layers { input = Linear(1, 2) }\n}\n") == (
        "t.bnn:2:12: error[BNN209]: `input` is a reserved word and cannot be used "
        "as a name\n"
        "  |\n"
        "2 |   layers { input = Linear(1, 2) }\n"
        "  |            ^^^^^\n"
        "  = hint: choose another name"
    )


def test_non_ascii_name(errors):
    assert errors("network Café {}") == (
        "t.bnn:1:12: error[BNN102]: unexpected character `é`\n"
        "  |\n"
        "1 | network Café {}\n"
        "  |            ^\n"
        "  = hint: names are made of ASCII letters, digits and `_`"
    )


def test_one_error_per_broken_declaration(errors):
    text = (
        "network A {\n"
        "  forward { return x + }\n"
        "}\n"
        "network Ok {}\n"
        "network B {\n"
        "  layers { a = Linear(1 2) }\n"
        "}\n"
        "prior default = Gaussian(std=)\n"
    )
    lines = [line for line in errors(text).splitlines() if line.startswith("t.bnn")]
    assert lines == [
        "t.bnn:2:24: error[BNN101]: unexpected `}`, expected an expression",
        "t.bnn:6:25: error[BNN101]: unexpected number `2`, expected one of `,`, `)`, "
        "an operator",
        "t.bnn:8:30: error[BNN101]: unexpected `)`, expected an expression",
    ]


def test_missing_brace_before_next_network(codes, errors):
    text = "network A {\n  forward { return x }\n\nnetwork B { forward { return ) } }\n"
    lines = [line for line in errors(text).splitlines() if line.startswith("t.bnn")]
    assert lines == [
        "t.bnn:4:1: error[BNN101]: unexpected keyword `network`, expected one of "
        "`}`, `;`, `estimator`, `forward`, `input`, `layers`, `posterior`, `prior`",
        "t.bnn:4:30: error[BNN101]: unexpected `)`, expected an expression",
    ]


# --- checks of names, literals and settings -----------------------------------------


def test_distribution_settings(errors):
    assert errors(
        "prior default = Gausian(std=0.0, sigma=1)\n"
        "posterior default = Gaussian(rho_init=w, 3)\n"
    ) == (
        "t.bnn:1:17: error[BNN105]: unknown distribution family `Gausian`; "
        "supported: Gaussian\n"
        "  |\n"
        "1 | prior default = Gausian(std=0.0, sigma=1)\n"
        "  |                 ^^^^^^^\n"
        "  = hint: did you mean `Gaussian`?\n"
        "t.bnn:1:29: error[BNN105]: `std` must be positive, got 0.0\n"
        "  |\n"
        "1 | prior default = Gausian(std=0.0, sigma=1)\n"
        "  |                             ^^^\n"
        "t.bnn:1:34: error[BNN105]: unknown prior setting `sigma`; a prior takes "
        "`mu` and `std`\n"
        "  |\n"
        "1 | prior default = Gausian(std=0.0, sigma=1)\n"
        "  |                                  ^^^^^\n"
        "t.bnn:2:39: error[BNN105]: `rho_init` must be a number literal\n"
        "  |\n"
        "2 | posterior default = Gaussian(rho_init=w, 3)\n"
        "  |                                       ^\n"
        "t.bnn:2:42: error[BNN105]: posterior settings are named, e.g. "
        "`Gaussian(rho_init=-5.0)`\n"
        "  |\n"
        "2 | posterior default = Gaussian(rho_init=w, 3)\n"
        "  |                                          ^"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prior default = 0.1", ["BNN105"]),
        ("prior default = Gaussian(mu_init=1)", ["BNN105"]),
        ("prior default = Gaussian(std=-1)", ["BNN105"]),
        ("prior default = Gaussian(std=1, std=2)", ["BNN105"]),
        ("posterior default = Gaussian(std=1)", ["BNN105"]),
        ("network A { layers { a = L(1, 2, prior=Gaussian(std=0)) } }", ["BNN105"]),
        ("network A { layers { a = Linear(1, 2, prior=Gaussian(std=1), "
         "prior=Gaussian(std=2)) } }", ["BNN206"]),
        ("prior default = Gaussian(std=1)\nprior default = Gaussian()", ["BNN202"]),
        ("network A { prior default = Gaussian(std=1); "
         "prior default = Gaussian(std=2) }", ["BNN202"]),
        ("network A {} network A {}", ["BNN202"]),
        ("network A(n: int, n: int) {}", ["BNN202"]),
        ("network A { input x: Tensor[B]; input x: Tensor[B] }", ["BNN202"]),
        ("network A { layers { a = L(); a = L() } }", ["BNN202"]),
        ("network A(a: int) { layers { a = L() } }", ["BNN202"]),
        ("network A { layers {} layers {} }", ["BNN202"]),
        ("network A { forward {} forward {} }", ["BNN202"]),
        ("network A { forward { return (a=x, a=y) } }", ["BNN202"]),
        ("network A(n: Int) {}", ["BNN106"]),
        ("network A { input x: Tensr[B] }", ["BNN106"]),
        ("network A { input x: Tensor[B, dtype=int8] }", ["BNN106"]),
        ("network A { input x: Tensor[B, dtype=\"int64\"] }", ["BNN106"]),
        ("network A { input x: Tensor[B, kind=int64] }", ["BNN106"]),
        ("network A { input x: Tensor[dtype=int64, B] }", ["BNN106"]),
        ("network A { input x: Tensor[dtype=int64] }", ["BNN106"]),
        ("network A { input x: Tensor[B, dtype=int, dtype=int] }", ["BNN206"]),
        ("network A { forward { return f(9223372036854775808) } }", ["BNN104"]),
        ("network A { forward { return f(" + "9" * 5000 + ") } }", ["BNN104"]),
        ("network A { forward { return f(1e400) } }", ["BNN104"]),
        ('network A { forward { return f("\\q") } }', ["BNN104"]),
        ("network A { forward { return f(k=1, 2) } }", ["BNN101"]),
        ("network A { forward { return f(prior=Gaussian(std=1)) } }", ["BNN209"]),
        ("network A { forward { fixed = f(x) } }", ["BNN209"]),
        ("network A { forward { return none.auto } }", ["BNN209"]),
        ("network A { forward { return x.prior } }", ["BNN209"]),
        ("network default {}", ["BNN209"]),
        ("network A { layers { a = fixed fixed(1) } }", ["BNN209"]),
        ("network S = sequential { relu, Linear(2, 3) }", ["BNN303"]),
        ("network S = sequential { ResBlock(4), relu }", ["BNN303"]),
        ("network S(n: int) = sequential { Linear(2 * n, 3) }", ["BNN303"]),
        ("network S = sequential { Linear(output_size=3) }", ["BNN303"]),
        ("network S = sequential { }", ["BNN303"]),
        ("network S = sequential { Linear(2, 3), fixed relu }", ["BNN306"]),
        ("network S = sequential { Linear(2, 3), relu(prior=Gaussian(std=1)) }",
         ["BNN306"]),
    ],
)  # fmt: skip
def test_error_codes(text, expected, codes):
    assert codes(text) == expected


def test_all_independent_errors_are_reported(codes):
    text = (
        "prior default = Gaussian(std=0)\n"
        "network A(n: Int) {\n"
        "  input x: Tensor[B, dtype=int8]\n"
        "  layers { x = Linear(1, 99999999999999999999) }\n"
        "}\n"
    )
    assert codes(text) == ["BNN105", "BNN106", "BNN106", "BNN202", "BNN104"]


def test_error_spans_carry_the_path():
    with pytest.raises(CompileError) as caught:
        dsl.parse("network A {", "models/a.bnn")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "models/a.bnn"
    assert diagnostic.span == ir.Span(
        file="models/a.bnn", line=1, column=12, end_line=1, end_column=13
    )


# --- robustness -----------------------------------------------------------------------


def test_deep_nesting_is_bnn005_not_a_crash(codes):
    deep_calls = "f(" * 5000 + "x" + ")" * 5000
    assert codes(f"network A {{ forward {{ return {deep_calls} }} }}") == ["BNN005"]
    long_sum = "x" + " + x" * 5000
    assert codes(f"network A {{ forward {{ return {long_sum} }} }}") == ["BNN005"]
    negations = "-" * 5000 + "x"
    assert codes(f"network A {{ forward {{ return {negations} }} }}") == ["BNN005"]
    assert codes("network A { forward { return " + "(" * 50000) == ["BNN103"]


def test_nesting_at_the_limit_parses_and_round_trips(codes):
    # A call is two levels of the IR's JSON, an operator one, a name two.
    for deepest in ("f(" * 73 + "x" + ")" * 73, "-" * 147 + "x", "x" + " * x" * 147):
        program = dsl.parse(f"network A {{ layers {{ a = L(k={deepest}) }} }}")
        assert ir.from_json(ir.to_json(program)) == program
    assert codes(
        "network A { forward { return " + "f(" * 75 + "x" + ")" * 75 + "} }"
    ) == ["BNN005"]
    parens = "(" * 1000 + "x" + ")" * 1000  # grouping adds no depth
    dsl.parse(f"network A {{ forward {{ return {parens} }} }}")


def test_one_file_at_the_nesting_limit_fits_the_ir_depth_limit():
    # The loader only measures the IR's JSON depth when imports nest programs:
    # a file of its own stays within IR_MAX_DEPTH wherever its deepest
    # accepted expressions stand (`budget` levels, counted as check_depth does).
    shapes = [
        lambda budget: "f(" * (budget // 2 - 1) + "x" + ")" * (budget // 2 - 1),
        lambda budget: "-" * (budget - 2) + "x",
        lambda budget: "x" + " * x" * (budget - 2),
        lambda budget: "f(k=" * (budget // 3 - 1) + "x" + ")" * (budget // 3 - 1),
        lambda budget: "(" * (budget // 2 - 1) + "x" + ",)" * (budget // 2 - 1),
        lambda budget: "x" + ".y" * ((budget - 2) // 2),
    ]
    for shape in shapes:
        e, k = shape(150), f"k={shape(149)}"  # a keyword argument is one level
        text = (
            f"prior default = Gaussian(std={'-' * 144}1.0)\n"
            f"network A(p: int = {e}) {{\n"
            f"  input x: Tensor[{e}, {e}]\n"
            f"  layers {{ a = L({e}, {k}) }}\n"
            f"  forward {{ y = {e}; return (m={e}, s={e}) }}\n"
            "}\n"
            f"network S = sequential {{ Linear(4, {e}), L({e}, {k}), relu({e}) }}\n"
        )
        program = dsl.parse(text)
        depth = json_depth(program.model_dump(mode="json"))
        assert depth <= IR_MAX_DEPTH, (e[:10], depth)
        assert ir.from_json(ir.to_json(program)) == program


SAMPLE = """\
prior default = Gaussian(mu=0.0, std=0.1)
from "b.bnn" import R
# doc
network N(c: int = 10, w: int = 8) {
    input image: Tensor[B, 1, 8, 8]
    input ids: Tensor[B, T, dtype=int64]
    layers {
        a = fixed Conv2d(1, w, kernel_size=(3, 3), padding=1)  # note
        h = Linear(auto, c, prior=Gaussian(std=1.0))
    }
    forward {
        x = max_pool2d(relu(a(image)), 2) + -1 * 2 // 3
        return (m=h(flatten(x)), s=enc(x).mean)
    }
}
network S(d: int) = sequential { Linear(d, 4), relu, dropout(p=0.1), Linear(4, 1) }
"""


def test_random_edits_never_raise_anything_but_compile_error():
    rng = random.Random(1234)
    alphabet = [
        *"{}()[],;=.:#\"'-+*/%_ \n\tax0195e",
        "network", "prior", "fixed", "auto", "return", "Gaussian(", "\x00", "é",
    ]  # fmt: skip
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        text = SAMPLE
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(text))
            roll = rng.random()
            if roll < 0.4:
                text = text[:at] + text[at + rng.randint(1, 5) :]
            elif roll < 0.8:
                text = text[:at] + rng.choice(alphabet) + text[at:]
            else:
                other = rng.randrange(len(text))
                text = text[:at] + text[other : other + 8] + text[at:]
        try:
            program = dsl.parse(text, "fuzz.bnn")
        except CompileError as error:
            assert error.diagnostics
            assert error.render().startswith("fuzz.bnn")
            outcomes["error"] += 1
        else:
            assert ir.from_json(ir.to_json(program)) == program
            outcomes["ok"] += 1
    assert outcomes["ok"] > 20 and outcomes["error"] > 200
