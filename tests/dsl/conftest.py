"""Helpers shared by the front-end tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bnnc.compiler.diagnostics import CompileError
from bnnc.dsl import parse


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _plain(v)
            for k, v in value.items()
            if k not in ("span", "name_span", "name_spans")
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.fixture
def plain() -> Callable[[Any], Any]:
    """An IR node as a dict without spans, for comparing structure only."""
    return lambda node: _plain(node.model_dump())


@pytest.fixture
def errors() -> Callable[..., str]:
    """The rendered diagnostics of parsing ``text`` (which must fail)."""

    def run(text: str, path: str = "t.bnn") -> str:
        with pytest.raises(CompileError) as caught:
            parse(text, path)
        return caught.value.render()

    return run


@pytest.fixture
def codes() -> Callable[..., list[str]]:
    """The diagnostic codes of parsing ``text`` (which must fail), in order."""

    def run(text: str, path: str = "t.bnn") -> list[str]:
        with pytest.raises(CompileError) as caught:
            parse(text, path)
        return [d.code for d in sorted_diagnostics(caught.value)]

    return run


def sorted_diagnostics(error: CompileError) -> list[Any]:
    from bnnc.compiler.diagnostics import sort

    return sort(error.diagnostics)
