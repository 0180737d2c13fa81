"""docs/language.md agrees with the registry and the grammar; its examples parse."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from bnnc import dsl
from bnnc.grammars import grammar_text

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "language.md"


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_ops_table", ROOT / "docs" / "gen_ops_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ops_table_in_docs_is_generated_from_the_registry():
    from bnnc.compiler.registry import REGISTRY

    generator = _generator()
    document = DOC.read_text(encoding="utf-8")
    assert generator.replaced(document) == document, (
        "docs/language.md is stale: run python docs/gen_ops_table.py --write"
    )
    table = generator.table()
    for name in REGISTRY:
        assert f"| `{name}` |" in table
    assert "| `Linear` | layer (Bayesian) | `Linear(input_size, output_size, " in table


def test_reserved_words_in_docs_match_the_grammar():
    document = DOC.read_text(encoding="utf-8")
    section = document.split("**Reserved words**", 1)[1].split("(`prior=`", 1)[0]
    assert set(re.findall(r"`([a-z]+)`", section)) == dsl.keywords()


def test_grammar_ships_as_package_data():
    text = grammar_text()
    assert text.startswith("// bnn.lark")
    assert "start:" in text


def _examples() -> list[str]:
    fences = re.findall(
        r"^```(\w*)\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M
    )
    return [
        block
        for language, block in fences
        if not language
        and "..." not in block
        and re.match(r"(#[^\n]*\n)*(network|prior|posterior|estimator|from) ", block)
    ]


@pytest.mark.parametrize("example", _examples())
def test_documented_examples_parse(example):
    program = dsl.parse(example, "example.bnn")
    assert program.networks or program.prior or program.imports or program.estimator


def test_there_are_documented_examples():
    assert len(_examples()) >= 4


def test_documented_sequential_desugaring_is_exact(plain):
    sequential, ordinary = (
        dsl.parse(example).networks[0]
        for example in _examples()
        if example.startswith("network MLP")
    )
    assert sequential.sequential and not ordinary.sequential
    expected = plain(ordinary) | {"sequential": True}
    assert plain(sequential) == expected
