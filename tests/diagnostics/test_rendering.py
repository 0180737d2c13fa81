"""How diagnostics are located and rendered for the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.diagnostics import CompileError

SMALL = """\
network Net {
    input x: Tensor[B, 4]
    layers {
        fc = Linear(4, 1, prior=Gaussian(std=1.0))
    }
    forward {
        return fc(x)
    }
}
"""


def test_ir_file_without_spans_is_reported_at_the_file(tmp_path: Path) -> None:
    program = ir.without_locations(dsl.parse(SMALL, "small.bnn"))
    data = json.loads(ir.to_json(program))
    data["networks"][0]["layers"][0]["prior"]["params"] = {"std": -1.0, "sigma": 1.0}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CompileError) as caught:
        bnnc.check(path)
    assert caught.value.render().splitlines() == [
        f"{path}: error[BNN105]: `std` must be positive",
        f"{path}: error[BNN105]: unknown prior setting 'sigma'",
    ]
