"""Loading files with imports: relative paths, sharing, cycles, missing things."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.diagnostics import CompileError


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def load_error(path: str) -> CompileError:
    with pytest.raises(CompileError) as caught:
        dsl.load(path)
    return caught.value


def test_diamond_import_loads_the_shared_file_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        {
            "top.bnn": 'from "lib/b.bnn" import B\nfrom "lib/c.bnn" import C\n'
            "network Top { layers { b = B() c = C() } }\n",
            "lib/b.bnn": 'from "d.bnn" import D\nnetwork B { layers { d = D() } }\n',
            "lib/c.bnn": 'from "./d.bnn" import D\nnetwork C {}\n',
            "lib/d.bnn": "network D {}\n",
        },
    )
    program = dsl.load("top.bnn")
    assert program.source == "top.bnn"
    b, c = (imp.program for imp in program.imports)
    assert b.source == "lib/b.bnn" and c.source == "lib/c.bnn"
    d_from_b, d_from_c = b.imports[0].program, c.imports[0].program
    assert d_from_b is d_from_c  # loaded once, shared
    assert d_from_b.source == "lib/d.bnn"
    assert d_from_b.networks[0].name == "D"
    assert ir.from_json(ir.to_json(program)) == program


def test_parse_records_imports_without_loading():
    program = dsl.parse('from "missing.bnn" import A, B\n')
    (imp,) = program.imports
    assert (imp.path, imp.names, imp.program) == ("missing.bnn", ["A", "B"], None)


def test_import_cycle_is_reported_at_the_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        {
            "a.bnn": 'from "b.bnn" import B\nnetwork A {}\n',
            "b.bnn": '# b\nfrom "a.bnn" import A\nnetwork B {}\n',
        },
    )
    error = load_error("a.bnn")
    assert error.render() == (
        "b.bnn:2:1: error[BNN004]: import cycle: a.bnn -> b.bnn -> a.bnn\n"
        "  |\n"
        '2 | from "a.bnn" import A\n'
        "  | ^^^^^^^^^^^^^^^^^^^^^"
    )


def test_self_import_is_a_cycle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"a.bnn": 'from "a.bnn" import Z\nnetwork Z2 {}\n'})
    (diagnostic,) = load_error("a.bnn").diagnostics
    assert diagnostic.code == "BNN004"
    assert diagnostic.message == "import cycle: a.bnn -> a.bnn"


def test_missing_file_and_missing_name_are_all_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        {
            "main.bnn": 'from "nope.bnn" import X\n'
            'from "blocks.bnn" import ResBlok, Head\n'
            "network M {}\n",
            "blocks.bnn": "network ResBlock {}\nnetwork Head {}\n",
        },
    )
    assert load_error("main.bnn").render() == (
        "main.bnn:1:1: error[BNN003]: imported file `nope.bnn` not found "
        "(looked for `nope.bnn`)\n"
        "  |\n"
        '1 | from "nope.bnn" import X\n'
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "main.bnn:2:26: error[BNN211]: `blocks.bnn` defines no network `ResBlok`\n"
        "  |\n"
        '2 | from "blocks.bnn" import ResBlok, Head\n'
        "  |                          ^^^^^^^\n"
        "  = hint: did you mean `ResBlock`?"
    )


def test_errors_in_an_imported_file_render_with_its_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        {
            "main.bnn": 'from "sub/x.bnn" import X\nnetwork M {}\n',
            "sub/x.bnn": "network X {\n  forward { return ) }\n}\n",
        },
    )
    error = load_error("main.bnn")
    assert error.render() == (
        "sub/x.bnn:2:20: error[BNN101]: unexpected `)`, expected an expression\n"
        "  |\n"
        "2 |   forward { return ) }\n"
        "  |                    ^"
    )
    assert set(error.sources) == {"main.bnn", "sub/x.bnn"}


def test_unreadable_and_non_utf8_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error = load_error("absent.bnn")
    (diagnostic,) = error.diagnostics
    assert diagnostic.code == "BNN001"
    assert error.render().startswith("absent.bnn: error[BNN001]: cannot read")
    (tmp_path / "dir.bnn").mkdir()
    assert [d.code for d in load_error("dir.bnn").diagnostics] == ["BNN001"]
    (tmp_path / "latin1.bnn").write_bytes(b"network A {}\n# caf\xe9\n")
    assert load_error("latin1.bnn").render() == (
        "latin1.bnn:2:6: error[BNN002]: `latin1.bnn` is not valid UTF-8 "
        "(byte 0xe9 at offset 18)\n"
        "  |\n"
        "2 | # caf\N{REPLACEMENT CHARACTER}\n"
        "  |      ^"
    )
    with pytest.raises(CompileError) as caught:
        dsl.parse_file("latin1.bnn")
    assert caught.value.diagnostics[0].code == "BNN002"


def test_oversize_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.bnn").write_text("#" * (1 << 20) + "\n")
    (diagnostic,) = load_error("big.bnn").diagnostics
    assert diagnostic.code == "BNN005"
    with pytest.raises(CompileError) as caught:
        dsl.parse("#" * (1 << 20) + "\n")
    assert caught.value.diagnostics[0].code == "BNN005"


def test_imported_name_clashing_with_local_network(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        {
            "a.bnn": 'from "b.bnn" import B, B\nnetwork B {}\n',
            "b.bnn": "network B {}\n",
        },
    )
    messages = [d.message for d in load_error("a.bnn").diagnostics]
    assert messages == [
        "`B` is imported twice (imported on line 1)",
        "network `B` is already defined (imported on line 1)",
    ]


def test_load_accepts_path_objects_and_resolves_relative_to_the_importer(tmp_path):
    write(
        tmp_path,
        {
            "models/main.bnn": 'from "../shared/blocks.bnn" import Blk\nnetwork M {}\n',
            "shared/blocks.bnn": "network Blk {}\n",
        },
    )
    program = dsl.load(tmp_path / "models" / "main.bnn")
    imported = program.imports[0].program
    assert imported.source == str(tmp_path / "shared" / "blocks.bnn")
    assert imported.networks[0].name == "Blk"
