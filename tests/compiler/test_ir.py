"""The IR: exact JSON round trips, schema, Python construction."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import bnnc
from bnnc import dsl
from bnnc.compiler import ir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_json_round_trip_is_exact(path: Path) -> None:
    program = dsl.load(path)
    text = ir.to_json(program)
    again = ir.from_json(text)
    assert again == program
    assert ir.to_json(again) == text


def test_nodes_are_frozen_and_strict() -> None:
    node = ir.Int(value=3)
    with pytest.raises(ValidationError):
        node.value = 4  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ir.Layer(name="a", op="Linear", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ir.Program(ir_version="999")  # type: ignore[arg-type]


def test_schema_describes_the_ir() -> None:
    schema = json.loads(ir.schema_json())
    assert schema["title"] == "bnnc IR"
    assert "Network" in schema["$defs"] and "Layer" in schema["$defs"]
    program_schema = schema["$defs"]["Program"]
    assert program_schema["properties"]["ir_version"]["const"] == "1"
    jsonschema = pytest.importorskip("jsonschema")
    program = dsl.load(ROOT / "examples" / "digits.bnn")
    jsonschema.validate(json.loads(ir.to_json(program)), schema)


def test_python_built_ir_compiles_like_the_spec() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_ir", ROOT / "examples" / "build_ir.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.digits_program()
    parsed = ir.without_locations(dsl.load(ROOT / "examples" / "digits.bnn"))
    assert parsed == built
    assert bnnc.compile(parsed) == bnnc.compile(built)


def test_without_locations_drops_every_span() -> None:
    program = ir.without_locations(dsl.load(ROOT / "examples" / "digits.bnn"))
    text = ir.to_json(program)
    assert '"line"' not in text
    assert program.source is None and program.source_sha256 is None
