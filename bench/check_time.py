"""How long `bnnc check` and `bnnc compile` take per example, end to end.

Measured against a bare `python -c pass` in the same run (interleaved, median
of rounds), so the figure is comparable across machines. Target (issue 2):
`bnnc check` on an example under 0.5 s wall, torch never imported.

    python bench/check_time.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(command: list[str]) -> float:
    """Seconds one command takes; fails loudly if it fails."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    """Print a table of medians and the pass/fail of the 0.5 s target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    examples = sorted((ROOT / "examples").glob("*.bnn"))
    baseline: list[float] = []
    rows: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        baseline.append(wall([sys.executable, "-c", "pass"]))
        for example in examples:
            for command in ("check", "compile"):
                extra = ["-o", "-"] if command == "compile" else []
                argv = [sys.executable, "-m", "bnnc", command, str(example), *extra]
                rows.setdefault(example.name, {}).setdefault(command, []).append(
                    wall(argv)
                )
    base = statistics.median(baseline)
    print(f"python startup baseline: {base * 1000:.0f} ms (median of {args.rounds})")
    print(f"{'example':<22} {'check ms':>9} {'compile ms':>11} {'check/base':>11}")
    worst = 0.0
    for name, timings in rows.items():
        check = statistics.median(timings["check"])
        compile_ = statistics.median(timings["compile"])
        worst = max(worst, check)
        print(
            f"{name:<22} {check * 1000:>9.0f} {compile_ * 1000:>11.0f} "
            f"{check / base:>10.1f}x"
        )
    verdict = "PASS" if worst < 0.5 else "FAIL"
    print(
        f"target: bnnc check < 500 ms on every example: {verdict} "
        f"(worst {worst * 1000:.0f} ms)"
    )
    return 0 if worst < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
