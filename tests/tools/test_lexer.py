"""``bnnc.dsl.lexer.BnnLexer``: the Pygments lexer and its plugin entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygments")

from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
    _TokenType,
)

from bnnc.compiler.registry import functions, heads, layers
from bnnc.dsl import keywords
from bnnc.dsl.lexer import BnnLexer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))
LAYER = Name.Builtin.Layer


def lex(text: str) -> list[tuple[_TokenType, str]]:
    return [(kind, value) for kind, value in BnnLexer().get_tokens(text)]


def significant(text: str) -> list[tuple[_TokenType, str]]:
    return [(k, v) for k, v in lex(text) if k is not Whitespace]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_lex_without_errors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    tokens = lex(text)
    assert [t for t in tokens if t[0] in Error] == []
    assert "".join(v for _, v in tokens) == text
    kinds = {k for k, _ in tokens}
    assert {Comment.Single, Keyword, Keyword.Declaration, Name.Class} <= kinds
    assert kinds & {Number.Integer, Number.Float}


def test_digits_tokens() -> None:
    tokens = significant((ROOT / "examples" / "digits.bnn").read_text())
    pairs = set(tokens)
    for expected in [
        (
            Comment.Single,
            "# digits.bnn: a Bayesian CNN for 8x8 digit images "
            "(scikit-learn's digits).",
        ),
        (Keyword, "prior"),
        (Keyword, "posterior"),
        (Keyword, "default"),
        (LAYER, "Gaussian"),
        (Name.Attribute, "mu"),
        (Name.Attribute, "rho_init"),
        (Number.Float, "0.1"),
        (Keyword.Declaration, "network"),
        (Name.Class, "DigitsCNN"),
        (Keyword.Type, "int"),
        (Keyword.Type, "Tensor"),
        (Keyword, "input"),
        (Keyword, "layers"),
        (Keyword, "fixed"),
        (LAYER, "Conv2d"),
        (LAYER, "Linear"),
        (Keyword.Constant, "auto"),
        (Name.Attribute, "kernel_size"),
        (Keyword, "forward"),
        (Name.Builtin, "max_pool2d"),
        (Name.Builtin, "relu"),
        (Name.Builtin, "flatten"),
        (Name.Function, "conv1"),
        (Keyword, "return"),
        (Number.Integer, "16"),
        (Operator, "*"),
        (Operator, "="),
        (Punctuation, "{"),
    ]:
        assert expected in pairs, expected
    # `prior=` inside a layer's arguments is the reserved word, not a keyword arg.
    index = tokens.index((Keyword, "prior"), 10)
    assert tokens[index + 1] == (Operator, "=")


SNIPPET = """\
from "blocks.bnn" import ResBlock
network N(p: float = 1e-3, q: bool = true) {
    input ids: Tensor[B, T, dtype=int64]
    layers { e = Embedding(1_000, .5 // 2, padding_idx=none) }
    forward { z = e(ids)  return (m=Normal(z).mean, s=false) }
}
"""


def test_every_token_class() -> None:
    tokens = significant(SNIPPET)
    assert tokens[:4] == [
        (Keyword.Namespace, "from"),
        (String.Double, '"blocks.bnn"'),
        (Keyword.Namespace, "import"),
        (Name, "ResBlock"),
    ]
    pairs = set(tokens)
    for expected in [
        (Number.Float, "1e-3"),
        (Number.Float, ".5"),
        (Number.Integer, "1_000"),
        (Operator, "//"),
        (Keyword.Constant, "true"),
        (Keyword.Constant, "false"),
        (Keyword.Constant, "none"),
        (Name.Attribute, "dtype"),
        (Keyword.Type, "int64"),
        (Keyword.Type, "float"),
        (Keyword.Type, "bool"),
        (Name.Attribute, "padding_idx"),
        (Name.Attribute, "m"),
        (Name.Attribute, "mean"),
        (LAYER, "Normal"),
        (LAYER, "Embedding"),
        (Name.Function, "e"),
        (Name, "ids"),
    ]:
        assert expected in pairs, expected
    assert (Operator, ".") in pairs
    assert not [t for t in tokens if t[0] in Error]


def test_every_reserved_word_and_op_is_highlighted() -> None:
    for word in sorted(keywords()):
        ((kind, value),) = significant(word)
        assert value == word and kind in Keyword, (word, kind)
    for op in layers() + heads():
        assert significant(op.name) == [(LAYER, op.name)]
    for op in functions():
        assert significant(op.name) == [(Name.Builtin, op.name)]
    # Longer names that start with a reserved word or an op are plain names.
    for name in ("networks", "relu_2", "Linear2", "input_ids", "default_std"):
        assert significant(name) == [(Name, name)]


def test_errors_are_marked() -> None:
    assert (Error, '"open') in lex('x = "open\n')
    assert (Error, "$") in lex("x = $\n")


def _neutral_env() -> dict[str, str]:
    # Run from a directory without a stale bnnc.egg-info on sys.path.
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_pygments_entry_point(tmp_path: Path) -> None:
    code = (
        "import pygments.lexers as L\n"
        "a = L.get_lexer_by_name('bnn')\n"
        "b = L.get_lexer_for_filename('model.bnn')\n"
        "print(type(a).__module__, type(a).__name__, type(b).__name__)\n"
        "print(any(n == 'bnn' for n, *_ in L.get_all_lexers()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_neutral_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, (
        f"{run.stderr}\n(after changing pyproject.toml, reinstall bnnc: "
        "pip install --no-deps --no-build-isolation -e .)"
    )
    assert run.stdout.split() == ["bnnc.dsl.lexer", "BnnLexer", "BnnLexer", "True"]


def test_pygmentize(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pygments",
            "-l",
            "bnn",
            "-f",
            "html",
            str(ROOT / "examples" / "digits.bnn"),
        ],
        cwd=tmp_path,
        env=_neutral_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert '<span class="kd">network</span>' in run.stdout
    assert '<span class="nc">DigitsCNN</span>' in run.stdout
    assert '<span class="err">' not in run.stdout
