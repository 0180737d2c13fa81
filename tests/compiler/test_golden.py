"""Generated code is golden-tested for both backends.

Regenerate after an intended change, then review the diff:
    bnnc compile examples/NAME.bnn --backend B -o tests/compiler/golden/NAME_B.py
(run from the repository root, so the header names the file the same way).
"""

from pathlib import Path

import pytest

from bnnc.compiler import api

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = sorted(Path(__file__).with_name("golden").glob("*.py"))


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.name)
def test_generated_code_matches_golden(
    golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, backend = golden.stem.rsplit("_", 1)
    monkeypatch.chdir(ROOT)
    source = api.compile(f"examples/{name}.bnn", backend=backend)
    assert source == golden.read_text(encoding="utf-8")


def test_every_backend_has_goldens() -> None:
    from bnnc.compiler.backends import BACKENDS

    assert {p.stem.rsplit("_", 1)[1] for p in GOLDEN} == set(BACKENDS)
