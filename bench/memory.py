"""Peak resident memory of a training run, one child process per configuration.

The parent starts ``python -m bench.memory`` once per (model, backend,
contender) and once per backend with contender ``empty`` (only the framework
imported, nothing built: the part of every figure that is the interpreter and
the libraries). Each child builds its one contender, runs the training steps
and reports its own peak resident set (see :func:`_peak_mib`), so no
measurement sees another's allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARK = "BENCH_MEMORY "


def child_command(
    model: str, backend: str, contender: str, steps: int, batch: int, seq_len: int
) -> list[str]:
    """The command line of one child."""
    return [
        sys.executable,
        "-m",
        "bench.memory",
        "--model",
        model,
        "--backend",
        backend,
        "--contender",
        contender,
        "--steps",
        str(steps),
        "--batch",
        str(batch),
        "--seq-len",
        str(seq_len),
    ]


def measure(
    model: str,
    backend: str,
    contender: str,
    steps: int,
    batch: int,
    seq_len: int,
    threads: int,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Run one child; ``{"mib": peak}`` or ``{"error": message}``."""
    env = dict(os.environ, BENCH_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    command = child_command(model, backend, contender, steps, batch, seq_len)
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {done.returncode}: {tail[0]}"}


def _peak_mib() -> dict[str, float]:
    """``{"mib": peak RSS of this process, "ru_maxrss_mib": ...}``.

    On Linux the peak is ``VmHWM`` of ``/proc/self/status``: the high-water
    mark of this process's own address space. ``ru_maxrss`` is reported too,
    but Linux carries the parent's peak into it across ``fork``/``exec``
    (a child of a 1 GiB benchmark process reports at least 1 GiB), so it is
    only used where ``/proc`` is missing.
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if sys.platform == "darwin":
        maxrss /= 1024.0  # bytes there
    peak = maxrss
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return {"mib": peak, "ru_maxrss_mib": maxrss}


def _child(args: argparse.Namespace) -> dict[str, Any]:
    from bench.workloads import WORKLOADS

    threads = int(os.environ.get("BENCH_THREADS", "2"))
    workload = WORKLOADS[args.model]
    if args.backend in ("torch", "compile"):
        import torch

        torch.set_num_threads(threads)
        if args.contender == "empty":
            return _peak_mib()
        from bench import torch_run

        runs = torch_run.train_contenders(
            workload,
            args.batch,
            args.seq_len,
            0,
            compiled=args.backend == "compile",
            names=(args.contender,),
        )
        if not runs:
            return {"error": f"{args.contender} is not installed"}
        runs[args.contender](args.steps)
        return _peak_mib()
    import jax
    import jax.numpy as jnp
    import optax  # noqa: F401 - part of the framework's footprint
    from flax import nnx  # noqa: F401

    if args.contender == "empty":
        jax.block_until_ready(jnp.zeros(1))
        return _peak_mib()
    from bench import jax_run

    runs = jax_run.train_contenders(
        workload, args.batch, args.seq_len, 0, names=(args.contender,)
    )
    jax.block_until_ready(runs[args.contender](args.steps))
    return _peak_mib()


def main(argv: list[str] | None = None) -> int:
    """Child entry point: print ``BENCH_MEMORY {json}``."""
    parser = argparse.ArgumentParser(description="one peak-memory measurement")
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--contender", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq-len", type=int, required=True)
    result = _child(parser.parse_args(argv))
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
