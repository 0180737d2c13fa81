"""Compile time: ``bnnc compile`` from the command line, end to end.

Two figures, both against a bare ``python -c pass`` measured in the same
rounds (interleaved; medians): the three benchmark specs (torch and JAX
backends), and generated deep specs (10 / 100 / 1,000 Bayesian layers by
default) to show how compile time grows. Growth is linear when the cost per
added layer stays the same from the small pair of sizes to the large one:
``linearity`` is the per-layer slope between the two largest sizes divided by
the slope between the two smallest (1.0 for a straight line).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.workloads import ROOT, WORKLOADS

WIDTH = 16


def deep_spec(layers: int) -> str:
    """A network of ``layers`` Bayesian ``Linear`` layers with ReLUs between."""
    lines = [
        f"# A generated chain of {layers} Bayesian linear layers.",
        f"network Deep{layers}(width: int = {WIDTH}) {{",
        f"    input x: Tensor[B, {WIDTH}]",
        "",
        "    layers {",
    ]
    lines += [f"        fc{i} = Linear(width, width)" for i in range(layers)]
    lines += ["    }", "", "    forward {", "        h = x"]
    lines += [f"        h = relu(fc{i}(h))" for i in range(layers - 1)]
    lines += [f"        return fc{layers - 1}(h)", "    }", "}", ""]
    return "\n".join(lines)


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(command[2:5])}: {message[-1:]}")
    return elapsed


def _compile_command(spec: Path, backend: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bnnc",
        "compile",
        str(spec),
        "--backend",
        backend,
        "-o",
        str(out),
    ]


def measure(
    models: tuple[str, ...], sizes: tuple[int, ...], runs: int
) -> dict[str, Any]:
    """Median CLI wall times, their ratios to Python's startup, and linearity."""
    with tempfile.TemporaryDirectory(prefix="bnnc-bench-") as tmp:
        folder = Path(tmp)
        jobs: dict[str, list[str]] = {"python_startup": [sys.executable, "-c", "pass"]}
        for name in models:
            spec = WORKLOADS[name].spec
            for backend in ("torch", "jax"):
                out = folder / f"{name}_{backend}.py"
                jobs[f"{name}/{backend}"] = _compile_command(spec, backend, out)
        for n in sizes:
            spec = folder / f"deep{n}.bnn"
            spec.write_text(deep_spec(n), encoding="utf-8")
            jobs[f"deep/{n}"] = _compile_command(spec, "torch", folder / f"d{n}.py")
        seconds: dict[str, list[float]] = {key: [] for key in jobs}
        for r in range(runs):
            keys = list(jobs)
            shift = r % len(keys)
            for key in keys[shift:] + keys[:shift]:
                seconds[key].append(_wall(jobs[key]))
    base = seconds["python_startup"]
    median = {key: statistics.median(values) for key, values in seconds.items()}

    def ratio(key: str) -> float:
        return statistics.median(a / b for a, b in zip(seconds[key], base, strict=True))

    result: dict[str, Any] = {
        "runs": runs,
        "python_startup_s": median["python_startup"],
        "specs": {
            name: {
                backend: {
                    "s": median[f"{name}/{backend}"],
                    "ratio_to_startup": ratio(f"{name}/{backend}"),
                }
                for backend in ("torch", "jax")
            }
            for name in models
        },
        "deep": {
            str(n): {"s": median[f"deep/{n}"], "ratio_to_startup": ratio(f"deep/{n}")}
            for n in sizes
        },
    }
    if len(sizes) >= 3:
        small, mid, large = sorted(sizes)[0], sorted(sizes)[-2], sorted(sizes)[-1]
        t = {n: median[f"deep/{n}"] for n in (small, mid, large)}
        slope_low = (t[mid] - t[small]) / (mid - small)
        slope_high = (t[large] - t[mid]) / (large - mid)
        result["per_layer_ms"] = {
            f"{small}-{mid}": 1000 * slope_low,
            f"{mid}-{large}": 1000 * slope_high,
        }
        # Both slopes must be positive to say anything (tiny sizes are noise).
        positive = slope_low > 0 and slope_high > 0
        result["linearity"] = slope_high / slope_low if positive else None
        result["largest"] = large
    return result
