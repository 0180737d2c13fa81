"""The README's Python examples run as written, in order, as one session."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_examples_run() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    assert len(BLOCKS) >= 3
    code = "import bnnc\n" + "\n".join(BLOCKS)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
