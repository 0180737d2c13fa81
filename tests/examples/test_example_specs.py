"""End-to-end checks of every spec in ``examples/``.

Each ``examples/*.bnn`` file (found by glob, so a new example is covered without
touching this file) must pass ``bnnc check`` with no warnings, compile to the
same bytes in two processes, give a module that is ``ruff``-clean and imports,
and every network it defines with all-default parameters must run: outputs of
the shapes the checker inferred, finite non-zero gradients for every variational
``mu`` and ``rho``, fresh weights on every call, and none once frozen.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import subprocess
import sys
import types
from functools import cache
from pathlib import Path

import pytest
import torch

import bnnc
from bnnc.compiler.check import CheckedProgram, NetworkInfo
from bnnc.compiler.diagnostics import CompileError
from bnnc.compiler.types import DistType, TensorType
from bnnc.runtime import torch as bnn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))

# Values given to symbolic input dimensions: the batch, and any other (T, L, H, W).
BATCH = 3
OTHER_DIM = 12


def _buildable_networks(path: Path) -> list[str]:
    """Networks of ``path`` that can be built with default parameters.

    The others are built as layers of these, or of networks that import them.
    """
    try:
        checked = bnnc.check(path)
    except CompileError:
        return ["<check failed>"]  # the tests then report the diagnostics
    return [
        info.name
        for info in checked.main_networks()
        if all(param.default is not None for param in info.network.params)
    ]


NETWORKS = [
    pytest.param(path, name, id=f"{path.name}::{name}")
    for path in EXAMPLES
    for name in _buildable_networks(path)
]
FILES = [pytest.param(path, id=path.name) for path in EXAMPLES]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bnnc", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def _ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@cache
def _checked(path: Path) -> CheckedProgram:
    try:
        return bnnc.check(path)
    except CompileError as error:
        pytest.fail(f"{path.name} does not check:\n{error.render()}")


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the generated module of every example."""
    return tmp_path_factory.mktemp("generated")


def _generated_file(path: Path, directory: Path) -> Path:
    target = directory / f"{path.stem}_torch.py"
    if not target.exists():
        _checked(path)  # fails the test with rendered diagnostics
        target.write_text(bnnc.compile(path), encoding="utf-8")
    return target


_MODULES: dict[Path, types.ModuleType] = {}


def _import_generated(path: Path, directory: Path) -> types.ModuleType:
    """Import the generated file of ``path`` as an ordinary module (cached)."""
    if path not in _MODULES:
        file = _generated_file(path, directory)
        name = f"bnnc_example_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _MODULES[path] = module
    return _MODULES[path]


def _defaults(cls: type) -> dict[str, object] | None:
    """Constructor defaults of a generated class; None if one has no default."""
    params = list(inspect.signature(cls).parameters.values())
    if any(p.default is inspect.Parameter.empty for p in params):
        return None
    return {p.name: p.default for p in params}


def _concrete(tensor: TensorType, params: dict[str, object]) -> list[int]:
    """The dims of ``tensor`` with parameters at their defaults and B, T, ... set."""
    known = {k: v for k, v in params.items() if isinstance(v, int)}
    dims = []
    for dim in tensor.dims:
        free = {s: BATCH if s == "B" else OTHER_DIM for s in dim.symbols() - set(known)}
        value = dim.evaluate({**known, **free})
        assert value is not None and value > 0, (tensor.describe(), value)
        dims.append(value)
    return dims


def _vocabulary(model: torch.nn.Module) -> int:
    """The smallest vocabulary among the model's embeddings (and LSTMs)."""
    sizes = [m.num_embeddings for m in model.modules() if hasattr(m, "num_embeddings")]
    assert sizes, "an integer input but no Embedding or LSTM layer"
    return min(sizes)


def _inputs(
    info: NetworkInfo, params: dict[str, object], model: torch.nn.Module
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for name, tensor in info.inputs.items():
        shape = _concrete(tensor, params)
        if tensor.is_float:
            inputs.append(torch.randn(shape, generator=generator))
        else:
            high = _vocabulary(model)
            inputs.append(torch.randint(0, high, shape, generator=generator))
        assert inputs[-1].dtype == getattr(torch, tensor.dtype), name
    return inputs


def _outputs(info: NetworkInfo, result: object) -> dict[str, torch.Tensor]:
    """The model's output tensors by name ('' for a single unnamed output).

    An output head's container contributes one entry per field, `name.field`.
    """
    if len(info.outputs) == 1 and info.outputs[0][0] is None:
        values = {"": result}
    else:
        assert isinstance(result, tuple) and len(result) == len(info.outputs)
        values = {name: getattr(result, name) for name, _ in info.outputs}
    tensors: dict[str, torch.Tensor] = {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            tensors[name] = value
        else:  # NormalStoch / CategoricalStoch / BernoulliStoch
            for field in dataclasses.fields(value):
                tensors[f"{name}.{field.name}"] = getattr(value, field.name)
    return tensors


def _expected(info: NetworkInfo) -> dict[str, TensorType]:
    """The checker's type of every output tensor, keyed like :func:`_outputs`."""
    types: dict[str, TensorType] = {}
    for name, value in info.outputs:
        if isinstance(value, DistType):
            for field, tensor in value.fields:
                types[f"{name or ''}.{field}"] = tensor
        else:
            types[name or ""] = value
    return types


def _make(
    path: Path, name: str, directory: Path
) -> tuple[torch.nn.Module, NetworkInfo, dict[str, object]]:
    info = _checked(path).networks[name]
    cls = getattr(_import_generated(path, directory), name)
    params = _defaults(cls)
    assert params is not None, f"{name}: the spec has defaults, the class has not"
    torch.manual_seed(0)
    model = cls()
    return model, info, params


# -- the compiler on each file --------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_cli_check_passes_without_warnings(path: Path) -> None:
    result = _cli("check", str(path.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert f"{path.name}: ok" in result.stdout


@pytest.mark.parametrize("path", FILES)
def test_compile_is_deterministic_across_processes(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    first = _cli("compile", relative, "-o", "-", PYTHONHASHSEED="1")
    second = _cli("compile", relative, "-o", "-", PYTHONHASHSEED="2")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.encode() == second.stdout.encode()
    assert first.stdout == bnnc.compile(path)


@pytest.mark.parametrize("path", FILES)
def test_generated_module_is_ruff_clean(path: Path, generated_dir: Path) -> None:
    file = _generated_file(path, generated_dir)
    lint = _ruff("check", "--isolated", "--no-cache", file.name, cwd=file.parent)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _ruff(
        "format", "--isolated", "--no-cache", "--check", file.name, cwd=file.parent
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.parametrize("path", FILES)
def test_generated_module_imports_with_one_class_per_network(
    path: Path, generated_dir: Path
) -> None:
    module = _import_generated(path, generated_dir)
    checked = _checked(path)
    for name in checked.networks:  # imported networks are emitted too
        assert issubclass(getattr(module, name), torch.nn.Module), name
    runnable = [
        info.name
        for info in checked.main_networks()
        if _defaults(getattr(module, info.name)) is not None
    ]
    assert runnable, f"{path.name}: no network can be built with default parameters"


# -- each network, built with default parameters ---------------------------------------


@pytest.mark.parametrize(("path", "name"), NETWORKS)
def test_output_shapes_match_the_checker(
    path: Path, name: str, generated_dir: Path
) -> None:
    model, info, params = _make(path, name, generated_dir)
    inputs = _inputs(info, params, model)
    model.eval()
    outputs = _outputs(info, model(*inputs))
    expected_types = _expected(info)
    assert outputs.keys() == expected_types.keys()
    for output_name, expected in expected_types.items():
        value = outputs[output_name]
        assert list(value.shape) == _concrete(expected, params), output_name
        assert value.dtype == getattr(torch, expected.dtype)
        assert torch.isfinite(value).all()


@pytest.mark.parametrize(("path", "name"), NETWORKS)
def test_every_variational_parameter_gets_a_gradient(
    path: Path, name: str, generated_dir: Path
) -> None:
    model, info, params = _make(path, name, generated_dir)
    inputs = _inputs(info, params, model)
    model.train()
    generator = torch.Generator().manual_seed(1)
    loss = sum(
        (value * torch.randn(value.shape, generator=generator)).sum()
        for value in _outputs(info, model(*inputs)).values()
    )
    loss.backward()  # the data term only: no KL, which would reach every weight
    variational = {
        key: parameter
        for key, parameter in model.named_parameters()
        if key.rsplit(".", 1)[-1] in ("mu", "rho")
    }
    assert variational, "no Bayesian layer"
    for parameter_name, parameter in variational.items():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize(("path", "name"), NETWORKS)
def test_forward_passes_sample_until_frozen(
    path: Path, name: str, generated_dir: Path
) -> None:
    model, info, params = _make(path, name, generated_dir)
    inputs = _inputs(info, params, model)
    model.eval()  # dropout off: any difference comes from the weights
    with torch.no_grad():
        first = _outputs(info, model(*inputs))
        second = _outputs(info, model(*inputs))
        for output_name in first:
            assert not torch.equal(first[output_name], second[output_name])
        bnn.freeze_all(model)
        frozen = _outputs(info, model(*inputs))
        again = _outputs(info, model(*inputs))
    for output_name in frozen:
        assert torch.equal(frozen[output_name], again[output_name])


def _step_loss(
    model: torch.nn.Module,
    info: NetworkInfo,
    inputs: list[torch.Tensor],
    projections: dict[str, torch.Tensor],
) -> torch.Tensor:
    """A training loss: a fixed projection of every output plus the KL term."""
    outputs = _outputs(info, model(*inputs))
    data = sum((value * projections[key]).sum() for key, value in outputs.items())
    return data + bnn.KLDivergenceLoss()(model)


@pytest.mark.parametrize(("path", "name"), NETWORKS)
def test_training_step_compiles_as_one_graph(
    path: Path, name: str, generated_dir: Path
) -> None:
    # fullgraph=True fails on any graph break; aot_eager traces forward and
    # backward like inductor does, without compiling C++ in the test.
    import torch._dynamo.utils as dynamo_utils

    model, info, params = _make(path, name, generated_dir)
    inputs = _inputs(info, params, model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        projections = {
            key: torch.randn(value.shape, generator=generator)
            for key, value in _outputs(info, model(*inputs)).items()
        }
    torch._dynamo.reset()
    dynamo_utils.counters.clear()
    compiled = torch.compile(
        lambda *args: _step_loss(model, info, list(args), projections),
        fullgraph=True,
        backend="aot_eager",
    )
    model.train()
    for _ in range(4):  # samples drawn inside the graph, KL once per step
        loss = compiled(*inputs)
        loss.backward()
        assert torch.isfinite(loss)
    # One graph for the first call, whose stored samples are plain tensors,
    # one for later calls, whose stored samples came out of a graph; no more.
    assert dynamo_utils.counters["stats"]["unique_graphs"] <= 2
    # Frozen and in eval mode the step is deterministic: same loss and
    # gradients as eager.
    bnn.freeze_all(model)
    model.eval()
    model.zero_grad()
    expected = _step_loss(model, info, inputs, projections)
    expected.backward()
    eager_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    loss = compiled(*inputs)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    for key, parameter in model.named_parameters():
        torch.testing.assert_close(
            parameter.grad, eager_grads[key], rtol=1e-4, atol=1e-6, msg=key
        )


@pytest.mark.parametrize(("path", "name"), NETWORKS)
def test_vectorised_monte_carlo_draws_per_sample_weights(
    path: Path, name: str, generated_dir: Path
) -> None:
    from bnnc.runtime.torch.predict import sample_outputs

    model, info, params = _make(path, name, generated_dir)
    inputs = _inputs(info, params, model)
    model.eval()

    def extract(output: object) -> tuple[torch.Tensor, ...]:
        return tuple(_outputs(info, output).values())

    samples = sample_outputs(model, tuple(inputs), 4, extract)
    with torch.no_grad():
        single = extract(model(*inputs))
    for stacked, one in zip(samples, single, strict=True):
        assert stacked.shape == (4, *one.shape)
        assert not torch.equal(stacked[0], stacked[1])  # fresh weights each
    bnn.freeze_all(model)
    frozen = sample_outputs(model, tuple(inputs), 3, extract)
    with torch.no_grad():
        expected = extract(model(*inputs))
    for stacked, one in zip(frozen, expected, strict=True):
        for index in range(3):
            torch.testing.assert_close(stacked[index], one)
