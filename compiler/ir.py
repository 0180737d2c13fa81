"""The bnnc intermediate representation (IR).

The IR is the contract between front ends (the ``.bnn`` language in
:mod:`bnnc.dsl`, or Python code) and the checker and backends. Every node is a
frozen Pydantic v2 model; a whole :class:`Program` round-trips exactly through
JSON (``model_dump_json`` / ``model_validate_json``) and exports a JSON Schema
(:func:`json_schema`). Every node carries an optional :class:`Span` that
diagnostics point at.

Building a network in Python::

    from bnnc.compiler import ir

    x, hidden = ir.Name(id="x"), ir.Name(id="hidden")
    net = ir.Network(
        name="Regressor",
        params=[ir.Param(name="hidden", type="int", default=ir.Int(value=32))],
        inputs=[ir.Input(name="x", dims=[ir.Name(id="B"), ir.Int(value=1)])],
        layers=[
            ir.Layer(name="fc1", op="Linear", args=[ir.Int(value=1), hidden]),
            ir.Layer(name="fc2", op="Linear", args=[ir.Auto(), ir.Int(value=1)]),
        ],
        body=[
            ir.Assign(target="h", value=ir.call("relu", ir.call("fc1", x))),
            ir.Return(outputs=[ir.Output(value=ir.call("fc2", ir.Name(id="h")))]),
        ],
    )
    program = ir.Program(networks=[net])
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

IR_VERSION = "1"

BinaryOperator = Literal["+", "-", "*", "//", "/", "%"]
ParamType = Literal["int", "float", "bool"]
DType = Literal["float32", "float64", "int64", "int32", "bool"]
DistFamily = Literal["Gaussian"]


class Node(BaseModel):
    """Base of every IR node: frozen, strict about unknown fields."""

    # No inf/NaN: JSON has no such numbers (Pydantic would write null, which
    # then does not read back), and no size, setting or option may be one.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Span(Node):
    """A region of source text; lines and columns are 1-based, ends exclusive."""

    file: str | None = None
    line: int
    column: int
    end_line: int
    end_column: int


class _Located(Node):
    span: Span | None = Field(default=None, description="Where the node came from.")


# --------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------


class Int(_Located):
    """An integer literal."""

    kind: Literal["int"] = "int"
    value: int


class Float(_Located):
    """A floating-point literal."""

    kind: Literal["float"] = "float"
    value: float


class Bool(_Located):
    """``true`` or ``false``."""

    kind: Literal["bool"] = "bool"
    value: bool


class Str(_Located):
    """A string literal (only accepted where an op argument is a string)."""

    kind: Literal["str"] = "str"
    value: str


class NoneLit(_Located):
    """``none``: an absent optional argument."""

    kind: Literal["none"] = "none"


class Auto(_Located):
    """``auto``: a size that shape inference fills in."""

    kind: Literal["auto"] = "auto"


class Name(_Located):
    """A reference to a network parameter, a symbolic dimension or a value."""

    kind: Literal["name"] = "name"
    id: str


class Neg(_Located):
    """Unary minus."""

    kind: Literal["neg"] = "neg"
    operand: Expr


class BinOp(_Located):
    """Binary arithmetic on compile-time numbers (``+ - * // / %``)."""

    kind: Literal["binop"] = "binop"
    op: BinaryOperator
    left: Expr
    right: Expr


class Tuple(_Located):
    """A tuple literal such as ``(3, 3)``."""

    kind: Literal["tuple"] = "tuple"
    items: list[Expr]


class Attribute(_Located):
    """``value.name``: one named output of a sub-network's result."""

    kind: Literal["attribute"] = "attribute"
    value: Expr
    name: str
    name_span: Span | None = None


class Keyword(_Located):
    """A keyword argument ``name=value``."""

    name: str
    value: Expr


class Call(_Located):
    """A call of a layer (by its name), a network or a functional op."""

    kind: Literal["call"] = "call"
    func: str
    args: list[Expr] = Field(default_factory=list)
    kwargs: list[Keyword] = Field(default_factory=list)


Expr = Annotated[
    Int
    | Float
    | Bool
    | Str
    | NoneLit
    | Auto
    | Name
    | Neg
    | BinOp
    | Tuple
    | Attribute
    | Call,
    Field(discriminator="kind"),
]

# Complete the recursive expression models now: models defined below then reuse
# their schemas instead of generating the whole expression tree again.
for _model in (Neg, BinOp, Tuple, Attribute, Keyword, Call):
    _model.model_rebuild()


def call(func: str, *args: Expr, **kwargs: Expr) -> Call:
    """Shorthand for building a :class:`Call` in Python code."""
    return Call(
        func=func,
        args=list(args),
        kwargs=[Keyword(name=k, value=v) for k, v in kwargs.items()],
    )


# --------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------


class Distribution(_Located):
    """A prior or variational-posterior setting such as ``Gaussian(std=1.0)``.

    Priors take ``mu`` and ``std``; posteriors take ``mu_init`` and ``rho_init``.
    Unset fields inherit from the enclosing network, then the file, then the
    runtime defaults.
    """

    family: DistFamily = "Gaussian"
    params: dict[str, float] = Field(default_factory=dict)


class Estimator(_Located):
    """A gradient estimator choice such as ``estimator=flipout``.

    ``name`` is one of ``reparameterization`` (the runtime default),
    ``local_reparameterization`` and ``flipout``; the checker validates it
    against the layer's op (``Op.estimators`` in the registry). On a
    :class:`Network` or :class:`Program` it is the default for the layers
    below that support it.
    """

    name: str


class Param(_Located):
    """A typed network parameter, optionally with a default."""

    name: str
    type: ParamType = "int"
    default: Expr | None = None


class Input(_Located):
    """A network input: dims are integers, parameter expressions or symbols."""

    name: str
    dims: list[Expr]
    dtype: DType = "float32"


class Layer(_Located):
    """A layer instance: a registry op or another network, Bayesian or fixed."""

    name: str
    op: str
    args: list[Expr] = Field(default_factory=list)
    kwargs: list[Keyword] = Field(default_factory=list)
    bayesian: bool = True
    prior: Distribution | None = None
    posterior: Distribution | None = None
    estimator: Estimator | None = None
    comment: str | None = None


class Assign(_Located):
    """``target = value`` inside ``forward``."""

    kind: Literal["assign"] = "assign"
    target: str
    value: Expr


class Output(_Located):
    """One returned value; ``name`` is set for named outputs."""

    name: str | None = None
    value: Expr


class Return(_Located):
    """``return`` with one unnamed value or several named values."""

    kind: Literal["return"] = "return"
    outputs: list[Output]


Statement = Annotated[Assign | Return, Field(discriminator="kind")]


class Network(_Located):
    """A network: parameters, inputs, layers and a forward body."""

    name: str
    doc: str | None = None
    params: list[Param] = Field(default_factory=list)
    inputs: list[Input] = Field(default_factory=list)
    layers: list[Layer] = Field(default_factory=list)
    body: list[Statement] = Field(default_factory=list)
    prior: Distribution | None = None
    posterior: Distribution | None = None
    estimator: Estimator | None = None
    sequential: bool = False


class Import(_Located):
    """``from "path.bnn" import A, B``; ``program`` is filled in by the loader."""

    path: str
    names: list[str]
    name_spans: list[Span | None] = Field(default_factory=list)
    program: Program | None = None


class Program(_Located):
    """One ``.bnn`` file (or one Python-built unit) and what it imports."""

    ir_version: Literal["1"] = IR_VERSION
    source: str | None = Field(default=None, description="Path of the source file.")
    source_sha256: str | None = None
    prior: Distribution | None = None
    posterior: Distribution | None = None
    estimator: Estimator | None = None
    imports: list[Import] = Field(default_factory=list)
    networks: list[Network] = Field(default_factory=list)

    def network(self, name: str) -> Network | None:
        """The network called ``name`` defined in this program, if any."""
        return next((n for n in self.networks if n.name == name), None)


for _model in (Import, Program):
    _model.model_rebuild()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Program`, the IR's root."""
    schema = Program.model_json_schema()
    schema["$id"] = f"https://bnnc.dev/schema/ir-v{IR_VERSION}.json"
    schema["title"] = "bnnc IR"
    return schema


def to_json(program: Program, *, indent: int | None = 2) -> str:
    """Serialise a program; ``from_json(to_json(p)) == p`` holds exactly."""
    return program.model_dump_json(indent=indent, exclude_defaults=False)


def from_json(text: str | bytes) -> Program:
    """Parse and validate a program from JSON."""
    return Program.model_validate_json(text)


def schema_json() -> str:
    """The JSON Schema as deterministic, indented text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True)


def without_locations(program: Program) -> Program:
    """A copy of ``program`` without spans, source paths or source hashes.

    Two programs describing the same networks (say, one parsed from a ``.bnn``
    file and one built in Python) are equal after this, and generate identical
    code.
    """
    return Program.model_validate(_strip(program.model_dump()))


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        cleared = {
            "span": None,
            "name_span": None,
            "source": None,
            "source_sha256": None,
        }
        return {
            key: cleared[key]
            if key in cleared
            else [None] * len(item)
            if key == "name_spans"
            else _strip(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value
