"""Code injection is impossible: hostile specs are rejected or emitted safely.

- ``corpus/*.bnn``: hostile specs, each starting with ``# expect: ok`` (it
  compiles) or ``# expect: BNN...`` (the codes it must be rejected with);
- a matrix of hostile names (Python keywords and builtins, dunders, names of
  generated code, look-alike and invisible characters) in every position a
  name can take;
- payloads in every place free text can go: comments, doc comments, strings,
  the spec's file name, import paths, and (through the IR) docs, comments,
  source paths and any string or number field.

Whatever compiles is audited statically (:mod:`.audit`) and then imported and
instantiated in a subprocess whose working directory is watched for the
sentinel file the payloads try to create.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import keyword
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bnnc
from bnnc import dsl
from bnnc.compiler import ir
from bnnc.compiler.backends import BACKENDS
from bnnc.compiler.check.values import reserved_reason
from bnnc.compiler.diagnostics import CompileError
from tests.fuzz import specgen
from tests.fuzz.harness import check_ir, check_text, diagnostic_problems
from tests.security.audit import audit

HERE = Path(__file__).resolve().parent
CORPUS = sorted((HERE / "corpus").glob("*.bnn"))
SENTINEL = specgen.SENTINEL
PAYLOADS = specgen.PAYLOADS
HAS_JAX = importlib.util.find_spec("flax") is not None

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def compile_all(program: ir.Program) -> dict[str, str]:
    """Source for every backend (raises CompileError)."""
    return {backend: bnnc.compile(program, backend=backend) for backend in BACKENDS}


def assert_safe(program: ir.Program, outputs: dict[str, str]) -> None:
    for backend, source in outputs.items():
        problems = audit(source, program)
        assert not problems, f"{backend}:\n" + "\n".join(problems) + "\n" + source


def assert_good_rejection(error: CompileError) -> None:
    assert any(d.severity == "error" for d in error.diagnostics)
    for diagnostic in error.diagnostics:
        assert not diagnostic_problems(diagnostic, error.sources), diagnostic


# Everything that compiles in this module, for the sentinel test at the end.
_COMPILED: dict[str, ir.Program] = {}


def remember(label: str, program: ir.Program) -> None:
    _COMPILED[label] = program


# --- the corpus -----------------------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
def test_corpus(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    first = text.split("\n", 1)[0]
    assert first.startswith("# expect: "), f"{path.name}: first line says what"
    expected = first.removeprefix("# expect: ").split()
    verdict = check_text(text, path.name)  # the fuzzing property holds too
    assert verdict.ok, verdict.report()
    if expected == ["ok"]:
        assert verdict.outcome == "compiled", verdict.codes
        assert verdict.program is not None
        assert_safe(verdict.program, verdict.outputs)
        remember(path.stem, verdict.program)
    else:
        errors = set(verdict.codes)
        assert verdict.outcome == "rejected" and set(expected) <= errors, (
            f"expected {expected}, got {verdict.outcome} {sorted(errors)}"
        )


# --- hostile names in every position --------------------------------------------------

PYTHON_KEYWORDS = sorted(set(keyword.kwlist) | set(keyword.softkwlist))
BUILTINS = [
    "print", "eval", "exec", "open", "compile", "getattr", "setattr", "globals",
    "locals", "vars", "input", "__import__", "breakpoint", "type", "object", "id",
    "len", "map", "super", "int", "float", "bool", "str", "dict", "range",
]  # fmt: skip
DUNDERS = [
    "__init__", "__class__", "__dict__", "__builtins__", "__globals__", "__call__",
    "__getattr__", "__loader__", "_private", "_t1", "_head", "_fc_input_size",
]  # fmt: skip
GENERATED = [
    "self", "torch", "F", "bnn", "jax", "jnp", "nnx", "np", "rngs", "NamedTuple",
    "Tensor", "Array", "forward", "training", "state_dict", "parameters", "cuda",
    "to", "train", "kl_cost", "freeze", "register_forward_hook", "apply",
]  # fmt: skip
LOOKALIKES = [
    "f\u0441", "\u0430", "f\u200bc", "f\u202ec", "\uff46c", "fc\ufeff", "caf\u00e9",
    "fc\u0000", "f\u2028c",
]  # fmt: skip
# Builtins that generated code uses, or that the checker reserves anyway; a
# local named like another builtin (say `map`) shadows nothing bnnc emits.
USED_BUILTINS = ["super", "int", "float", "bool", "eval", "exec", "__import__"]
MUST_REJECT = PYTHON_KEYWORDS + USED_BUILTINS + DUNDERS + GENERATED + LOOKALIKES
HOSTILE_NAMES = MUST_REJECT + [n for n in BUILTINS if n not in USED_BUILTINS]

_NET = "network Main{params} {{ input {input}: Tensor[B, {dim}] {layers} {forward} }}"
POSITIONS = {
    "network": "network {N} {{ input x: Tensor[B, 4] layers {{ fc = Linear(4, 4) }} "
    "forward {{ return fc(x) }} }}",
    "parameter": "network Main({N}: int = 4) {{ input x: Tensor[B, 4] "
    "layers {{ fc = Linear(4, {N}) }} forward {{ return fc(x) }} }}",
    "input": "network Main {{ input {N}: Tensor[B, 4] layers {{ fc = Linear(4, 4) }} "
    "forward {{ return fc({N}) }} }}",
    "layer": "network Main {{ input x: Tensor[B, 4] layers {{ {N} = Linear(4, 4) }} "
    "forward {{ return {N}(x) }} }}",
    "value": "network Main {{ input x: Tensor[B, 4] layers {{ fc = Linear(4, 4) }} "
    "forward {{ {N} = fc(x) return {N} }} }}",
    "output": "network Main {{ input x: Tensor[B, 4] layers {{ fc = Linear(4, 4) }} "
    "forward {{ return ({N}=fc(x), other=x) }} }}",
    "dimension": "network Main {{ input x: Tensor[B, {N}] "
    "layers {{ fc = Linear(4, 4) }} forward {{ return x }} }}",
    "attribute": "network E {{ input x: Tensor[B, 4] layers {{ a = Linear(4, 2) }} "
    "forward {{ return (mean=a(x), std=x) }} }} network Main {{ input x: Tensor[B, 4] "
    "layers {{ e = E() }} forward {{ return e(x).{N} }} }}",
    "keyword": "network Main {{ input x: Tensor[B, 4] layers {{ fc = Linear(4, 4, "
    "{N}=1) }} forward {{ return fc(x) }} }}",
    "network-argument": "network E(d: int = 4) {{ input x: Tensor[B, d] "
    "layers {{ a = Linear(d, 2) }} forward {{ return a(x) }} }} network Main {{ "
    "input x: Tensor[B, 4] layers {{ e = E({N}=4) }} forward {{ return e(x) }} }}",
}
# Positions where a name becomes an identifier of generated code.
NAMING = {"network", "parameter", "input", "layer", "value", "output"}


@pytest.mark.parametrize("position", sorted(POSITIONS))
def test_hostile_names(position: str) -> None:
    compiled = []
    for name in HOSTILE_NAMES:
        text = POSITIONS[position].format(N=name)
        try:
            program = dsl.parse(text, "names.bnn")
            outputs = compile_all(program)
        except CompileError as error:
            assert_good_rejection(error)
            continue
        if name in MUST_REJECT:
            assert position not in NAMING, f"{name!r} accepted as a {position} name"
        assert_safe(program, outputs)
        compiled.append(name)
        remember(f"{position}-{name.encode('unicode_escape').decode()}", program)
    if position in ("attribute", "keyword", "network-argument"):
        assert not compiled, compiled  # no output or argument has these names


def test_module_attributes_are_reserved() -> None:
    """A layer or parameter named like a Module attribute would shadow it."""
    import torch

    names = {n for n in dir(torch.nn.Module) if not n.startswith("_")}
    if HAS_JAX:
        from flax import nnx

        names |= {n for n in dir(nnx.Module) if not n.startswith("_")}
    assert not sorted(n for n in names if reserved_reason(n) is None)


# --- payloads in free text ------------------------------------------------------------

BASE = (
    "network Main(width: int = 4) {\n"
    "    input x: Tensor[B, 4]\n"
    "    layers {\n        fc = Linear(4, width)  # TRAILING\n    }\n"
    "    forward { return fc(x) }  # AFTER\n"
    "}\n"
)


@pytest.mark.parametrize("index", range(len(PAYLOADS)))
def test_payloads_in_comments_compile_safely(index: int) -> None:
    payload = PAYLOADS[index]
    one_line = payload.replace("\n", " ")  # a comment ends at a newline
    text = "\n".join(
        [f"# {one_line}", "#", f"#{one_line}\\", BASE.replace("TRAILING", one_line)]
    ).replace("AFTER", one_line)
    program = dsl.parse(text, "payload.bnn")
    outputs = compile_all(program)
    assert_safe(program, outputs)
    assert program.networks[0].doc is not None
    remember(f"comment-{index}", program)


@pytest.mark.parametrize("index", range(len(PAYLOADS)))
def test_payloads_in_strings_are_rejected(index: int) -> None:
    literal = (
        PAYLOADS[index]
        .replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    network = "network Main{} {{{{ input x: Tensor[B, {}] {} forward {{{{ {} }}}} }}}}"
    for template in (
        network.format("", "4", "", 'return dropout(x, p="{S}")'),
        network.format('(w: int = "{S}")', "w", "", "return x"),
        network.format("", '"{S}"', "", "return x"),
        network.format(
            "", "4", 'layers {{ f = Linear(4, 4, use_bias="{S}") }}', "return f(x)"
        ),
        'from "{S}" import A\n'
        + network.format("", "4", "layers {{ a = A() }}", "return a(x)"),
    ):
        with pytest.raises(CompileError) as caught:
            compile_all(dsl.parse(template.format(S=literal), "strings.bnn"))
        assert_good_rejection(caught.value)


def test_payloads_in_file_names_and_import_paths(tmp_path: Path) -> None:
    block = (
        "network Block {\n    input x: Tensor[B, 4]\n"
        "    layers { fc = Linear(4, 4) }\n    forward { return fc(x) }\n}\n"
    )
    main = (
        "network Main {{\n    input x: Tensor[B, 4]\n    layers {{ b = Block() }}\n"
        "    forward {{ return b(x) }}\n}}\n"
    )
    for index, payload in enumerate(PAYLOADS):
        directory = tmp_path / f"case{index}"
        directory.mkdir()
        name = payload.replace("/", "_") + ".bnn"  # any byte but "/" and NUL
        (directory / name).write_text(block, encoding="utf-8")
        literal = name.replace("\\", "\\\\").replace('"', '\\"')
        literal = literal.replace("\n", "\\n").replace("\r", "\\r")
        spec = directory / (payload.replace("/", "_") + "main.bnn")
        spec.write_text(f'from "{literal}" import Block\n' + main.format(), "utf-8")
        program = dsl.load(spec)
        outputs = compile_all(program)
        assert_safe(program, outputs)
        remember(f"path-{index}", program)


def _hostile_ir() -> ir.Program:
    """Free-text IR fields (docs, comments, paths, spans) holding payloads."""
    text = "\n".join(PAYLOADS)
    program = dsl.parse(BASE.replace("TRAILING", "x").replace("AFTER", "y"))
    data = program.model_dump()
    data["source"] = text + ".bnn"
    data["networks"][0]["doc"] = text
    data["networks"][0]["layers"][0]["comment"] = text
    data["networks"][0]["span"]["file"] = text
    data["networks"][0]["layers"][0]["span"]["file"] = text
    return ir.Program.model_validate(data)


def test_payloads_in_ir_free_text_are_escaped() -> None:
    program = _hostile_ir()
    outputs = compile_all(program)
    assert_safe(program, outputs)
    remember("ir-free-text", program)


# --- hostile IR: any string or number field replaced ----------------------------------


@st.composite
def hostile_irs(draw: st.DrawFn) -> str | None:
    """A generated program's IR, as JSON, with string and number fields replaced."""
    chooser = specgen.DrawChooser(draw)
    spec = specgen.valid_spec(chooser)
    try:
        data = dsl.parse(spec.text).model_dump(mode="json")
    except CompileError:
        return None
    return json.dumps(specgen.mutate_ir(chooser, data))


@settings(FUZZ, max_examples=200)
@given(hostile_irs())
def test_hostile_irs_are_rejected_or_safe(text: str | None) -> None:
    if text is None:
        return
    verdict = check_ir(text)  # as `bnnc compile model.json` reads it
    assert verdict.ok, verdict.report()
    if verdict.outcome == "compiled":
        assert verdict.program is not None
        assert_safe(verdict.program, verdict.outputs)


# --- random valid IRs: generated code imports and runs --------------------------------


@functools.lru_cache(maxsize=1)
def _torch() -> object:
    import torch

    return torch


@settings(FUZZ, max_examples=40)
@given(st.data())
def test_random_valid_programs_import_and_run(data: st.DataObject) -> None:
    """Torch: import, build and run a forward pass. JAX: import (building a
    Flax model compiles every parameter initialiser, about a second each; see
    the next test)."""
    spec = specgen.valid_spec(specgen.DrawChooser(data.draw))
    if not spec.expect_valid:
        return
    program = dsl.parse(spec.text)
    outputs = compile_all(program)
    assert_safe(program, outputs)
    torch = _torch()
    module = bnnc.compiler.api.load_generated(outputs["torch"], name="bnnc_fuzz_torch")
    model = getattr(module, spec.main)()
    inputs = [
        torch.zeros(shape, dtype=getattr(torch, dtype)) for shape, dtype in spec.inputs
    ]
    model.eval()
    with torch.no_grad():
        assert model(*inputs) is not None
    if HAS_JAX:
        module = bnnc.compiler.api.load_generated(outputs["jax"], name="bnnc_fuzz_jax")
        assert isinstance(getattr(module, spec.main), type)


@pytest.mark.skipif(not HAS_JAX, reason="JAX/Flax not installed")
def test_generated_jax_programs_build_and_run() -> None:
    import jax.numpy as jnp

    for seed in (1, 5):  # a vector network with a head; convolutions and a head
        spec = specgen.valid_spec(specgen.RandomChooser(random.Random(seed)))
        program = dsl.parse(spec.text)
        source = bnnc.compile(program, backend="jax")
        assert not audit(source, program)
        module = bnnc.compiler.api.load_generated(source, name="bnnc_fuzz_jax_run")
        model = getattr(module, spec.main)()
        inputs = [
            jnp.zeros(shape, dtype=jnp.int32 if dtype == "int64" else jnp.float32)
            for shape, dtype in spec.inputs
        ]
        assert model(*inputs) is not None


# --- no generated module runs user text -----------------------------------------------

_RUNNER = """
import importlib.util, inspect, sys, traceback
failures = 0
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("m" + str(abs(hash(path))), path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        for name, cls in list(vars(module).items()):
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            if issubclass(cls, tuple):
                continue  # an output record
            parameters = inspect.signature(cls).parameters.values()
            if all(p.default is not p.empty for p in parameters):
                cls()
    except Exception:
        failures += 1
        print(path, file=sys.stderr)
        traceback.print_exc()
sys.exit(1 if failures else 0)
"""


def _run_modules(directory: Path, modules: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, *map(str, modules)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sentinel_detects_a_module_that_runs_the_payload(tmp_path: Path) -> None:
    """Positive control: the runner would notice a payload that ran."""
    module = tmp_path / "evil.py"
    module.write_text(PAYLOADS[1] + "\n", encoding="utf-8")
    result = _run_modules(tmp_path, [module])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / SENTINEL).exists()


def test_no_generated_module_runs_user_text(tmp_path: Path) -> None:
    programs = dict(_COMPILED)
    if len(programs) < 10:  # run alone: collect the hostile programs again
        for path in CORPUS:
            text = path.read_bytes().decode("utf-8")
            if text.startswith("# expect: ok"):
                programs[path.stem] = dsl.parse(text, path.name)
        programs["ir-free-text"] = _hostile_ir()
    for index, payload in enumerate(PAYLOADS):
        chooser = specgen.RandomChooser(random.Random(index))
        text = f"# {payload.replace(chr(10), ' ')}\n" + specgen.valid_spec(chooser).text
        programs[f"generated-{index}"] = dsl.parse(text, payload + ".bnn")
    backends = ["torch", "jax"] if HAS_JAX else ["torch"]
    for backend in backends:
        directory = tmp_path / backend
        directory.mkdir()
        modules = []
        for index, program in enumerate(programs.values()):
            try:
                source = bnnc.compile(program, backend=backend)
            except CompileError:
                continue  # e.g. a generated spec with an unmodelled op
            module = directory / f"generated_{index}.py"
            module.write_text(source, encoding="utf-8")
            modules.append(module)
        assert len(modules) >= 10
        result = _run_modules(directory, modules)
        assert result.returncode == 0, result.stderr[-3000:]
        assert not (directory / SENTINEL).exists(), f"{backend}: a payload ran"
        assert not (tmp_path / SENTINEL).exists()
