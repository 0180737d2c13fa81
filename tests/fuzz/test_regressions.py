"""Bugs the fuzzers found, one test each (see docs/robustness.md)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler.diagnostics import CompileError, DiagnosticSink
from bnnc.dsl.lower import Lowering
from tests.fuzz.harness import check_text


def rejected(text: str) -> list[str]:
    """Error codes of compiling ``text`` (which must fail with valid diagnostics)."""
    verdict = check_text(text)
    assert verdict.ok, verdict.report()
    assert verdict.outcome == "rejected", "expected a CompileError"
    return sorted(set(verdict.codes))


def net(layers: str, forward: str, dims: str = "B, 4") -> str:
    return (
        f"network Main {{\n    input x: Tensor[{dims}]\n    layers {{ {layers} }}\n"
        f"    forward {{ {forward} }}\n}}\n"
    )


@pytest.mark.parametrize(
    "forward",
    [
        "return f(none)",  # compiled to `self.f()`
        "return (a=f(x), b=g(none))",  # crashed the backend (KeyError)
        "h = f(none) return relu(h)",
        "return none",
        "return x + none",
        "return Normal(none)",
    ],
)
def test_none_in_forward_is_bnn301(forward: str) -> None:
    assert "BNN301" in rejected(net("f = Linear(4, 4) g = Linear(4, 4)", forward))


def test_one_item_tuple_for_a_pair_argument_is_bnn301() -> None:
    # Crashed the shape rule with an IndexError.
    layer = "c = Conv2d(1, 2, (3,), stride=2)"
    assert rejected(net(layer, "return c(x)", "B, 1, 8, 8")) == ["BNN301"]
    assert rejected(net("", "return max_pool2d(x, (2,))", "B, 1, 8, 8")) == ["BNN301"]


@pytest.mark.parametrize("default", ["zzz", "self", "2 * zzz"])
def test_sub_network_with_a_broken_int_default(default: str) -> None:
    # Found by the long run: instantiating `Blk()` fed the default's unknown
    # value to Linear's shape rule (AssertionError).
    block = net("f = Linear(4, k)", "return f(x)").replace(
        "Main", f"Blk(k: int = {default})"
    )
    assert rejected(block + net("b = Blk()", "return b(x)")) == ["BNN201"]


def test_parameter_named_like_a_network_layer_is_bnn209() -> None:
    # `def __init__(self, Block: int = 4)` hid the class it then called.
    block = net("f = Linear(4, 4)", "return f(x)").replace("Main", "Block")
    text = block + net("b = Block()", "return b(x)").replace(
        "Main", "Main(Block: int = 4)"
    )
    assert rejected(text) == ["BNN209"]


@pytest.mark.parametrize(
    "text",
    [
        net("f = Linear(4, 4)", "MainOutput = f(x) return (a=MainOutput, b=x)"),
        net("f = Linear(4, 4)", "return (a=f(MainOutput), b=MainOutput)").replace(
            "input x", "input MainOutput"
        ),
    ],
)
def test_locals_named_like_the_output_record_are_bnn209(text: str) -> None:
    # forward's `return MainOutput(...)` called the local instead.
    assert rejected(text) == ["BNN209"]


@pytest.mark.parametrize("name", ["register_forward_hook", "to_empty", "set_submodule"])
def test_module_methods_cannot_name_layers(name: str) -> None:
    # `self.register_forward_hook(x)` called the method and returned a handle.
    assert rejected(net(f"{name} = Linear(4, 4)", f"return {name}(x)")) == ["BNN209"]


@pytest.mark.parametrize(
    "head", ["Normal(x)", "Categorical(x)", "Bernoulli(x, groups=2)"]
)
def test_head_over_a_run_time_dimension_is_bnn403(head: str) -> None:
    # Generated `bnn.Distribution(T // 2, "normal")` named an undefined `T`.
    assert rejected(net("", f"return {head}", "B, T")) == ["BNN403"]


def test_nested_networks_with_errors_stay_linear() -> None:
    # Failing instantiations are remembered too, so errors do not re-explode.
    parts = [net("f = Linear(5, 4)", "return f(x)").replace("Main", "N0")]
    for level in range(1, 40):
        layers = f"a = N{level - 1}() b = N{level - 1}()"
        parts.append(net(layers, "return b(a(x))").replace("Main", f"N{level}"))
    start = time.perf_counter()
    with pytest.raises(CompileError):
        bnnc.check(dsl.parse("".join(parts)))
    assert time.perf_counter() - start < 2.0


def test_doc_comment_blocks_are_read_in_linear_time() -> None:
    # Leading blank `#` lines were dropped with list.pop(0), one at a time.
    lines = 300_000
    text = "#\n" * lines + "network A {}\n"
    lowering = Lowering(text, "doc.bnn", DiagnosticSink())
    network = SimpleNamespace(meta=SimpleNamespace(line=lines + 1, column=1))
    start = time.perf_counter()
    assert lowering.docstring(network) is None  # type: ignore[arg-type]
    assert time.perf_counter() - start < 1.0


def test_rendered_excerpts_of_files_with_a_lone_cr(tmp_path: Path) -> None:
    # api.sources_of read files with newline translation: a lone CR became a
    # line break, and excerpts showed the line above the error.
    path = tmp_path / "cr.bnn"
    path.write_bytes(b"# a\rb\n" + net("f = Linear(auto, 4)", "return f(y)").encode())
    with pytest.raises(CompileError) as caught:
        bnnc.check(path)
    rendered = caught.value.render()
    assert ":5:24: error[BNN201]" in rendered
    assert "5 |     forward { return f(y) }" in rendered
