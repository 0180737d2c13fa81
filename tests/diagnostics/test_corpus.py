"""The golden diagnostics corpus: what ``bnnc check`` tells a user about a mistake.

Each ``cases/NNN_short_name.bnn`` is a small invalid spec with one realistic
mistake (the 9xx cases have several independent ones, to show that one run
reports them all). Its sibling ``NNN_short_name.expected`` holds the exact stderr
of ``bnnc check tests/diagnostics/cases/NNN_short_name.bnn`` run from the
repository root. The hundreds digit groups cases by area like the codes do
(0 files and imports, 1 syntax and front end, 2 names, 3 types and values,
4 shapes, 9 several errors); it is not the code itself. ``cases/imports/`` holds
files the cases import; they are not cases.

Some ``.expected`` files were written by hand to show the output bnnc should
give; ``regenerate.PENDING`` lists them with the compiler problem each shows.
They fail until the compiler is fixed.

Regenerate with ``python tests/diagnostics/regenerate.py`` and review the diff.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bnnc.compiler.diagnostics import CODES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ERRORS_DOC = ROOT / "docs" / "errors.md"


def _load_regenerate():  # the shared runner, loaded by path (no package needed)
    spec = importlib.util.spec_from_file_location(
        "bnnc_diagnostics_regenerate", HERE / "regenerate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = _load_regenerate()
CASE_FILES: list[Path] = regenerate.case_files()

# Codes no `bnnc check` of a spec file can produce, with the reason.
NOT_FROM_SPECS: dict[str, str] = {
    "BNN501": "CLI output layer: `bnnc compile -o` refusing to overwrite a file",
    "BNN502": "CLI output layer: `bnnc compile -o` cannot write its output",
    "BNN601": "pedantic warning: only `bnnc check --pedantic` emits it",
    "BNN602": "pedantic warning: only `bnnc check --pedantic` emits it",
    "BNN603": "pedantic warning: only `bnnc check --pedantic` emits it",
    "BNN604": "pedantic warning: only `bnnc check --pedantic` emits it",
}

_CODE = re.compile(r"^\S.*?: (?:error|warning)\[(BNN\d{3})\]: ", re.MULTILINE)


@pytest.fixture(scope="session")
def results() -> dict[str, subprocess.CompletedProcess[str]]:
    """``bnnc check`` of every case, run in parallel once per session."""
    workers = min(len(CASE_FILES), os.cpu_count() or 2) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(regenerate.run_check, CASE_FILES)
        return {case.stem: run for case, run in zip(CASE_FILES, done, strict=True)}


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda path: path.stem)
def test_case(case: Path, results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = results[case.stem]
    expected = case.with_suffix(".expected").read_text(encoding="utf-8")
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr, result.stderr
    pending = regenerate.PENDING.get(case.stem)
    note = f" (known compiler problem: {pending})" if pending else ""
    assert result.stderr == expected, f"stderr differs from {case.stem}.expected{note}"
    assert result.stdout == ""
    assert result.returncode == 1


def test_corpus_size() -> None:
    assert len(CASE_FILES) >= 60
    for case in CASE_FILES:
        assert re.fullmatch(r"\d{3}_[a-z0-9_]+\.bnn", case.name), case.name
        assert case.with_suffix(".expected").is_file(), f"{case.name} has no .expected"
    numbers = [case.name[:3] for case in CASE_FILES]
    assert len(numbers) == len(set(numbers)), "case numbers must be unique"
    stray = {p.stem for p in HERE.joinpath("cases").glob("*.expected")}
    assert stray == {case.stem for case in CASE_FILES}, "an .expected without a case"


def test_pending_entries_exist() -> None:
    assert set(regenerate.PENDING) <= {case.stem for case in CASE_FILES}


def test_every_code_is_covered() -> None:
    assert set(NOT_FROM_SPECS) <= set(CODES)
    seen: set[str] = set()
    for case in CASE_FILES:
        seen |= set(_CODE.findall(case.with_suffix(".expected").read_text("utf-8")))
    missing = sorted(set(CODES) - set(NOT_FROM_SPECS) - seen)
    assert not missing, f"no case produces {missing}"
    # Keep the exclusions honest: a code a case produces is not excluded.
    assert not seen & set(NOT_FROM_SPECS), sorted(seen & set(NOT_FROM_SPECS))


def test_errors_doc_documents_every_code() -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    headings = re.findall(r"^## (BNN\d{3})\b", text, re.MULTILINE)
    assert len(headings) == len(set(headings)), "a code is documented twice"
    assert set(headings) == set(CODES)
    for code, title in CODES.items():
        assert re.search(rf"^## {code}: {re.escape(title)}$", text, re.MULTILINE), (
            f"heading of {code} should read `## {code}: {title}`"
        )


def test_errors_doc_examples_match_the_corpus() -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    corpus = "\n".join(
        case.with_suffix(".expected").read_text("utf-8") for case in CASE_FILES
    )
    block = re.compile(r"```text\n(tests/diagnostics/cases/.*?)\n```", re.DOTALL)
    examples = block.findall(text)
    assert len(examples) >= len(CODES) - len(NOT_FROM_SPECS)
    for example in examples:
        assert example in corpus, f"docs/errors.md example not in corpus:\n{example}"
