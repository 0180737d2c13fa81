"""The long fuzzing run of the front end: 100,000+ inputs outside pytest.

Same generators and property as ``tests/fuzz`` (see ``docs/robustness.md``):
every input is parsed, checked and compiled for both backends, and must
compile or raise a CompileError with valid diagnostics, within 2 s; what
compiles must give stable, parseable code, round-trip through JSON, and pass
the injection audit of ``tests/security/audit.py``. The mix per input:

    valid   30 %  a generated, well-formed program
    near    30 %  a valid program with one token deleted/duplicated/swapped/replaced
    example 25 %  byte-level mutations of a file of examples/ (imports resolve)
    bytes   10 %  byte-level mutations of a generated program
    ir       5 %  a generated program's IR as JSON with fields replaced by payloads

Input ``i`` is drawn from ``random.Random(f"{seed}:{i}")``, so a run is
reproducible whatever ``--jobs`` is, and one input can be replayed with
``--replay i``. Counts: escapes (any exception but CompileError, or a broken
property), hangs (an input over 2 s; one over ``--timeout`` is interrupted),
unsafe outputs (failed audit), the slowest input and the throughput.

    python bench/fuzz_long.py --inputs 100000            # the documented run
    python bench/fuzz_long.py --inputs 2000 --jobs 2     # a quick one
    python bench/fuzz_long.py --replay 12345 --seed 0    # print one input and verdict
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bnnc import dsl  # noqa: E402
from bnnc.compiler.diagnostics import CompileError  # noqa: E402
from tests.fuzz import specgen  # noqa: E402
from tests.fuzz.harness import (  # noqa: E402
    MAX_SECONDS,
    Verdict,
    check_file,
    check_ir,
    check_text,
)
from tests.security.audit import audit, vocabulary  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))
KINDS = (("valid", 30), ("near", 30), ("example", 25), ("bytes", 10), ("ir", 5))


class Hang(BaseException):
    """Raised by the alarm when an input runs past --timeout.

    A BaseException, so that the harness (which reports any Exception as an
    escape) lets it through.
    """


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def make_input(seed: int, index: int) -> tuple[str, object]:
    """Kind and input (text, file name and bytes, or IR JSON) of input ``index``."""
    chooser = specgen.RandomChooser(random.Random(f"{seed}:{index}"))
    roll = chooser.integer(0, 99)
    kind = KINDS[-1][0]
    for name, share in KINDS:
        if roll < share:
            kind = name
            break
        roll -= share
    if kind == "valid":
        return kind, specgen.valid_spec(chooser).text
    if kind == "near":
        return kind, specgen.near_valid(chooser, specgen.valid_spec(chooser).text)
    if kind == "example":
        example = chooser.choice(EXAMPLES)
        return kind, (example.name, specgen.mutate_bytes(chooser, example.read_bytes()))
    if kind == "bytes":
        data = specgen.valid_spec(chooser).text.encode("utf-8")
        return kind, ("generated.bnn", specgen.mutate_bytes(chooser, data))
    text = specgen.valid_spec(chooser).text
    try:
        data = dsl.parse(text).model_dump(mode="json")
    except CompileError:  # a program with an op the generator does not model
        return kind, json.dumps({"networks": [], "source": text})
    return kind, json.dumps(specgen.mutate_ir(chooser, data))


def run_input(kind: str, item: object, workdir: Path) -> Verdict:
    """The verdict for one input (audit of compiled outputs included)."""
    if kind in ("valid", "near"):
        verdict = check_text(item)  # type: ignore[arg-type]
    elif kind == "ir":
        verdict = check_ir(item)  # type: ignore[arg-type]
    else:
        name, data = item  # type: ignore[misc]
        target = workdir / name
        target.write_bytes(data)
        try:
            verdict = check_file(target)
        finally:
            original = ROOT / "examples" / name
            if original.exists():
                shutil.copy(original, target)
            else:
                target.unlink()
    if verdict.outcome == "compiled" and verdict.program is not None:
        for backend, source in verdict.outputs.items():
            problems = audit(source, verdict.program)
            if problems:
                verdict.problems.append(f"UNSAFE {backend}: " + "; ".join(problems))
    return verdict


def worker(job: tuple[int, int, int, float, int]) -> dict:
    """Run inputs ``start, start + step, ...`` below ``stop``; return counts."""
    seed, start, stop, timeout, step = job
    workdir = Path(tempfile.mkdtemp(prefix="bnnc-fuzz-"))
    for example in EXAMPLES:
        shutil.copy(example, workdir / example.name)
    signal.signal(signal.SIGALRM, _alarm)
    vocabulary()  # the audit's vocabulary and the parser, before any timing
    check_text("network A {}")
    counts: Counter[str] = Counter()
    failures: list[dict] = []
    slowest = (0.0, -1, "")
    for index in range(start, stop, step):
        kind, item = make_input(seed, index)
        counts[f"kind:{kind}"] += 1
        began = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            verdict = run_input(kind, item, workdir)
        except Hang:
            verdict = Verdict("hang", problems=[f"interrupted after {timeout} s"])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        # The front end's own time (the audit of outputs is not counted).
        seconds = verdict.seconds or time.perf_counter() - began
        if seconds > slowest[0]:
            slowest = (seconds, index, kind)
        counts[f"outcome:{verdict.outcome}"] += 1
        if seconds > MAX_SECONDS or verdict.outcome == "hang":
            counts["hangs"] += 1
        unsafe = any(p.startswith("UNSAFE") for p in verdict.problems)
        if unsafe:
            counts["unsafe"] += 1
        elif verdict.outcome == "escape" or verdict.problems:
            counts["escapes"] += 1
        if verdict.problems or seconds > MAX_SECONDS:
            failures.append(
                {
                    "index": index,
                    "kind": kind,
                    "seconds": round(seconds, 3),
                    "problems": [p[-2000:] for p in verdict.problems],
                }
            )
    shutil.rmtree(workdir, ignore_errors=True)
    return {"counts": dict(counts), "failures": failures, "slowest": slowest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=30.0, help="per input, s")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--replay", type=int, help="run and print one input")
    args = parser.parse_args(argv)
    if args.replay is not None:
        kind, item = make_input(args.seed, args.replay)
        print(f"kind: {kind}\ninput: {item!r}")
        with tempfile.TemporaryDirectory(prefix="bnnc-fuzz-") as directory:
            workdir = Path(directory)
            for example in EXAMPLES:
                shutil.copy(example, workdir / example.name)
            verdict = run_input(kind, item, workdir)
        print(verdict.report())
        return 0 if verdict.ok else 1

    jobs = max(1, min(args.jobs, args.inputs))
    chunks = [
        (args.seed, start, args.inputs, args.timeout, jobs) for start in range(jobs)
    ]
    began = time.perf_counter()
    if jobs == 1:
        results = [worker(chunks[0])]
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(worker, chunks)
    wall = time.perf_counter() - began
    counts: Counter[str] = Counter()
    failures: list[dict] = []
    slowest = max((r["slowest"] for r in results), key=lambda s: s[0])
    for result in results:
        counts.update(result["counts"])
        failures += result["failures"]
    failures.sort(key=lambda f: f["index"])
    summary = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python bench/fuzz_long.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "jobs": jobs,
        "seed": args.seed,
        "inputs": sum(v for k, v in counts.items() if k.startswith("kind:")),
        "by_kind": {k[5:]: v for k, v in sorted(counts.items()) if k[:5] == "kind:"},
        "outcomes": {
            k[8:]: v for k, v in sorted(counts.items()) if k.startswith("outcome:")
        },
        "escapes": counts["escapes"],
        "hangs": counts["hangs"],
        "unsafe": counts["unsafe"],
        "slowest_seconds": round(slowest[0], 3),
        "slowest_input": {"index": slowest[1], "kind": slowest[2]},
        "wall_seconds": round(wall, 1),
        "inputs_per_second": round(args.inputs / wall, 1),
        "failures": failures[:50],
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    bad = summary["escapes"] or summary["hangs"] or summary["unsafe"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
