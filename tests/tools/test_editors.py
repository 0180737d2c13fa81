"""``editors/bnn.tmLanguage.json``: the TextMate grammar for editors.

Python's ``re`` stands in for Oniguruma (the grammar uses no construct where
they differ), and a small interpreter of the TextMate rules (``match``,
``begin``/``end``, ``include``, ``captures``; leftmost match wins, the end
pattern first on ties) scopes the examples, so the grammar can be checked
token by token, and against the Pygments lexer where Pygments is installed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bnnc.compiler.registry import functions, heads, layers
from bnnc.dsl import keywords

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_PATH = ROOT / "editors" / "bnn.tmLanguage.json"
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))

Rule = dict[str, Any]


@cache
def grammar() -> dict[str, Any]:
    return json.loads(GRAMMAR_PATH.read_text(encoding="utf-8"))


def _rules(node: Any) -> list[Rule]:
    """Every rule object in the grammar, nested ones included."""
    found: list[Rule] = []
    if isinstance(node, dict):
        if any(k in node for k in ("match", "begin", "include", "patterns")):
            found.append(node)
        for value in node.values():
            found.extend(_rules(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_rules(value))
    return found


def test_grammar_loads_and_regexes_compile() -> None:
    g = grammar()
    assert g["scopeName"] == "source.bnn"
    assert g["name"] == "bnn"
    assert g["fileTypes"] == ["bnn"]
    rules = _rules(g["patterns"]) + _rules(g["repository"])
    assert len(rules) > 20
    for rule in rules:
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])
        if "include" in rule:
            ref = rule["include"]
            assert ref == "$self" or ref[1:] in g["repository"], ref
        for key in ("name", "captures", "beginCaptures", "endCaptures"):
            names = (
                [rule.get("name")]
                if key == "name"
                else [c.get("name") for c in rule.get(key, {}).values()]
            )
            for name in filter(None, names):
                assert name.endswith(".bnn"), name


# --------------------------------------------------------------------------------------
# A small TextMate interpreter
# --------------------------------------------------------------------------------------


@dataclass
class Token:
    text: str
    start: int  # offset in the whole text
    scopes: tuple[str, ...]


class TextMate:
    def __init__(self, g: dict[str, Any]) -> None:
        self.g = g

    def leaves(self, patterns: list[Rule]) -> list[Rule]:
        out: list[Rule] = []
        for rule in patterns:
            if "include" in rule:
                ref = rule["include"]
                target = self.g if ref == "$self" else self.g["repository"][ref[1:]]
                if "match" in target or "begin" in target:
                    out.append(target)
                else:
                    out.extend(self.leaves(target["patterns"]))
            elif "match" in rule or "begin" in rule:
                out.append(rule)
            else:
                out.extend(self.leaves(rule["patterns"]))
        return out

    def tokenize(self, text: str) -> list[Token]:
        tokens: list[Token] = []
        stack: list[tuple[Rule, tuple[str, ...]]] = []  # open begin/end rules
        offset = 0
        for line in text.split("\n"):
            pos = 0
            while pos <= len(line):
                patterns = (
                    stack[-1][0].get("patterns", []) if stack else self.g["patterns"]
                )
                scopes = stack[-1][1] if stack else ()
                candidates: list[tuple[int, int, str, Rule, re.Match[str]]] = []
                if stack:
                    m = re.compile(stack[-1][0]["end"]).search(line, pos)
                    if m:
                        candidates.append((m.start(), 0, "end", stack[-1][0], m))
                for order, rule in enumerate(self.leaves(patterns), 1):
                    regex = rule.get("match", rule.get("begin"))
                    m = re.compile(regex).search(line, pos)
                    if m:
                        kind = "match" if "match" in rule else "begin"
                        candidates.append((m.start(), order, kind, rule, m))
                if not candidates:
                    if pos < len(line):
                        tokens.append(Token(line[pos:], offset + pos, scopes))
                    break
                start, _, kind, rule, m = min(candidates, key=lambda c: c[:2])
                if start > pos:
                    tokens.append(Token(line[pos:start], offset + pos, scopes))
                if kind == "end":
                    self.emit(tokens, m, offset, scopes, rule.get("endCaptures", {}))
                    stack.pop()  # progress even when the end match is empty (`$`)
                    pos = m.end()
                    continue
                inner = (*scopes, rule["name"]) if "name" in rule else scopes
                if kind == "begin":
                    self.emit(tokens, m, offset, inner, rule.get("beginCaptures", {}))
                    stack.append((rule, inner))
                else:
                    self.emit(tokens, m, offset, inner, rule.get("captures", {}))
                pos = m.end() if m.end() > pos else pos + 1
            offset += len(line) + 1
        return [t for t in tokens if t.text]

    @staticmethod
    def emit(
        tokens: list[Token],
        m: re.Match[str],
        offset: int,
        scopes: tuple[str, ...],
        captures: dict[str, Rule],
    ) -> None:
        if not captures:
            tokens.append(Token(m.group(0), offset + m.start(), scopes))
            return
        pos = m.start()
        for group in sorted(captures, key=int):
            index = int(group)
            if m.group(index) is None:
                continue
            if index == 0:
                tokens.append(
                    Token(
                        m.group(0),
                        offset + m.start(),
                        (*scopes, captures[group]["name"]),
                    )
                )
                return
            if m.start(index) > pos:
                tokens.append(
                    Token(m.string[pos : m.start(index)], offset + pos, scopes)
                )
            name = captures[group].get("name")
            inner = (*scopes, name) if name else scopes
            tokens.append(Token(m.group(index), offset + m.start(index), inner))
            pos = m.end(index)
        if m.end() > pos:
            tokens.append(Token(m.string[pos : m.end()], offset + pos, scopes))


def scopes_of(text: str) -> list[tuple[str, str]]:
    """(token text, innermost scope) for every scoped, non-blank token."""
    return [
        (t.text, t.scopes[-1])
        for t in TextMate(grammar()).tokenize(text)
        if t.scopes and t.text.strip()
    ]


def test_digits_is_scoped() -> None:
    pairs = set(scopes_of((ROOT / "examples" / "digits.bnn").read_text()))
    for expected in [
        ("#", "punctuation.definition.comment.bnn"),
        ("prior", "keyword.other.bnn"),
        ("default", "keyword.other.bnn"),
        ("Gaussian", "support.class.bnn"),
        ("mu", "variable.parameter.bnn"),
        ("0.1", "constant.numeric.float.bnn"),
        ("network", "keyword.other.network.bnn"),
        ("DigitsCNN", "entity.name.type.class.bnn"),
        ("classes", "variable.parameter.bnn"),
        ("int", "storage.type.bnn"),
        ("Tensor", "storage.type.bnn"),
        ("8", "constant.numeric.integer.bnn"),
        ("input", "keyword.other.bnn"),
        ("layers", "keyword.other.bnn"),
        ("fixed", "keyword.other.bnn"),
        ("Conv2d", "support.class.bnn"),
        ("Linear", "support.class.bnn"),
        ("auto", "constant.language.bnn"),
        ("kernel_size", "variable.parameter.bnn"),
        ("forward", "keyword.other.bnn"),
        ("max_pool2d", "support.function.bnn"),
        ("relu", "support.function.bnn"),
        ("conv1", "entity.name.function.bnn"),
        ("return", "keyword.control.return.bnn"),
        ("*", "keyword.operator.arithmetic.bnn"),
        ("{", "punctuation.section.block.begin.bnn"),
        ("(", "punctuation.section.parens.begin.bnn"),
    ]:
        assert expected in pairs, expected
    comments = [
        t
        for t in TextMate(grammar()).tokenize(
            (ROOT / "examples" / "digits.bnn").read_text()
        )
        if "comment.line.number-sign.bnn" in t.scopes
    ]
    assert any("a Bayesian CNN" in t.text for t in comments)


def test_snippet_is_scoped() -> None:
    text = (
        'from "blocks.bnn" import ResBlock\n'
        "network N(p: float = 1e-3) {\n"
        "    input ids: Tensor[B, T, dtype=int64]\n"
        "    layers { e = Embedding(1_000, 8 // 2, padding_idx=none,\n"
        "                           prior=Gaussian(std=.5)) }\n"
        "    forward { return (m=Normal(e(ids)).mean, s=true) }\n"
        "}\n"
    )
    pairs = scopes_of(text)
    assert pairs[:4] == [
        ("from", "keyword.control.import.bnn"),
        ('"', "punctuation.definition.string.begin.bnn"),
        ("blocks.bnn", "string.quoted.double.bnn"),
        ('"', "punctuation.definition.string.end.bnn"),
    ]
    for expected in [
        ("import", "keyword.control.import.bnn"),
        ("float", "storage.type.bnn"),
        ("1e-3", "constant.numeric.float.bnn"),
        ("dtype", "variable.parameter.bnn"),
        ("int64", "storage.type.bnn"),
        ("1_000", "constant.numeric.integer.bnn"),
        ("//", "keyword.operator.arithmetic.bnn"),
        ("none", "constant.language.bnn"),
        ("prior", "keyword.other.bnn"),  # reserved, even as `prior=`
        (".5", "constant.numeric.float.bnn"),
        ("m", "variable.parameter.bnn"),
        ("Normal", "support.class.bnn"),
        ("mean", "variable.other.member.bnn"),
        ("true", "constant.language.bnn"),
        ("e", "entity.name.function.bnn"),
    ]:
        assert expected in pairs, expected


def test_grammar_knows_every_reserved_word_and_op() -> None:
    repo = grammar()["repository"]
    keyword_rules = [r["match"] for r in repo["keyword"]["patterns"]]
    for word in keywords():
        assert any(re.fullmatch(rule, word) for rule in keyword_rules), word
    for op in layers() + heads():
        assert re.fullmatch(repo["layer-op"]["match"], op.name), op.name
    for op in functions():
        assert re.fullmatch(repo["function"]["match"], op.name), op.name
    for name in ("int", "float", "bool", "Tensor", "float32", "int64"):
        assert re.fullmatch(repo["type"]["match"], name), name
    assert re.fullmatch(repo["layer-op"]["match"], "Gaussian")


# Pygments token type (prefix) -> TextMate scope prefixes it may be scoped as.
AGREEMENT = {
    "Token.Comment": ("comment.", "punctuation.definition.comment"),
    "Token.Literal.String": ("string.", "punctuation.definition.string"),
    "Token.Literal.Number": ("constant.numeric.",),
    "Token.Keyword.Constant": ("constant.language.",),
    "Token.Keyword.Type": ("storage.type.",),
    "Token.Keyword": ("keyword.",),
    "Token.Name.Builtin.Layer": ("support.class.",),
    "Token.Name.Builtin": ("support.function.",),
    "Token.Name.Class": ("entity.name.type.class.",),
    "Token.Name.Function": ("entity.name.function.",),
    "Token.Name.Attribute": ("variable.parameter.", "variable.other.member."),
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_grammar_agrees_with_the_pygments_lexer(path: Path) -> None:
    pytest.importorskip("pygments")
    from bnnc.dsl.lexer import BnnLexer

    text = path.read_text(encoding="utf-8")
    scope_at: dict[int, tuple[str, ...]] = {}
    for token in TextMate(grammar()).tokenize(text):
        for i in range(token.start, token.start + len(token.text)):
            scope_at[i] = token.scopes
    checked = 0
    for start, kind, value in BnnLexer().get_tokens_unprocessed(text):
        for prefix in sorted(AGREEMENT, key=len, reverse=True):
            if str(kind).startswith(prefix):
                wanted = AGREEMENT[prefix]
                break
        else:
            continue
        for i in range(start, start + len(value)):
            if value[i - start].isspace():
                continue
            scopes = scope_at.get(i, ())
            assert any(s.startswith(wanted) for s in scopes), (
                f"{path.name}: {value!r} at {start} is {kind} for Pygments but "
                f"{scopes} in the TextMate grammar"
            )
            checked += 1
    assert checked > 100


def test_vscode_extension_manifest() -> None:
    folder = ROOT / "editors" / "vscode"
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    (language,) = manifest["contributes"]["languages"]
    (entry,) = manifest["contributes"]["grammars"]
    assert language["id"] == entry["language"] == "bnn"
    assert language["extensions"] == [".bnn"]
    assert entry["scopeName"] == grammar()["scopeName"]
    # The README copies the grammar next to the manifest.
    assert entry["path"] == f"./{GRAMMAR_PATH.name}"
    config = json.loads((folder / language["configuration"]).read_text("utf-8"))
    assert config["comments"]["lineComment"] == "#"


def test_grammar_converts_to_a_sublime_plist() -> None:
    import plistlib

    data = plistlib.dumps(grammar())
    assert plistlib.loads(data)["scopeName"] == "source.bnn"
