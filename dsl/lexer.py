"""A Pygments lexer for ``.bnn`` files, for syntax highlighting.

Installed with bnnc as the Pygments plugin ``bnn`` (entry point group
``pygments.lexers``), so once Pygments is installed::

    pygmentize -l bnn examples/digits.bnn
    pygmentize -l bnn -f html -O full -o digits.html examples/digits.bnn

and Sphinx or MkDocs code blocks marked ``bnn`` are highlighted. The token
classes follow the language reference (``docs/language.md``):

- ``#`` comments (``Comment.Single``), strings, integers and floats;
- reserved words from :func:`bnnc.dsl.keywords` (``Keyword``; ``true``,
  ``false``, ``none`` and ``auto`` as ``Keyword.Constant``, ``from`` / ``import``
  as ``Keyword.Namespace``), the network name after ``network``
  (``Name.Class``);
- ``Tensor``, ``int``, ``float``, ``bool`` and dtypes, and any type after
  ``name:`` in a parameter list (``Keyword.Type``);
- the registry's functional ops (``Name.Builtin``) and its layer ops, output
  heads and ``Gaussian`` (``Name.Builtin.Layer``, styled as a builtin unless a
  style says otherwise), other called names
  (``Name.Function``), keyword arguments inside parentheses
  (``Name.Attribute``) and fields after ``.`` (``Name.Attribute``);
- operators (``+ - * / // % = .``) and punctuation.

Needs Pygments (``pip install pygments``); nothing else in bnnc imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups, include, words
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
)

from bnnc.compiler.registry import functions, heads, layers
from bnnc.dsl.parser import keywords

__all__ = ["BnnLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DIGITS = r"[0-9](?:_?[0-9])*"
# As the grammar's FLOAT and INT terminals.
_FLOAT = (
    rf"(?:{_DIGITS})?\.{_DIGITS}(?:[eE][+-]?{_DIGITS})?|{_DIGITS}[eE][+-]?{_DIGITS}"
)
_INT = _DIGITS

KEYWORDS: tuple[str, ...] = tuple(sorted(keywords()))
CONSTANTS: tuple[str, ...] = ("auto", "false", "none", "true")
NAMESPACE: tuple[str, ...] = ("from", "import")
TYPES: tuple[str, ...] = (
    "Tensor",
    "int",
    "float",
    "bool",
    "float32",
    "float64",
    "int64",
    "int32",
)
LAYER_OPS: tuple[str, ...] = tuple(op.name for op in layers())
HEADS: tuple[str, ...] = tuple(op.name for op in heads())
FAMILIES: tuple[str, ...] = ("Gaussian",)
FUNCTIONS: tuple[str, ...] = tuple(op.name for op in functions())
LAYER = Name.Builtin.Layer  # layer ops, output heads, `Gaussian`: styled as builtins

_OTHER_KEYWORDS = tuple(w for w in KEYWORDS if w not in CONSTANTS + NAMESPACE)
# `name=` inside parentheses, unless `name` is reserved (`prior=`, `posterior=`).
_KWARG = rf"(?!(?:{'|'.join(KEYWORDS)})\b)({_NAME})([ \t\r\n\f]*)(=)"


class BnnLexer(RegexLexer):
    """Lexer for the bnnc model language (``.bnn``)."""

    name = "bnn"
    aliases: ClassVar[list[str]] = ["bnn"]
    filenames: ClassVar[list[str]] = ["*.bnn"]
    mimetypes: ClassVar[list[str]] = ["text/x-bnn"]
    url = "https://github.com/bnnc/bnnc"
    version_added = ""

    tokens: ClassVar[dict[str, list[Any]]] = {
        "root": [
            (r"[ \t\r\n\f]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            (r'"(?:[^"\\\n]|\\.)*', Error),  # unterminated string
            (_FLOAT, Number.Float),
            (_INT, Number.Integer),
            (
                rf"(network)([ \t\r\n\f]+)({_NAME})",
                bygroups(Keyword.Declaration, Whitespace, Name.Class),
            ),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(NAMESPACE, suffix=r"\b"), Keyword.Namespace),
            (words(_OTHER_KEYWORDS, suffix=r"\b"), Keyword),
            (words(TYPES, suffix=r"\b"), Keyword.Type),
            (words(LAYER_OPS + HEADS + FAMILIES, suffix=r"\b"), LAYER),
            (words(FUNCTIONS, suffix=r"\b"), Name.Builtin),
            (
                rf"(\.)([ \t\r\n\f]*)({_NAME})",
                bygroups(Operator, Whitespace, Name.Attribute),
            ),
            (rf"{_NAME}(?=[ \t\r\n\f]*\()", Name.Function),
            (_NAME, Name),
            (r"//|[-+*/%=.]", Operator),
            (r"[(\[]", Punctuation, "group"),
            (r"[)\]]", Punctuation),  # unbalanced: the parser reports it
            (r"[{}:,;]", Punctuation),
        ],
        # Inside ( ) and [ ]: `name=` is a keyword argument or a named output.
        "group": [
            (r"[)\]]", Punctuation, "#pop"),
            (r"[ \t\r\n\f]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (  # a network parameter `name: type`
                rf"({_NAME})([ \t\r\n\f]*)(:)([ \t\r\n\f]*)({_NAME})",
                bygroups(Name, Whitespace, Punctuation, Whitespace, Keyword.Type),
            ),
            (_KWARG, bygroups(Name.Attribute, Whitespace, Operator)),
            include("root"),
        ],
    }
