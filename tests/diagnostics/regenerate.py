"""Rewrite the golden ``.expected`` files of the diagnostics corpus.

Usage (from anywhere)::

    python tests/diagnostics/regenerate.py              # every case
    python tests/diagnostics/regenerate.py 201 330_ret  # cases whose name starts so
    python tests/diagnostics/regenerate.py --check      # list stale files, write none

Each ``cases/NNN_name.expected`` becomes the exact stderr of
``bnnc check tests/diagnostics/cases/NNN_name.bnn`` run from the repository root,
and each ``pedantic/NNN_name.expected`` that of
``bnnc check -q --pedantic tests/diagnostics/pedantic/NNN_name.bnn`` (the
warnings of ``docs/errors.md``'s 6xx examples).

REVIEW THE DIFF (``git diff tests/diagnostics/cases``) BEFORE COMMITTING IT. The
files are a specification of what users see, not a snapshot to accept blindly:
for every changed file, check the code, the line:col and caret span, the message
and the hints as a user who made that mistake would read them. Some files were
written by hand to show the output bnnc *should* give: they are listed in
:data:`PENDING` with the compiler problem each shows, and are skipped unless named
on the command line or ``--include-pending`` is given. When a fix lands, remove
the entry and check that the case passes (or regenerate it and review).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES = HERE / "cases"
PEDANTIC = HERE / "pedantic"

# Cases whose .expected is the output bnnc SHOULD give, not what it prints today.
# Each names the compiler problem; the corpus test fails on them until it is fixed.
PENDING: dict[str, str] = {}


def case_files() -> list[Path]:
    """Every case of the corpus (helper files under ``cases/imports`` excluded)."""
    return sorted(CASES.glob("*.bnn"))


def pedantic_files() -> list[Path]:
    """The ``bnnc check --pedantic`` cases (valid specs with one warning each)."""
    return sorted(PEDANTIC.glob("*.bnn"))


def is_pedantic(case: Path) -> bool:
    """Whether ``case`` is checked with ``--pedantic`` (and must exit 0)."""
    return case.parent == PEDANTIC


def run_check(case: Path) -> subprocess.CompletedProcess[str]:
    """``bnnc check`` on ``case``, from the repository root, as the test runs it."""
    env = {k: v for k, v in os.environ.items() if k != "BNNC_DEBUG"}
    env["PYTHONUTF8"] = "1"
    options = ["-q", "--pedantic"] if is_pedantic(case) else []
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bnnc",
            "check",
            *options,
            case.relative_to(ROOT).as_posix(),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Regenerate (or with ``--check`` only compare) the expected files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="only cases whose name starts so")
    parser.add_argument("--check", action="store_true", help="write nothing")
    parser.add_argument(
        "--include-pending", action="store_true", help="also rewrite PENDING cases"
    )
    args = parser.parse_args(argv)
    cases = []
    for case in case_files() + pedantic_files():
        if args.prefixes and not any(case.name.startswith(p) for p in args.prefixes):
            continue
        if case.stem in PENDING and not (args.prefixes or args.include_pending):
            print(f"skipped (pending compiler fix): {case.stem}")
            continue
        cases.append(case)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(run_check, cases))
    stale = 0
    for case, result in zip(cases, results, strict=True):
        expected = case.with_suffix(".expected")
        problems = []
        if result.returncode != (0 if is_pedantic(case) else 1):
            problems.append(f"exit status {result.returncode}")
        if result.stdout:
            problems.append("output on stdout")
        if "Traceback" in result.stderr or "internal error" in result.stderr:
            problems.append("CRASH")
        old = expected.read_text(encoding="utf-8") if expected.exists() else None
        if old != result.stderr:
            stale += 1
            print(f"{'stale' if args.check else 'wrote'}: {expected.relative_to(ROOT)}")
            if not args.check:
                expected.write_text(result.stderr, encoding="utf-8")
        if problems:
            print(f"  ! {case.name}: {', '.join(problems)}")
    done = "stale" if args.check else "rewritten"
    print(f"{stale} of {len(cases)} expected file(s) {done}")
    if stale and not args.check:
        print("Review the diff: git diff tests/diagnostics")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
