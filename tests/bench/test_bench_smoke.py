"""Smoke test of the benchmark harness (``python -m bench``) at tiny sizes.

Only the harness is checked: every figure is produced, the JSON has the
documented structure, every ratio is a positive finite number and every target
has a status. No wall-clock value is asserted (the numbers of a tiny run on a
shared machine mean nothing). Parts whose optional dependencies are missing
(JAX, bayesian-torch) are skipped or must show as not checked.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import bnnc
from bench import cli, compile_time, report, torch_models
from bench.workloads import WORKLOADS

HAS_BT = importlib.util.find_spec("bayesian_torch") is not None
STATUSES = {"pass", "fail", "not checked", "error"}


@pytest.fixture(autouse=True)
def _no_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the test process on all its CPUs (the harness pins itself)."""
    monkeypatch.setattr(cli, "pin_threads", lambda threads: None)


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    assert cli.main(["--tiny", "--threads", "1", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_timing(cell: dict[str, Any], baselines: set[str]) -> None:
    assert "error" not in cell, cell.get("error")
    assert {"bnnc", "deterministic", "floor"} <= set(cell["ms"])
    assert all(_positive(ms) for ms in cell["ms"].values())
    assert all(_positive(s) for s in cell["first_call_s"].values())
    assert set(cell["ratios"]) == baselines
    for stats in cell["ratios"].values():
        assert all(_positive(stats[k]) for k in ("median", "min", "max"))
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert all(_positive(r) for r in stats["rounds"])


def _check_targets(data: dict[str, Any]) -> None:
    assert data["targets"]
    for target in data["targets"]:
        assert target["status"] in STATUSES
        assert target["status"] != "error", target
        if target["status"] in ("pass", "fail"):
            assert _positive(target["value"])


def test_torch_timing_and_params(tmp_path: Path, capsys) -> None:
    data = _run(tmp_path, "--backends", "torch", "--figures", "train,predict,params")
    assert data["meta"]["config"]["backends"] == ["torch"]
    baselines = {"deterministic", "floor"} | ({"bayesian_torch"} if HAS_BT else set())
    for figure in ("train", "predict"):
        assert set(data[figure]) == set(WORKLOADS)
        for model in WORKLOADS:
            _check_timing(data[figure][model]["torch"], baselines)
    for model in WORKLOADS:
        cell = data["params"][model]["torch"]
        assert cell["only_mu_rho"]
        assert cell["ratio"] == pytest.approx(cell["expected_ratio"])
        if model != "cnn":  # conv1 of the digits CNN is fixed
            assert cell["ratio"] == 2.0
    _check_targets(data)
    ids = {t["id"] for t in data["targets"]}
    assert {"T1a", "T1b", "T2a", "T2b", "T4a"} <= ids
    if not HAS_BT:
        assert all(
            t["status"] == "not checked" for t in data["targets"] if t["id"] == "T1b"
        )
    text = capsys.readouterr().out
    assert "Training step" in text and "MC prediction" in text and "Targets" in text


def test_memory_and_compile_time(tmp_path: Path) -> None:
    data = _run(
        tmp_path,
        "--models",
        "mlp",
        "--backends",
        "torch",
        "--figures",
        "memory,compile",
    )
    cell = data["memory"]["mlp"]["torch"]
    assert "error" not in cell, cell.get("error")
    assert {"empty", "bnnc", "deterministic"} <= set(cell["mib"])
    assert all(_positive(v) for v in cell["mib"].values())
    assert all(_positive(v) for v in cell["ratios"].values())
    comp = data["compile"]
    assert "error" not in comp, comp.get("error")
    assert _positive(comp["python_startup_s"])
    assert set(comp["deep"]) == {"2", "4", "8"}
    assert all(
        _positive(v["s"]) and _positive(v["ratio_to_startup"])
        for v in comp["deep"].values()
    )
    for backend in ("torch", "jax"):
        assert _positive(comp["specs"]["mlp"][backend]["s"])
    _check_targets(data)
    assert {"T4b", "T5a", "T5b"} <= {t["id"] for t in data["targets"]}


def test_jax_timing_and_params(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    pytest.importorskip("flax.nnx")
    data = _run(
        tmp_path,
        "--models",
        "mlp",
        "--backends",
        "jax",
        "--figures",
        "train,predict,params",
    )
    for figure in ("train", "predict"):
        _check_timing(data[figure]["mlp"]["jax"], {"deterministic", "floor"})
    cell = data["params"]["mlp"]["jax"]
    assert cell["only_mu_rho"] and cell["ratio"] == 2.0
    _check_targets(data)
    assert "T3" in {t["id"] for t in data["targets"]}


def test_missing_baseline_is_not_checked() -> None:
    cell = {
        "ms": {"bnnc": 2.0, "deterministic": 1.0, "floor": 1.5},
        "ratios": {"floor": {"median": 1.2, "min": 1.1, "max": 1.3}},
    }
    results = {"train": {"mlp": {"torch": cell}}, "predict": {}}
    by_id = {t["id"]: t for t in report.targets(results)}
    assert by_id["T1a"]["status"] == "fail"
    assert by_id["T1b"]["status"] == "not checked"
    results = {"train": {"mlp": {"torch": {"error": "RuntimeError: boom"}}}}
    assert {t["status"] for t in report.targets(results)} == {"error"}


def test_floor_is_the_twin_plus_draws() -> None:
    """The floor trains the twin's weights plus one rho per Bayesian tensor, and
    with a vanishing sigma computes exactly the twin's function."""
    import numpy as np
    import torch

    for workload in WORKLOADS.values():
        twin = torch_models.deterministic_model(workload).eval()
        names = torch_models.bayesian_names(workload, twin)
        bayes = sum(p.numel() for n, p in twin.named_parameters() if n in names)
        total = sum(p.numel() for p in twin.parameters())
        floor = torch_models.Floor(twin, names, rho_init=-40.0).eval()
        assert sum(p.numel() for p in floor.parameters()) == total + bayes
        x, _ = workload.inputs(3, 4, np.random.default_rng(0))
        with torch.no_grad():
            expected = twin(torch.from_numpy(x))
            got = floor(torch.from_numpy(x))
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_deep_spec_checks(tmp_path: Path) -> None:
    spec = tmp_path / "deep.bnn"
    spec.write_text(compile_time.deep_spec(5), encoding="utf-8")
    assert [info.name for info in bnnc.check(spec).main_networks()] == ["Deep5"]


def test_unknown_model_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as error:
        cli.parse_args(["--models", "resnet"])
    assert error.value.code == 2
