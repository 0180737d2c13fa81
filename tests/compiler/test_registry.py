"""The operator registry drives the checker and every backend: walk it."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from bnnc.compiler.backends import BACKENDS
from bnnc.compiler.backends.base import HEAD_DISTS
from bnnc.compiler.registry import REGISTRY, functions, heads, layers

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_op_has_an_emitter(backend: str) -> None:
    generator = BACKENDS[backend]
    missing = [
        op.name for op in functions() if op.name not in generator.function_emitters
    ]
    missing += [op.name for op in layers() if op.name not in generator.layer_classes]
    missing += [op.name for op in heads() if op.name not in HEAD_DISTS]
    assert not missing, f"{backend} backend lacks emitters for {missing}"
    extra = set(generator.function_emitters) - {op.name for op in functions()}
    assert not extra, f"{backend} has emitters for unknown ops {extra}"


@pytest.mark.parametrize("runtime", ["torch", "jax"])
@pytest.mark.parametrize("op", layers(), ids=lambda op: op.name)
def test_runtime_layers_take_the_registry_arguments(op, runtime: str) -> None:
    pytest.importorskip(runtime)
    bnn = pytest.importorskip(f"bnnc.runtime.{runtime}")
    for name in (op.name, f"Fixed{op.name}"):
        cls = getattr(bnn, name)
        signature = inspect.signature(cls.__init__)
        for arg in op.args:
            assert arg.name in signature.parameters, f"{name} lacks {arg.name}"
        if op.bayesian and not name.startswith("Fixed"):
            for key in ("mu_prior", "std_prior", "mu_init", "rho_init"):
                assert key in signature.parameters, f"{name} lacks {key}"
        if len(op.estimators) > 1 and not name.startswith("Fixed"):
            # `estimator=` in a spec compiles to this keyword-only argument.
            parameter = signature.parameters["estimator"]
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
            assert parameter.default == op.estimators[0], name
            args = [2] * sum(a.required for a in op.args)
            extra = (
                {"rngs": pytest.importorskip("flax.nnx").Rngs(0)}
                if runtime == "jax"
                else {}
            )
            for estimator in op.estimators:
                assert cls(*args, estimator=estimator, **extra).estimator == estimator


def test_registry_entries_are_documented() -> None:
    for op in REGISTRY.values():
        assert op.summary.strip(), op.name
        assert op.kind in ("layer", "function", "head")
        if op.kind == "layer":
            assert op.sequential_input is not None, op.name


def test_language_reference_lists_every_op() -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    generated = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_ops_table.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert generated in text, (
        "docs/language.md ops table is stale: rerun gen_ops_table.py"
    )
    for op in REGISTRY.values():
        assert f"`{op.name}`" in text
