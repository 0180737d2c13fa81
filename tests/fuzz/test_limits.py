"""Limits on pathological input, each with its diagnostic code.

Tests that already exist elsewhere are not repeated here (see
``docs/robustness.md`` for the full table): expression nesting
(``tests/dsl/test_dsl_errors.py``), oversize files and texts, two-file and
self-import cycles, a non-UTF-8 byte in a file, a BOM, tabs and CRLF that parse
(``tests/dsl/test_dsl_imports.py``, ``tests/dsl/test_dsl_parse.py``, the
``tests/diagnostics`` corpus).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.check import program as check_program_module
from bnnc.compiler.diagnostics import CompileError
from bnnc.dsl import source
from tests.fuzz.harness import check_file, check_text


def errors(run: Callable[[], object]) -> CompileError:
    with pytest.raises(CompileError) as caught:
        run()
    return caught.value


def codes(error: CompileError) -> list[str]:
    return sorted({d.code for d in error.diagnostics if d.severity == "error"})


def net(name: str, layers: str, forward: str, dims: str = "B, 4") -> str:
    return (
        f"network {name} {{\n    input x: Tensor[{dims}]\n"
        f"    layers {{ {layers} }}\n    forward {{ {forward} }}\n}}\n"
    )


# --- nesting --------------------------------------------------------------------------


def _chain(depth: int, uses: int) -> str:
    """Networks N1..N<depth>, each using the one before ``uses`` times."""
    parts = [net("N0", "f = Linear(4, 4)", "return f(x)")]
    for level in range(1, depth + 1):
        layers = " ".join(f"f{i} = N{level - 1}()" for i in range(uses))
        call = "x"
        for i in range(uses):
            call = f"f{i}({call})"
        parts.append(net(f"N{level}", layers, f"return {call}"))
    return "".join(parts)


def test_networks_nested_too_deeply_are_bnn005() -> None:
    error = errors(lambda: bnnc.check(dsl.parse(_chain(70, 1))))
    assert codes(error) == ["BNN005"]


def test_nested_networks_never_exhaust_the_stack() -> None:
    # 64 levels, each calling the level below twice: deep enough to exhaust
    # Python's stack in the recursive checker; BNN005, not RecursionError.
    verdict = check_text(_chain(64, 2))
    assert verdict.ok, verdict.report()
    assert verdict.codes and set(verdict.codes) == {"BNN005"}


def test_networks_used_twice_at_every_level_check_in_linear_time() -> None:
    # Each level uses the one below twice: checked naively, 2**30 instantiations.
    start = time.perf_counter()
    bnnc.compile(dsl.parse(_chain(30, 2)))
    assert time.perf_counter() - start < 2.0


def test_import_chain_too_deep_is_bnn005(tmp_path: Path) -> None:
    depth = 52
    for i in range(depth):
        if i + 1 < depth:
            text = f'from "f{i + 1}.bnn" import N{i + 1}\n' + net(
                f"N{i}", f"f = N{i + 1}()", "return f(x)"
            )
        else:
            text = net(f"N{i}", "f = Linear(4, 4)", "return f(x)")
        (tmp_path / f"f{i}.bnn").write_text(text, encoding="utf-8")
    error = errors(lambda: dsl.load(tmp_path / "f0.bnn"))
    assert codes(error) == ["BNN005"]
    assert "imports nest more than 50 files deep" in error.render()


def test_three_file_import_cycle_is_bnn004(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, target in (("a", "b"), ("b", "c"), ("c", "a")):
        (tmp_path / f"{name}.bnn").write_text(
            f'from "{target}.bnn" import {target.upper()}\n'
            f"network {name.upper()} {{}}\n",
            encoding="utf-8",
        )
    error = errors(lambda: dsl.load("a.bnn"))
    assert codes(error) == ["BNN004"]
    assert "a.bnn -> b.bnn -> c.bnn -> a.bnn" in error.render()


def test_deep_ir_built_in_python_is_bnn005() -> None:
    size: ir.Expr = ir.Int(value=4)
    for _ in range(5000):
        size = ir.Neg(operand=size)
    network = ir.Network(
        name="A",
        inputs=[ir.Input(name="x", dims=[ir.Name(id="B"), ir.Int(value=4)])],
        layers=[ir.Layer(name="f", op="Linear", args=[ir.Int(value=4), size])],
        body=[ir.Return(outputs=[ir.Output(value=ir.call("f", ir.Name(id="x")))])],
    )
    error = errors(lambda: bnnc.compile(ir.Program(networks=[network])))
    assert codes(error) == ["BNN005"]


def test_deep_ir_json_is_an_input_error(tmp_path: Path) -> None:
    program = dsl.parse(net("A", "f = Linear(4, 4)", "return f(x)"))
    data = json.loads(ir.to_json(program))
    size: dict = {"kind": "int", "value": 4, "span": None}
    for _ in range(300):
        size = {"kind": "neg", "operand": size, "span": None}
    data["networks"][0]["layers"][0]["args"][1] = size
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    error = errors(lambda: bnnc.compile(path))
    assert codes(error) == ["BNN104"]
    assert "invalid IR JSON" in error.render()


# --- size -----------------------------------------------------------------------------


def test_a_file_of_exactly_one_mebibyte_is_accepted(tmp_path: Path) -> None:
    body = net("A", "f = Linear(4, 4)", "return f(x)")
    path = tmp_path / "big.bnn"
    path.write_bytes(body.encode() + b"#" * (source.MAX_BYTES - len(body) - 1) + b"\n")
    assert path.stat().st_size == source.MAX_BYTES
    assert dsl.load(path).networks[0].name == "A"
    path.write_bytes(path.read_bytes() + b"\n")
    assert codes(errors(lambda: dsl.load(path))) == ["BNN005"]


def test_an_oversize_import_is_bnn005_at_the_import(tmp_path: Path) -> None:
    (tmp_path / "big.bnn").write_bytes(b"#" * (source.MAX_BYTES + 1))
    (tmp_path / "main.bnn").write_text(
        'network M {}\nfrom "big.bnn" import B\n', encoding="utf-8"
    )
    error = errors(lambda: dsl.load(tmp_path / "main.bnn"))
    (diagnostic,) = error.diagnostics
    assert diagnostic.code == "BNN005"
    assert diagnostic.span is not None and diagnostic.span.line == 2


# --- number of layers -----------------------------------------------------------------


def test_more_than_max_layers_is_bnn005() -> None:
    limit = check_program_module.MAX_LAYERS
    assert limit == 10_000
    layers = [
        ir.Layer(name=f"l{i}", op="Linear", args=[ir.Int(value=4), ir.Int(value=4)])
        for i in range(limit + 1)
    ]
    body: list[ir.Statement] = [
        ir.Assign(target="x", value=ir.call(f"l{i}", ir.Name(id="x")))
        for i in range(limit + 1)
    ]
    body.append(ir.Return(outputs=[ir.Output(value=ir.Name(id="x"))]))
    network = ir.Network(
        name="A",
        inputs=[ir.Input(name="x", dims=[ir.Name(id="B"), ir.Int(value=4)])],
        layers=layers,
        body=body,
    )
    start = time.perf_counter()
    error = errors(lambda: bnnc.check(ir.Program(networks=[network])))
    assert time.perf_counter() - start < 2.0  # refused before checking them all
    assert codes(error) == ["BNN005"]
    assert "10001 layers" in error.diagnostics[0].message


def test_layer_limit_points_at_the_first_layer_too_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(check_program_module, "MAX_LAYERS", 3)
    ok = "network S = sequential { Linear(4, 4), Linear(4, 4), Linear(4, 4) }"
    bnnc.check(dsl.parse(ok))
    text = "network S = sequential {\n Linear(4, 4), Linear(4, 4), Linear(4, 4),\n"
    text += " relu, Linear(4, 2)\n}"
    error = errors(lambda: bnnc.check(dsl.parse(text, "s.bnn")))
    (diagnostic,) = error.diagnostics
    assert diagnostic.code == "BNN005"
    assert diagnostic.span is not None
    assert (diagnostic.span.line, diagnostic.span.column) == (3, 8)


# --- integer overflow in shape arithmetic ---------------------------------------------

BIG = 2**20


@pytest.mark.parametrize(
    ("dims", "forward", "layers"),
    [
        (f"B, {BIG}, {BIG}, {BIG}", "return flatten(x)", ""),
        (f"B, {BIG}, {BIG}, {BIG}", "return f(flatten(x))", "f = Linear(auto, 2)"),
        ("B, 1099511627776", "return concat(x, x)", ""),
        (f"B, {BIG}, {BIG}, 2", "return flatten(x)", ""),
        ("B, 4", "return f(x)", "f = Linear(4, 1099511627776 * 2)"),
        ("B, 4", "return f(x)", "f = Linear(4, -(1099511627776 + 1))"),
    ],
)
def test_shape_arithmetic_overflow_is_bnn104(
    dims: str, forward: str, layers: str
) -> None:
    text = net("A", layers, forward, dims)
    error = errors(lambda: bnnc.compile(dsl.parse(text, "big.bnn")))
    assert "BNN104" in codes(error), error.render()


def test_overflow_through_a_parameter_default_and_a_sub_network() -> None:
    text = "network A(n: int = 1048576) {\n    input x: Tensor[B, n, n, n]\n"
    text += "    forward { return flatten(x) }\n}\n"
    assert codes(errors(lambda: bnnc.compile(dsl.parse(text)))) == ["BNN104"]
    inner = "network In(n: int = 4) {\n    input x: Tensor[B, n]\n"
    inner += "    forward { return concat(x, x, x) }\n}\n"
    outer = net("Out", "i = In(n=1099511627776)", "return i(x)", "B, 1099511627776")
    error = errors(lambda: bnnc.compile(dsl.parse(inner + outer)))
    assert codes(error) == ["BNN104"]


def test_sizes_at_the_limit_are_fine() -> None:
    text = net("A", "", "return flatten(x)", f"B, {BIG}, {BIG}")  # 2**40 exactly
    bnnc.compile(dsl.parse(text))


# --- encodings, byte-order marks, line endings, tabs ----------------------------------


@pytest.mark.parametrize(
    ("data", "line", "column", "offset"),
    [
        (b"\xffnetwork A {}\n", 1, 1, 0),
        (b"network A {}\n# caf\xc3", 2, 6, 18),  # truncated at the end of the file
        (b"network A {}\r\n\r\n# \xed\xa0\x80\n", 3, 3, 18),  # an encoded surrogate
        (b"network A {}\n\xc0\xaf\n", 2, 1, 13),  # an overlong encoding of "/"
        (b"\xef\xbb\xbfnetwork A {}\n\xfe", 2, 1, 16),  # the offset counts the BOM
        (b'network A { input x: Tensor["\xe9", 4] }', 1, 30, 29),
    ],
)
def test_invalid_utf8_is_bnn002_at_the_byte(
    tmp_path: Path, data: bytes, line: int, column: int, offset: int
) -> None:
    path = tmp_path / "bad.bnn"
    path.write_bytes(data)
    verdict = check_file(path)
    assert verdict.ok, verdict.report()
    error = errors(lambda: dsl.load(path))
    (diagnostic,) = error.diagnostics
    assert diagnostic.code == "BNN002"
    assert diagnostic.span is not None
    assert (diagnostic.span.line, diagnostic.span.column) == (line, column)
    assert f"at offset {offset})" in diagnostic.message
    assert data[offset] == int(diagnostic.message.split("byte 0x")[1][:2], 16)


def test_a_bom_is_only_accepted_at_the_start_of_a_file(tmp_path: Path) -> None:
    text = net("A", "f = Linear(4, 4)", "return f(x)")
    (tmp_path / "bom.bnn").write_bytes(b"\xef\xbb\xbf" + text.encode())
    bnnc.compile(tmp_path / "bom.bnn")
    # dsl.parse takes text: a decoded BOM there is a character like any other.
    (diagnostic,) = errors(lambda: dsl.parse("\ufeff" + text)).diagnostics
    assert diagnostic.code == "BNN102" and "U+FEFF" in diagnostic.message
    assert diagnostic.span is not None and diagnostic.span.column == 1
    (tmp_path / "twice.bnn").write_bytes(b"\xef\xbb\xbf" * 2 + text.encode())
    (diagnostic,) = errors(lambda: dsl.load(tmp_path / "twice.bnn")).diagnostics
    assert diagnostic.code == "BNN102"
    assert diagnostic.span is not None and diagnostic.span.line == 1
    middle = text.replace("layers", "\ufefflayers")
    (tmp_path / "middle.bnn").write_text(middle, encoding="utf-8")
    (diagnostic,) = errors(lambda: dsl.load(tmp_path / "middle.bnn")).diagnostics
    assert diagnostic.code == "BNN102"
    assert diagnostic.span is not None and diagnostic.span.line == 3


def test_crlf_diagnostics_point_at_the_right_place(tmp_path: Path) -> None:
    text = net("A", "f = Linear(5, 2)", "return f(x)").replace("\n", "\r\n")
    path = tmp_path / "crlf.bnn"
    path.write_bytes(text.encode())
    error = errors(lambda: bnnc.check(path))
    (diagnostic,) = error.diagnostics
    assert diagnostic.code == "BNN402"
    assert diagnostic.span is not None
    assert (diagnostic.span.line, diagnostic.span.column) == (4, 22)
    assert "\r" not in error.render()
    assert (
        "4 |     forward { return f(x) }\n  |                      ^^^^"
        in error.render()
    )
    truncated = path.read_bytes()[:-9]  # `... f(x) }` without its closing braces
    path.write_bytes(truncated)
    (diagnostic,) = errors(lambda: dsl.load(path)).diagnostics
    assert diagnostic.code == "BNN103"
    assert diagnostic.span is not None and diagnostic.span.line == 4


def test_a_lone_carriage_return_is_whitespace_and_keeps_line_numbers(
    tmp_path: Path,
) -> None:
    # Editors may show a lone CR as a line break; bnnc (like its line numbers)
    # counts only "\n", and a CR inside a comment does not end the comment.
    text = "network A {\r    input x: Tensor[B, 4]\n"
    text += "    layers { f = Linear(5, 2) }  # note\rnot code\n"
    text += "    forward { return f(x) }\n}\n"
    path = tmp_path / "cr.bnn"
    path.write_bytes(text.encode())
    error = errors(lambda: bnnc.check(path))
    (diagnostic,) = error.diagnostics
    assert diagnostic.code == "BNN402"
    assert diagnostic.span is not None and diagnostic.span.line == 3
    # The excerpt shows line 3 as the parser counted it (a CR is not a break).
    assert "3 |     forward { return f(x) }" in error.render()


def test_tabs_count_as_one_column_and_the_caret_lines_up(tmp_path: Path) -> None:
    text = "network A {\n\tinput x: Tensor[B, 4]\n\tlayers {\tf = Linear(5, 2) }\n"
    text += "\tforward {\treturn\tf(x) }\n}\n"
    (tmp_path / "tabs.bnn").write_text(text, encoding="utf-8")
    error = errors(lambda: bnnc.check(tmp_path / "tabs.bnn"))
    (diagnostic,) = error.diagnostics
    assert diagnostic.span is not None
    assert (diagnostic.span.line, diagnostic.span.column) == (4, 19)
    assert "4 |  forward { return f(x) }\n  |                   ^^^^" in error.render()
