"""``bnnc.runtime`` itself must stay free of framework imports."""

from __future__ import annotations

import subprocess
import sys


def test_importing_bnnc_runtime_imports_neither_torch_nor_jax() -> None:
    code = (
        "import sys, bnnc.runtime; "
        "assert 'torch' not in sys.modules and 'jax' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
