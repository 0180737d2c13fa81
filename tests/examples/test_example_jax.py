"""Every example compiles to JAX/Flax NNX, passes ruff, runs and differentiates.

The torch side of the same checks lives in ``test_example_specs.py``; numeric
agreement between the two backends is ``tests/parity``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import bnnc
from bnnc.compiler.check import NetworkInfo
from bnnc.compiler.types import DistType

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
jnp = jax.numpy

from bnnc.runtime import jax as bnn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))
FILES = [pytest.param(path, id=path.name) for path in EXAMPLES]
NETWORKS = [
    pytest.param(path, info.name, id=f"{path.name}::{info.name}")
    for path in EXAMPLES
    for info in bnnc.check(path).main_networks()
    if all(p.default is not None for p in info.network.params)
]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax_generated")


def _module(path: Path, out_dir: Path) -> types.ModuleType:
    target = out_dir / f"{path.stem}_jax.py"
    if not target.exists():
        target.write_text(bnnc.compile(path, backend="jax"), encoding="utf-8")
    name = f"bnnc_example_jax_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, target)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _concrete(tensor: object, info: NetworkInfo) -> list[int]:
    """Dims with parameters at their defaults, B = 3 and other symbols = 12."""
    known = {
        p.name: p.default.value
        for p in info.network.params
        if isinstance(getattr(p.default, "value", None), int)
    }
    dims = []
    for dim in tensor.dims:  # type: ignore[attr-defined]
        free = {s: 3 if s == "B" else 12 for s in dim.symbols() - set(known)}
        dims.append(dim.evaluate({**known, **free}))
    return dims


def _inputs(info: NetworkInfo, vocabulary: int) -> list[jax.Array]:
    rng = np.random.default_rng(0)
    arrays = []
    for tensor in info.inputs.values():
        shape = _concrete(tensor, info)
        if tensor.is_float:
            arrays.append(jnp.asarray(rng.standard_normal(shape), jnp.float32))
        else:
            arrays.append(jnp.asarray(rng.integers(0, vocabulary, shape)))
    return arrays


def _vocabulary(model: nnx.Module) -> int:
    sizes = [
        m.num_embeddings
        for _, m in nnx.iter_graph(model)
        if isinstance(m, nnx.Module) and hasattr(m, "num_embeddings")
    ]
    return min(sizes) if sizes else 1


def _leaves(result: object) -> list[jax.Array]:
    """Output arrays in order; a head's container gives all its fields."""
    values = list(result) if isinstance(result, tuple) else [result]
    arrays = []
    for value in values:
        if dataclasses.is_dataclass(value):
            arrays += [getattr(value, f.name) for f in dataclasses.fields(value)]
        else:
            arrays.append(value)
    return arrays


def _expected(info: NetworkInfo) -> list[object]:
    types: list[object] = []
    for _, value in info.outputs:
        if isinstance(value, DistType):
            types += [tensor for _, tensor in value.fields]
        else:
            types.append(value)
    return types


@pytest.mark.parametrize("path", FILES)
def test_jax_module_is_ruff_clean_and_deterministic(path: Path, out_dir: Path) -> None:
    first = bnnc.compile(path, backend="jax")
    assert first == bnnc.compile(path, backend="jax")
    target = out_dir / f"{path.stem}_lint.py"
    target.write_text(first, encoding="utf-8")
    for args in (["check", "--isolated"], ["format", "--isolated", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--no-cache", target.name],
            cwd=out_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    module = _module(path, out_dir)
    for name in bnnc.check(path).networks:
        assert issubclass(getattr(module, name), nnx.Module), name


@pytest.mark.parametrize(("path", "network"), NETWORKS)
def test_jax_network_runs_samples_and_differentiates_under_jit(
    path: Path, network: str, out_dir: Path
) -> None:
    info = bnnc.check(path).networks[network]
    model = getattr(_module(path, out_dir), network)(rngs=nnx.Rngs(0))
    inputs = _inputs(info, _vocabulary(model))
    model.eval()
    first, second = _leaves(model(*inputs)), _leaves(model(*inputs))
    for value, expected in zip(first, _expected(info), strict=True):
        assert list(value.shape) == _concrete(expected, info)
        assert bool(jnp.isfinite(value).all())
    assert any(
        not bool(jnp.array_equal(a, b)) for a, b in zip(first, second, strict=True)
    )

    @nnx.jit
    def loss_and_grads(model: nnx.Module, *xs: jax.Array) -> tuple:
        def loss(model: nnx.Module) -> jax.Array:
            outputs = _leaves(model(*xs))
            return sum(jnp.sum(o**2) for o in outputs) + bnn.KLDivergenceLoss()(model)

        return nnx.value_and_grad(loss, argnums=nnx.DiffState(0, nnx.Param))(model)

    model.train()
    value, grads = loss_and_grads(model, *inputs)
    assert bool(jnp.isfinite(value))
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.isfinite(g).all()) for g in leaves)
    variational = [
        variable[...]
        for path_, variable in nnx.to_flat_state(grads)
        if path_[-1] in ("mu", "rho")
    ]
    assert variational, "no Bayesian layer"
    assert sum(float(jnp.abs(g).sum()) for g in variational) > 0
    bnn.freeze_all(model)
    model.eval()
    frozen = _leaves(model(*inputs))
    again = _leaves(model(*inputs))
    for a, b in zip(frozen, again, strict=True):
        assert bool(jnp.array_equal(a, b))
