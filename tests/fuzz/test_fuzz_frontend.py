"""Property-based and mutation fuzzing of the whole front end (the short CI run).

Every input goes through parse, check and both backends; :mod:`.harness` checks
the property (compiles, or a CompileError with valid positions and codes;
nothing else escapes; at most 2 s per input; stable, parseable output; an IR
that round-trips). The runs are deterministic (``derandomize=True``) and small
enough for CI; ``bench/fuzz_long.py`` runs the same generators on 100,000+
inputs (see ``docs/robustness.md``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import specgen
from tests.fuzz.harness import check_file, check_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.bnn"))

FUZZ = settings(
    deadline=None,  # the harness measures each input itself (2 s limit)
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@st.composite
def valid_specs(draw: st.DrawFn) -> specgen.Spec:
    """Random well-formed programs (see :func:`specgen.valid_spec`)."""
    return specgen.valid_spec(specgen.DrawChooser(draw))


@st.composite
def near_valid_texts(draw: st.DrawFn) -> str:
    """A valid program with one token deleted, duplicated, swapped or replaced."""
    chooser = specgen.DrawChooser(draw)
    return specgen.near_valid(chooser, specgen.valid_spec(chooser).text)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/ so that mutated files still find their imports."""
    directory = tmp_path_factory.mktemp("fuzz")
    for example in EXAMPLES:
        shutil.copy(example, directory / example.name)
    return directory


def test_every_example_passes_the_property(workdir: Path) -> None:
    for example in EXAMPLES:
        verdict = check_file(workdir / example.name)
        assert verdict.outcome == "compiled", (example.name, verdict.report())
        assert verdict.ok, (example.name, verdict.report())


@settings(FUZZ, max_examples=100)
@given(valid_specs())
def test_generated_specs_compile(spec: specgen.Spec) -> None:
    verdict = check_text(spec.text)
    assert verdict.ok, f"{verdict.report()}\n--- spec ---\n{spec.text}"
    if spec.expect_valid:
        assert verdict.outcome == "compiled", (
            f"a valid spec was rejected: {verdict.codes}\n{spec.text}"
        )


@settings(FUZZ, max_examples=300)
@given(near_valid_texts())
def test_near_valid_specs(text: str) -> None:
    verdict = check_text(text)
    assert verdict.ok, f"{verdict.report()}\n--- spec ---\n{text}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_byte_mutations_of_examples(
    example: Path, workdir: Path, data: st.DataObject
) -> None:
    original = example.read_bytes()
    mutated = specgen.mutate_bytes(specgen.DrawChooser(data.draw), original)
    target = workdir / example.name
    target.write_bytes(mutated)
    try:
        verdict = check_file(target)
    finally:
        target.write_bytes(original)
    assert verdict.ok, f"{verdict.report()}\n--- bytes ---\n{mutated!r}"


@settings(FUZZ, max_examples=150)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(workdir: Path, data: bytes) -> None:
    target = workdir / "arbitrary.bnn"
    target.write_bytes(data)
    verdict = check_file(target)
    assert verdict.ok, f"{verdict.report()}\n--- bytes ---\n{data!r}"


# Constructs that nest; the front end must answer BNN005 (or parse), never
# overflow Python's stack.
_OPENERS = ["(", "f(", "-", "relu(", "(1, ", "x + ", "a.", "g(k="]
_CLOSERS = {"(": ")", "f(": ")", "relu(": ")", "(1, ": ")", "g(k=": ")"}


@settings(FUZZ, max_examples=30)
@given(
    st.lists(st.sampled_from(_OPENERS), min_size=1, max_size=4),
    st.integers(1, 4000),
    st.booleans(),
    st.sampled_from(["forward { return ", "layers { a = Linear(", "input x: Tensor["]),
)
def test_deep_nesting_never_recurses(
    openers: list[str], depth: int, closed: bool, context: str
) -> None:
    chain = [openers[i % len(openers)] for i in range(depth)]
    tail = "".join(_CLOSERS.get(o, "") for o in reversed(chain)) if closed else ""
    text = f"network A {{ {context}{''.join(chain)}x{tail} }} }}"
    verdict = check_text(text)
    assert verdict.ok, verdict.report()
