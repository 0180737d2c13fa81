"""How diagnostics are located and rendered for the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.diagnostics import CompileError

SMALL = """\
network Net {
    input x: Tensor[B, 4]
    layers {
        fc = Linear(4, 1, prior=Gaussian(std=1.0))
    }
    forward {
        return fc(x)
    }
}
"""


def test_ir_file_without_spans_is_reported_at_the_file(tmp_path: Path) -> None:
    program = ir.without_locations(dsl.parse(SMALL, "small.bnn"))
    data = json.loads(ir.to_json(program))
    data["networks"][0]["layers"][0]["prior"]["params"] = {"std": -1.0, "sigma": 1.0}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CompileError) as caught:
        bnnc.check(path)
    assert caught.value.render().splitlines() == [
        f"{path}: error[BNN105]: `std` must be positive",
        f"{path}: error[BNN105]: unknown prior setting 'sigma'",
    ]


# --- hostile text never reaches the terminal raw --------------------------------------

ESC, BEL, CSI = "\x1b", "\x07", "\x9b"  # CSI: the one-character C1 escape


def _raw_controls(text: str) -> set[str]:
    """Control characters (newline aside) and bidi overrides left in ``text``."""
    return {
        c
        for c in text
        if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e")
    }


def _rendered(tmp_path: Path, text: str, code: str) -> str:
    """The rendered diagnostic ``code`` of checking ``text`` from a file."""
    path = tmp_path / "t.bnn"
    path.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(CompileError) as caught:
        bnnc.check(path)
    assert _raw_controls(caught.value.render()) == set()
    (diagnostic,) = [d for d in caught.value.diagnostics if d.code == code]
    return diagnostic.render(text)


def _under_caret(rendered: str) -> str:
    """The printed source text above the caret line, where the carets are."""
    lines = rendered.splitlines()
    caret = next(line for line in lines if "^" in line)
    above = lines[lines.index(caret) - 1]
    column = caret.index("^")
    return above[column : column + len(caret) - column]


def test_escape_sequences_in_a_source_line_are_escaped_and_the_caret_aligned(
    tmp_path: Path,
) -> None:
    # A string holding ESC [ 3 1 m and BEL, a comment with an OSC sequence and
    # a C1 CSI, then an unknown argument after it.
    text = SMALL.replace(
        "fc = Linear(4, 1, prior=Gaussian(std=1.0))",
        f'fc = Linear(4, 1, zz="{ESC}[31m{BEL}")  # {ESC}]0;title{BEL} {CSI}2J',
    )
    rendered = _rendered(tmp_path, text, "BNN204")
    assert _raw_controls(rendered) == set()
    assert rendered.splitlines()[2] == (
        '4 |         fc = Linear(4, 1, zz="\\x1b[31m\\x07")  # \\x1b]0;title\\x07 '
        "\\x9b2J"
    )
    assert _under_caret(rendered) == 'zz="\\x1b[31m\\x07"'


def test_a_control_character_as_the_error_is_escaped_under_the_caret(
    tmp_path: Path,
) -> None:
    text = f"network N{ESC}[31m {{\n    input x: Tensor[B, 4]\n}}\n"
    rendered = _rendered(tmp_path, text, "BNN102")
    assert rendered.splitlines() == [
        f"{tmp_path / 't.bnn'}:1:10: error[BNN102]: unexpected character U+001B",
        "  |",
        "1 | network N\\x1b[31m {",
        "  |          ^^^^",
    ]


def test_the_caret_stays_under_a_name_after_escapes_and_tabs(tmp_path: Path) -> None:
    text = SMALL.replace(
        "        return fc(x)",
        f'\treturn fc(concat(x, "{BEL}\t{ESC}", yy))',
    )
    rendered = _rendered(tmp_path, text, "BNN207")  # `yy`: one positional too many
    # Tabs are printed as one space, in a string too.
    assert rendered.splitlines()[2] == '7 |  return fc(concat(x, "\\x07 \\x1b", yy))'
    assert _under_caret(rendered) == "yy"


def test_messages_and_hints_quoting_user_text_are_escaped(tmp_path: Path) -> None:
    spec = tmp_path / "main.bnn"
    spec.write_text(
        f'from "a{ESC}[2Jb.bnn" import X\n'
        "network N {\n    input x: Tensor[B, 4]\n"
        "    layers { f = Linear(4, 1) }\n    forward { return f(x) }\n}\n",
        encoding="utf-8",
    )
    with pytest.raises(CompileError) as caught:
        bnnc.check(spec)
    rendered = caught.value.render()
    assert _raw_controls(rendered) == set()
    assert "imported file `a\\x1b[2Jb.bnn` not found" in rendered
    assert '1 | from "a\\x1b[2Jb.bnn" import X' in rendered
    caret = rendered.splitlines()[3]
    assert caret == "  | " + "^" * len('from "a\\x1b[2Jb.bnn" import X')


def test_cli_check_output_has_no_raw_escape_or_bell(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    spec = tmp_path / f"evil{ESC}[31m.bnn"
    spec.write_text(
        f"# {ESC}[2J{BEL} a comment\n"
        f"network N {{  # {ESC}]0;pwned{BEL}\n"
        "    input x: Tensor[B, 4]\n"
        f'    layers {{ f = Linear(4, 1, zz="{ESC}[5m{BEL}") }}\n'
        f"    forward {{ return f(x) + g{BEL}(x) }}\n"
        "}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "BNNC_DEBUG"}
    env["PYTHONUTF8"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "bnnc", "check", str(spec)],
        capture_output=True,
        encoding="utf-8",
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    assert ESC not in output and BEL not in output
    assert _raw_controls(output) == set()
    assert "evil\\x1b[31m.bnn:5:" in result.stderr
    lines = result.stderr.splitlines()
    source = "5 |     forward { return f(x) + g\\x07(x) }"
    assert source in lines
    caret = lines[lines.index(source) + 1]
    assert caret == "  | " + " " * source[4:].index("\\x07") + "^^^^"


def test_printable_keeps_text_that_is_already_printable() -> None:
    from bnnc.compiler.diagnostics import printable

    assert printable("café σ → `x` \\x1b") == "café σ → `x` \\x1b"
    assert printable(f"a{ESC}b{BEL}\t\r\n\u202e\x7f{CSI}") == (
        "a\\x1bb\\x07\\t\\r\\n\\u202e\\x7f\\x9b"
    )
