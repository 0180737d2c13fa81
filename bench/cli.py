"""``python -m bench``: run the matrix, print the tables and targets, write JSON.

    python -m bench [--quick | --tiny] [--models mlp,cnn,lstm]
                    [--backends torch,compile,jax]
                    [--figures train,predict,memory,params,compile]
                    [--rounds N] [--threads N] [--json FILE] [--strict]

The process is pinned to ``--threads`` CPUs (when the machine has more) before
torch or JAX is imported, so XLA's thread pool and torch's intra-op threads
both see that many cores; children (memory, compiler) inherit the pinning.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.config import BACKENDS, FIGURES, FULL, MODELS, QUICK, TINY, Config
from bench.workloads import ROOT, WORKLOADS

DEFAULT_JSON = ROOT / "build" / "bench.json"
TIME_BASELINES = ("deterministic", "floor", "bayesian_torch")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _csv(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{what}: choose from {', '.join(allowed)} (got {value!r})"
        )
    return items


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    """The run's :class:`Config` and the remaining options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="bnnc's benchmark matrix: bnnc against same-run baselines.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    size.add_argument(
        "--tiny", action="store_true", help="smoke-test sizes (numbers meaningless)"
    )
    parser.add_argument(
        "--models",
        type=lambda v: _csv(v, MODELS, "--models"),
        default=MODELS,
        help="comma-separated: mlp,cnn,lstm",
    )
    parser.add_argument(
        "--backends",
        type=lambda v: _csv(v, BACKENDS, "--backends"),
        default=BACKENDS,
        help="comma-separated: torch,compile,jax",
    )
    parser.add_argument(
        "--figures",
        type=lambda v: _csv(v, FIGURES, "--figures"),
        default=FIGURES,
        help="comma-separated: train,predict,memory,params,compile",
    )
    parser.add_argument(
        "--rounds", type=int, help="timed rounds (default 15; 5 with --quick)"
    )
    parser.add_argument("--threads", type=int, help="threads / CPUs (default 2)")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the results (default {DEFAULT_JSON.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 unless every target passes"
    )
    args = parser.parse_args(argv)
    cfg = TINY if args.tiny else QUICK if args.quick else FULL
    changes: dict[str, Any] = {
        "models": args.models,
        "backends": args.backends,
        "figures": args.figures,
    }
    if args.rounds is not None:
        changes["rounds"] = max(1, args.rounds)
    if args.threads is not None:
        changes["threads"] = max(1, args.threads)
    return cfg.replace(**changes), args


def pin_threads(threads: int) -> list[int] | None:
    """Pin this process (and its future children) to ``threads`` CPUs."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > threads:
        cpus = cpus[:threads]
        os.sched_setaffinity(0, cpus)
    return cpus


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def meta(cfg: Config, command: str) -> dict[str, Any]:
    """Where and how the run was made."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "versions": {
            name: _version(name)
            for name in ("bnnc", "torch", "jax", "flax", "optax", "bayesian-torch")
        },
        "load_before": [round(x, 2) for x in load] if load else None,
        "config": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in cfg.__dict__.items()
        },
    }


def _guard(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one cell; a failure becomes ``{"error": ...}`` and the run goes on."""
    _log(f"[bench] {what}")
    try:
        return fn()
    except Exception as error:
        message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        _log(f"[bench] {what}: {message}")
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        return {"error": message}


def _timing_cell(cfg: Config, runs: dict[str, Any], calls: int, sync) -> dict:
    from bench import timing

    measured = timing.interleaved(
        runs, warmup=cfg.warmup, rounds=cfg.rounds, calls=calls, sync=sync
    )
    return timing.summarize(measured, "bnnc", TIME_BASELINES)


def _train(cfg: Config, model: str, backend: str) -> dict[str, Any]:
    workload = WORKLOADS[model]
    if backend == "jax":
        import jax

        from bench import jax_run

        runs = jax_run.train_contenders(workload, cfg.batch, cfg.seq_len, cfg.seed)
        return _timing_cell(cfg, runs, cfg.train_steps, jax.block_until_ready)
    from bench import torch_run

    if backend == "compile":
        _reset_torch_compile()
    runs = torch_run.train_contenders(
        workload, cfg.batch, cfg.seq_len, cfg.seed, compiled=backend == "compile"
    )
    return _timing_cell(cfg, runs, cfg.train_steps, lambda _: None)


def _predict(cfg: Config, model: str, backend: str) -> dict[str, Any]:
    workload = WORKLOADS[model]
    args = (workload, cfg.predict_batch, cfg.seq_len, cfg.mc_samples, cfg.seed)
    if backend == "jax":
        import jax

        from bench import jax_run

        runs = jax_run.predict_contenders(*args)
        return _timing_cell(cfg, runs, cfg.predict_calls, jax.block_until_ready)
    from bench import torch_run

    if backend == "compile":
        _reset_torch_compile()
    runs = torch_run.predict_contenders(*args, compiled=backend == "compile")
    return _timing_cell(cfg, runs, cfg.predict_calls, lambda _: None)


def _reset_torch_compile() -> None:
    import torch

    torch._dynamo.reset()


def _memory(cfg: Config, model: str, backend: str) -> dict[str, Any]:
    from bench import memory

    contenders = ["empty", "bnnc", "deterministic"]
    if backend != "jax" and importlib.util.find_spec("bayesian_torch"):
        contenders.append("bayesian_torch")
    mib: dict[str, float] = {}
    maxrss: dict[str, float] = {}
    for contender in contenders:
        got = memory.measure(
            model,
            backend,
            contender,
            cfg.memory_steps,
            cfg.batch,
            cfg.seq_len,
            cfg.threads,
        )
        if "error" in got:
            if contender in ("bnnc", "deterministic"):
                raise RuntimeError(f"{contender}: {got['error']}")
            _log(f"[bench]   {contender}: {got['error']}")
            continue
        mib[contender] = got["mib"]
        maxrss[contender] = got.get("ru_maxrss_mib", got["mib"])
    cell: dict[str, Any] = {
        "mib": mib,
        "ru_maxrss_mib": maxrss,
        "ratios": {},
        "net_ratios": {},
    }
    for base in ("deterministic", "bayesian_torch"):
        if base in mib:
            cell["ratios"][base] = mib["bnnc"] / mib[base]
            if "empty" in mib and mib[base] > mib["empty"]:
                cell["net_ratios"][base] = (mib["bnnc"] - mib["empty"]) / (
                    mib[base] - mib["empty"]
                )
    return cell


def run(cfg: Config, command: str) -> dict[str, Any]:
    """Run every selected figure; the results dictionary (also has targets)."""
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, command)
    finally:
        torch.set_num_threads(threads_before)


def _run(cfg: Config, command: str) -> dict[str, Any]:
    backends = list(cfg.backends)
    if "jax" in backends and importlib.util.find_spec("jax") is None:
        _log("[bench] jax is not installed: the JAX backend is skipped")
        backends.remove("jax")
    if importlib.util.find_spec("bayesian_torch") is None:
        _log(
            "[bench] bayesian-torch is not installed (scripts/bench.sh installs it): "
            "its ratios are n/a and its targets not checked"
        )
    results: dict[str, Any] = {"meta": meta(cfg, command)}
    for figure, fn in (("train", _train), ("predict", _predict)):
        if figure not in cfg.figures:
            continue
        results[figure] = {
            model: {
                backend: _guard(
                    f"{figure} {model} {backend}",
                    lambda fn=fn, m=model, b=backend: fn(cfg, m, b),
                )
                for backend in backends
            }
            for model in cfg.models
        }
    if "memory" in cfg.figures:
        results["memory"] = {
            model: {
                backend: _guard(
                    f"memory {model} {backend}",
                    lambda m=model, b=backend: _memory(cfg, m, b),
                )
                for backend in backends
            }
            for model in cfg.models
        }
    if "params" in cfg.figures:
        from bench import params

        frameworks = {"torch": params.torch_params}
        if "jax" in backends:
            frameworks["jax"] = params.jax_params
        results["params"] = {
            model: {
                name: _guard(
                    f"params {model} {name}", lambda f=f, m=model: f(WORKLOADS[m])
                )
                for name, f in frameworks.items()
                if name == "jax" or {"torch", "compile"} & set(backends)
            }
            for model in cfg.models
        }
    if "compile" in cfg.figures:
        from bench import compile_time

        results["compile"] = _guard(
            "compile time",
            lambda: compile_time.measure(
                cfg.models, cfg.compile_sizes, cfg.compile_runs
            ),
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["meta"]["load_after"] = [round(x, 2) for x in load] if load else None
    results["targets"] = report.targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    cfg, args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench", *shown])
    cpus = pin_threads(cfg.threads)
    _log(f"[bench] {command}: CPUs {cpus}, {cfg.threads} threads")
    results = run(cfg, command)
    results["meta"]["cpus"] = cpus
    print(report.render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\nJSON: {args.json}")
    failed = [t for t in results["targets"] if t["status"] != "pass"]
    return 1 if args.strict and failed else 0
