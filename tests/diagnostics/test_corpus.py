"""The golden diagnostics corpus: what ``bnnc check`` tells a user about a mistake.

Each ``cases/NNN_short_name.bnn`` is a small invalid spec with one realistic
mistake (the 9xx cases have several independent ones, to show that one run
reports them all). Its sibling ``NNN_short_name.expected`` holds the exact stderr
of ``bnnc check tests/diagnostics/cases/NNN_short_name.bnn`` run from the
repository root. The hundreds digit groups cases by area like the codes do
(0 files and imports, 1 syntax and front end, 2 names, 3 types and values,
4 shapes, 9 several errors); it is not the code itself. ``cases/imports/`` holds
files the cases import; they are not cases. ``pedantic/NNN_short_name.bnn``
are valid specs with one ``bnnc check --pedantic`` warning each (BNN6xx), their
``.expected`` the stderr of ``bnnc check -q --pedantic``.

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
PEDANTIC_FILES: list[Path] = regenerate.pedantic_files()

# Codes no `bnnc check` of a spec file can produce, with the reason.
NOT_FROM_SPECS: dict[str, str] = {
    "BNN501": "CLI output layer: `bnnc compile -o` refusing to overwrite a file",
    "BNN502": "CLI output layer: `bnnc compile -o` cannot write its output",
    "BNN503": "CLI only: `bnnc fmt` failed on a file that parses (a bnnc bug)",
}
PEDANTIC_CODES = {code for code in CODES if code.startswith("BNN6")}

_CODE = re.compile(r"^\S.*?: (?:error|warning)\[(BNN\d{3})\]: ", re.MULTILINE)


@pytest.fixture(scope="session")
def results() -> dict[Path, subprocess.CompletedProcess[str]]:
    """``bnnc check`` of every case, run in parallel once per session."""
    cases = CASE_FILES + PEDANTIC_FILES
    workers = min(len(cases), os.cpu_count() or 2) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(regenerate.run_check, cases)
        return dict(zip(cases, done, strict=True))


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda path: path.stem)
def test_case(
    case: Path, results: dict[Path, subprocess.CompletedProcess[str]]
) -> None:
    result = results[case]
    expected = case.with_suffix(".expected").read_text(encoding="utf-8")
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr, result.stderr
    pending = regenerate.PENDING.get(case.stem)
    note = f" (known compiler problem: {pending})" if pending else ""
    assert result.stderr == expected, f"stderr differs from {case.stem}.expected{note}"
    assert result.stdout == ""
    assert result.returncode == 1


@pytest.mark.parametrize("case", PEDANTIC_FILES, ids=lambda path: path.stem)
def test_pedantic_case(
    case: Path, results: dict[Path, subprocess.CompletedProcess[str]]
) -> None:
    result = results[case]
    expected = case.with_suffix(".expected").read_text(encoding="utf-8")
    assert result.stderr == expected, f"stderr differs from {case.stem}.expected"
    assert result.stdout == ""
    assert result.returncode == 0  # warnings do not fail a check
    # One warning, of the code the file is named after.
    assert _CODE.findall(expected) == [f"BNN{case.name[:3]}"]
    assert "warning[" in expected and "error[" not in expected


def test_corpus_size() -> None:
    assert len(CASE_FILES) >= 60
    for case in CASE_FILES:
        assert re.fullmatch(r"\d{3}_[a-z0-9_]+\.bnn", case.name), case.name
        assert case.with_suffix(".expected").is_file(), f"{case.name} has no .expected"
    numbers = [case.name[:3] for case in CASE_FILES]
    assert len(numbers) == len(set(numbers)), "case numbers must be unique"
    stray = {p.stem for p in HERE.joinpath("cases").glob("*.expected")}
    assert stray == {case.stem for case in CASE_FILES}, "an .expected without a case"
    assert {case.name[:3] for case in PEDANTIC_FILES} == {
        code[3:] for code in PEDANTIC_CODES
    }
    stray = {p.stem for p in regenerate.PEDANTIC.glob("*.expected")}
    assert stray == {case.stem for case in PEDANTIC_FILES}


def test_pending_entries_exist() -> None:
    assert set(regenerate.PENDING) <= {case.stem for case in CASE_FILES}


def test_every_code_is_covered() -> None:
    assert set(NOT_FROM_SPECS) <= set(CODES)
    seen: set[str] = set()
    for case in CASE_FILES:
        seen |= set(_CODE.findall(case.with_suffix(".expected").read_text("utf-8")))
    pedantic: set[str] = set()
    for case in PEDANTIC_FILES:
        found = _CODE.findall(case.with_suffix(".expected").read_text("utf-8"))
        pedantic |= set(found)
    missing = sorted(set(CODES) - set(NOT_FROM_SPECS) - seen - pedantic)
    assert not missing, f"no case produces {missing}"
    # Keep the exclusions honest: a code a case produces is not excluded.
    assert not seen & set(NOT_FROM_SPECS), sorted(seen & set(NOT_FROM_SPECS))
    # Pedantic warnings only come with --pedantic.
    assert not seen & PEDANTIC_CODES, sorted(seen & PEDANTIC_CODES)
    assert pedantic == PEDANTIC_CODES


def test_errors_doc_documents_every_code() -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    headings = re.findall(r"^## (BNN\d{3})\b", text, re.MULTILINE)
    assert len(headings) == len(set(headings)), "a code is documented twice"
    assert set(headings) == set(CODES)
    for code, title in CODES.items():
        assert re.search(rf"^## {code}: {re.escape(title)}$", text, re.MULTILINE), (
            f"heading of {code} should read `## {code}: {title}`"
        )


def _doc_sections() -> dict[str, str]:
    """Each ``## BNNnnn`` section of docs/errors.md, by code."""
    text = ERRORS_DOC.read_text(encoding="utf-8")
    parts = re.split(r"^(?=## BNN\d{3}\b)", text, flags=re.MULTILINE)[1:]
    return {part[3:9]: part for part in parts}


@pytest.mark.parametrize("code", sorted(CODES))
def test_errors_doc_has_an_example_and_a_fix_for_every_code(code: str) -> None:
    section = _doc_sections()[code]
    outputs = re.findall(r"```text\n(.*?)\n```", section, re.DOTALL)
    severity = "warning" if code in PEDANTIC_CODES else "error"
    assert any(f"{severity}[{code}]: " in output for output in outputs), (
        f"docs/errors.md shows no output with {severity}[{code}]"
    )
    if code not in NOT_FROM_SPECS:  # the example's spec is shown, or linked
        shown = re.search(r"^```\n.*?^```$", section, re.DOTALL | re.MULTILINE)
        linked = re.search(r"\]\(\.\./tests/diagnostics/\S+\.bnn\)", section)
        assert shown or linked, f"{code}: example spec neither shown nor linked"
    assert re.search(r"^\*\*Fix:\*\* \S", section, re.MULTILINE), f"{code} has no fix"


def test_errors_doc_examples_match_the_corpus() -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    corpus = "\n".join(
        case.with_suffix(".expected").read_text("utf-8")
        for case in CASE_FILES + PEDANTIC_FILES
    )
    block = re.compile(r"```text\n(tests/diagnostics/.*?)\n```", re.DOTALL)
    examples = block.findall(text)
    assert len(examples) >= len(CODES) - len(NOT_FROM_SPECS)
    for example in examples:
        assert example in corpus, f"docs/errors.md example not in corpus:\n{example}"


def test_errors_doc_links_to_existing_cases() -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    links = re.findall(r"\]\(\.\./(tests/diagnostics/[^)]+)\)", text)
    assert links
    for link in links:
        assert (ROOT / link).exists(), f"docs/errors.md links to missing {link}"
