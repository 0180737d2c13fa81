"""The Lark grammar of the ``.bnn`` language, shipped as package data."""

from __future__ import annotations

from importlib.resources import files

__all__ = ["grammar_text"]


def grammar_text() -> str:
    """The text of ``bnn.lark``, the grammar :mod:`bnnc.dsl` parses with."""
    return files("bnnc.grammars").joinpath("bnn.lark").read_text(encoding="utf-8")
