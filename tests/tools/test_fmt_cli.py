"""``bnnc fmt`` on the command line: exit status and diagnostics, never exit 3.

A formatter failure (:class:`~bnnc.dsl.format.FormatterError`, or any other
exception while formatting) is reported as a located BNN503 with exit status 1
and leaves the file untouched; unreadable files are BNN001/BNN002/BNN005 and
files with errors are reported as by ``bnnc check``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bnnc.compiler import api
from bnnc.compiler.cli import EXIT_INPUT, EXIT_OK, main
from bnnc.dsl import format as fmt
from bnnc.dsl import source

UNFORMATTED = """\
network Net{
  input x:Tensor[B,4]
  layers{fc=Linear(4,1)}  # the read-out
  forward{return fc(x)}}
"""


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BNNC_DEBUG", raising=False)


def _spec(tmp_path: Path, text: str = UNFORMATTED, name: str = "net.bnn") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["fmt", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_fmt_formats_and_check_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path)
    status, out, err = _run(capsys, "--check", str(path))
    assert (status, out, err) == (EXIT_INPUT, f"would reformat {path}\n", "")
    assert path.read_text(encoding="utf-8") == UNFORMATTED
    status, out, err = _run(capsys, str(path))
    assert (status, out, err) == (EXIT_OK, "", f"reformatted {path}\n")
    assert path.read_text(encoding="utf-8") == fmt.format_source(UNFORMATTED)
    assert _run(capsys, "--check", str(path)) == (EXIT_OK, "", "")


@pytest.mark.parametrize("check", [False, True])
def test_formatter_error_is_a_located_bnn503_with_exit_1(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    check: bool,
) -> None:
    path = _spec(tmp_path)
    comment = UNFORMATTED.index("# the read-out")

    def fail(self: object) -> str:
        raise fmt.FormatterError("code placed after a comment", comment)

    monkeypatch.setattr(fmt._Formatter, "program", fail)
    status, out, err = _run(capsys, *(["--check"] if check else []), str(path))
    assert status == EXIT_INPUT
    assert out == ""
    assert err.splitlines() == [
        f"{path}:3:27: error[BNN503]: bnnc fmt cannot format this file: code "
        "placed after a comment",
        "  |",
        "3 |   layers{fc=Linear(4,1)}  # the read-out",
        "  |                           ^",
        "  = hint: the file is left unchanged",
        "  = hint: this is a bug in bnnc fmt, not in the file; please report it "
        "(BNNC_DEBUG=1 shows the details)",
        "bnnc: 1 error",
    ]
    assert "internal error" not in err and "Traceback" not in err
    assert path.read_text(encoding="utf-8") == UNFORMATTED


def test_a_meaning_changing_result_is_bnn503_and_the_file_is_kept(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The formatter's own check: the output must parse to the same IR.
    path = _spec(tmp_path)
    wrong = UNFORMATTED.replace("Linear(4,1)", "Linear(4,2)")
    monkeypatch.setattr(fmt._Formatter, "program", lambda self: wrong)
    status, _, err = _run(capsys, str(path))
    assert status == EXIT_INPUT
    assert err.splitlines()[0] == (
        f"{path}: error[BNN503]: bnnc fmt cannot format this file: formatting "
        "would change the program's meaning"
    )
    assert path.read_text(encoding="utf-8") == UNFORMATTED


def test_formatted_text_that_does_not_parse_is_bnn503_on_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _spec(tmp_path)
    monkeypatch.setattr(fmt._Formatter, "program", lambda self: "network {\n")
    status, _, err = _run(capsys, str(path))
    assert status == EXIT_INPUT
    first, *rest = err.splitlines()
    assert first == (
        f"{path}: error[BNN503]: bnnc fmt cannot format this file: the formatted "
        "text does not parse:"
    )
    assert all(line.startswith(("  = hint: ", "bnnc: ")) for line in rest)
    assert path.read_text(encoding="utf-8") == UNFORMATTED


def test_any_other_formatter_failure_is_bnn503_not_an_internal_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _spec(tmp_path)

    def fail(self: object) -> str:
        raise IndexError("list index out of range")

    monkeypatch.setattr(fmt._Formatter, "program", fail)
    status, _, err = _run(capsys, str(path), str(path))
    assert status == EXIT_INPUT
    headline = (
        f"{path}: error[BNN503]: bnnc fmt cannot format this file: internal error "
        "(IndexError: list index out of range)"
    )
    assert err.splitlines().count(headline) == 2  # every file is still tried
    assert path.read_text(encoding="utf-8") == UNFORMATTED
    monkeypatch.setenv("BNNC_DEBUG", "1")  # the traceback, for a bug report
    with pytest.raises(IndexError):
        main(["fmt", str(path)])


def test_stack_exhaustion_while_formatting_is_bnn005(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _spec(tmp_path)

    def fail(self: object) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(fmt._Formatter, "program", fail)
    status, _, err = _run(capsys, str(path))
    assert status == EXIT_INPUT
    assert err.splitlines()[0] == (
        f"{path}: error[BNN005]: input is nested too deeply to format"
    )


def test_unreadable_or_invalid_files_are_located_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "latin1.bnn"
    latin1.write_bytes(b"network N {\n    # caf\xe9\n}\n")
    status, _, err = _run(capsys, str(latin1))
    assert status == EXIT_INPUT
    assert err.splitlines()[:4] == [
        f"{latin1}:2:10: error[BNN002]: `{latin1}` is not valid UTF-8 (byte 0xe9 "
        "at offset 21)",
        "  |",
        "2 |     # caf\ufffd",
        "  |          ^",
    ]
    missing = tmp_path / "missing.bnn"
    status, _, err = _run(capsys, str(missing))
    assert status == EXIT_INPUT
    assert err.startswith(f"{missing}: error[BNN001]: cannot read `{missing}`")
    big = tmp_path / "big.bnn"
    big.write_bytes(b"#" * (source.MAX_BYTES + 1))
    status, _, err = _run(capsys, str(big))
    assert status == EXIT_INPUT
    assert f"{big}: error[BNN005]: " in err
    broken = _spec(tmp_path, "network N {\n    input x Tensor[B, 4]\n}\n", "broken.bnn")
    status, _, err = _run(capsys, str(broken))
    assert status == EXIT_INPUT
    assert f"{broken}:2:13: error[BNN101]: " in err
    assert broken.read_text(encoding="utf-8").startswith("network N {\n    input x T")


def test_a_failed_write_is_bnn502_and_the_file_is_kept(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _spec(tmp_path)

    def fail(target: object, text: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(api, "write_atomically", fail)
    status, _, err = _run(capsys, str(path))
    assert status == EXIT_INPUT
    assert err.splitlines()[:2] == [
        f"{path}: error[BNN502]: cannot write the formatted file: Permission denied",
        "  = hint: the file is left unchanged",
    ]
    assert path.read_text(encoding="utf-8") == UNFORMATTED


def test_file_names_are_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, name="evil\x1b[31m.bnn")
    status, out, err = _run(capsys, "--check", str(path))
    assert status == EXIT_INPUT
    assert out == f"would reformat {tmp_path}/evil\\x1b[31m.bnn\n"
    assert "\x1b" not in out + err
    status, out, err = _run(capsys, str(path))
    assert err == f"reformatted {tmp_path}/evil\\x1b[31m.bnn\n"
    assert main(["check", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out == f"{tmp_path}/evil\\x1b[31m.bnn: ok (Net)\n"


def test_formatter_errors_carry_the_offset_they_failed_at() -> None:
    comment = fmt._Comment(
        start=7, line=1, column=7, text="# c", whole_line=False, code="a"
    )
    with pytest.raises(fmt.FormatterError) as caught:
        fmt._join([fmt._Line("a", comment)], " ", [fmt._Line("b")])
    assert caught.value.offset == 7
    assert fmt.FormatterError("no place").offset is None
