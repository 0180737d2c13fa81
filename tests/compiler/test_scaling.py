"""`bnnc compile` does work linear in the size of the spec.

Not timed (timings on a shared machine are noise): the CLI runs in-process under
cProfile, which counts every Python and built-in call (each step of a generator
too). The count per added layer must be the same from 10 to 100 layers as from
100 to 1,000: a scan of the remaining layers for every layer, say, breaks that
by far. The wall clock is the benchmark's business (``bench/compile_time.py``).
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path

import pytest

from bnnc.compiler import cli
from bnnc.compiler.check import program as check_program_module


def chain(layers: int) -> str:
    """Explicit layers and forward; every size after the first inferred."""
    declared = "\n".join(
        f"        l{i} = Linear({'auto' if i else 'width'}, width)"
        for i in range(layers)
    )
    calls = "\n".join(f"        h = relu(l{i}(h))" for i in range(layers))
    return (
        "network Deep(width: int = 16) {\n    input x: Tensor[B, width]\n"
        f"    layers {{\n{declared}\n    }}\n"
        f"    forward {{\n        h = x\n{calls}\n        return h\n    }}\n}}\n"
    )


def sequential(layers: int) -> str:
    items = "\n".join(
        f"    Linear({'auto' if i else 16}, 16),  # layer {i}\n    relu,"
        for i in range(layers)
    )
    return f"network Deep = sequential {{\n{items}\n}}\n"


def calls_to_compile(spec: Path, backend: str) -> int:
    """Function calls (Python and built-in) of one `bnnc compile` run."""
    argv = ["compile", str(spec), "--backend", backend, "-o", str(spec) + ".py"]
    profile = cProfile.Profile()
    status = profile.runcall(cli.main, argv)
    assert status == 0
    stats = pstats.Stats(profile)
    return sum(calls for calls, *_ in stats.stats.values())  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("make", [chain, sequential], ids=["chain", "sequential"])
def test_compile_work_is_linear_in_layers(
    tmp_path: Path, make: Callable[[int], str], backend: str
) -> None:
    counts = {}
    for layers in (2, 10, 100, 1000):  # 2: imports and caches are warm after it
        spec = tmp_path / f"deep{layers}.bnn"
        spec.write_text(make(layers), encoding="utf-8")
        counts[layers] = calls_to_compile(spec, backend)
    assert counts[1000] <= 10 * counts[100], counts
    # The work per layer is the same from 10 to 100 layers as from 100 to 1,000.
    per_layer_small = (counts[100] - counts[10]) / 90
    per_layer_large = (counts[1000] - counts[100]) / 900
    assert per_layer_large <= 1.05 * per_layer_small, counts


def test_compile_checks_the_program_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[object] = []
    check = check_program_module._check_program

    def counted(program: object) -> object:
        runs.append(program)
        return check(program)  # type: ignore[arg-type]

    monkeypatch.setattr(check_program_module, "_check_program", counted)
    spec = tmp_path / "deep.bnn"
    spec.write_text(chain(3), encoding="utf-8")
    assert cli.main(["compile", str(spec), "-o", str(tmp_path / "out.py")]) == 0
    assert len(runs) == 1
