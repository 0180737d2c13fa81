"""The operator registry: every layer and functional op bnnc knows.

One entry per op declares its arguments (kinds, defaults, constraints), which
arguments may be ``auto`` and how they are inferred, and its shape rule. The
checker and every backend are driven by this table; a backend supplies one
emitter per entry, and ``tests/compiler/test_registry.py`` fails when a backend
lacks one. This module imports neither torch nor jax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bnnc.compiler.symbolic import Size
from bnnc.compiler.types import DistType, TensorType, Unknown

ArgKind = Literal[
    "size",  # a positive integer, possibly depending on parameters
    "int",  # any integer (e.g. a padding index)
    "int_or_pair",  # an integer or a pair of integers (2-d kernel sizes)
    "float",
    "bool",
    "dim",  # a tensor axis, negative allowed
    "shape",  # a tuple of sizes, one of them may be -1
]
OpKind = Literal["layer", "function", "head"]

#: Gradient estimators of Bayesian layers, the runtime's default first: one
#: weight sample per call; pre-activations sampled from their Gaussian
#: (Kingma et al., 2015); one shared perturbation with random sign flips per
#: example (Wen et al., 2018).
ESTIMATORS: tuple[str, ...] = (
    "reparameterization",
    "local_reparameterization",
    "flipout",
)
DEFAULT_ESTIMATOR = ESTIMATORS[0]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Arg:
    """One argument of an op."""

    name: str
    kind: ArgKind
    default: object = REQUIRED
    optional: bool = False  # `none` is accepted
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        """Whether the argument has no default."""
        return self.default is REQUIRED


class ShapeError(Exception):
    """Raised by a rule; the checker turns it into a located diagnostic."""

    def __init__(
        self, code: str, message: str, *hints: str, arg: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hints = hints
        self.arg = arg


@dataclass(frozen=True)
class Bound:
    """An op's evaluated arguments and the parameter values known for checks."""

    values: Mapping[str, object]
    known_values: Mapping[str, int] = field(default_factory=dict)

    def size(self, name: str) -> Size:
        """A size argument."""
        value = self.values[name]
        assert isinstance(value, Size), (name, value)
        return value

    def known(self, value: str | Size) -> int | None:
        """The integer value of an argument or size, if it can be computed."""
        size = self.size(value) if isinstance(value, str) else value
        return size.evaluate(self.known_values)

    def pair(self, name: str) -> tuple[Size, Size]:
        """An int-or-pair argument as a pair."""
        value = self.values[name]
        if isinstance(value, tuple):
            return value[0], value[1]
        assert isinstance(value, Size)
        return value, value

    def get(self, name: str) -> object:
        """Any argument's value (Unknown when it depends on unset parameters)."""
        return self.values[name]


Validate = Callable[[Bound], None]
Infer = Callable[[Bound, Sequence[TensorType]], TensorType]
AutoRule = Callable[[Sequence[TensorType]], Size]
SequentialInput = Callable[[Bound], tuple[list[str | Size], str]]


@dataclass(frozen=True)
class Op:
    """A registry entry."""

    name: str
    kind: OpKind
    args: tuple[Arg, ...]
    infer: Infer
    summary: str
    validate: Validate | None = None
    auto: Mapping[str, AutoRule] = field(default_factory=dict)
    tensor_inputs: int | None = 1  # None: one or more (variadic)
    sequential_input: SequentialInput | None = None
    bayesian: bool = False  # layers that hold random weights by default
    # Gradient estimators the layer accepts (`estimator=`); the first is the
    # default. Empty for ops without random weights.
    estimators: tuple[str, ...] = ()

    def arg(self, name: str) -> Arg | None:
        """The argument called ``name``."""
        return next((a for a in self.args if a.name == name), None)


REGISTRY: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add an op to the registry."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name} registered twice")
    REGISTRY[op.name] = op
    return op


def layers() -> list[Op]:
    """Every layer op, in registry order."""
    return [op for op in REGISTRY.values() if op.kind == "layer"]


def heads() -> list[Op]:
    """Every output head, in registry order."""
    return [op for op in REGISTRY.values() if op.kind == "head"]


def functions() -> list[Op]:
    """Every functional op, in registry order."""
    return [op for op in REGISTRY.values() if op.kind == "function"]


# --------------------------------------------------------------------------------------
# Shared shape helpers
# --------------------------------------------------------------------------------------


def expect_rank(
    x: TensorType, ranks: Sequence[int], what: str, layout: str = ""
) -> None:
    """Fail unless ``x`` has one of ``ranks`` dimensions."""
    if x.rank not in ranks:
        wanted = " or ".join(str(r) for r in ranks)
        detail = f" {layout}" if layout else ""
        raise ShapeError(
            "BNN401",
            f"{what} expects a {wanted}-d input{detail}, got {x.rank}-d {x.describe()}",
        )


def expect_min_rank(x: TensorType, rank: int, what: str) -> None:
    """Fail unless ``x`` has at least ``rank`` dimensions."""
    if x.rank < rank:
        raise ShapeError(
            "BNN401",
            f"{what} expects an input with at least {rank} dimension(s), got "
            f"{x.rank}-d {x.describe()}",
        )


def expect_float(x: TensorType, what: str) -> None:
    """Fail unless ``x`` holds floating-point values."""
    if not x.is_float:
        raise ShapeError(
            "BNN309",
            f"{what} expects a float tensor, got {x.dtype} {x.shape_text()}",
            "token indices go through an Embedding or LSTM layer first",
        )


def expect_int(x: TensorType, what: str) -> None:
    """Fail unless ``x`` holds integer indices."""
    if x.is_float or x.dtype == "bool":
        raise ShapeError(
            "BNN309",
            f"{what} expects integer token indices, got {x.dtype} {x.shape_text()}",
            "declare token inputs as `Tensor[B, T, dtype=int64]`",
        )


def same_size(bound: Bound, a: Size, b: Size) -> bool | None:
    """True/False when decidable, None when it depends on unknown values."""
    if a == b:
        return True
    ka, kb = bound.known(a), bound.known(b)
    if ka is None or kb is None:
        return None
    return ka == kb


def expect_size(
    bound: Bound, actual: Size, expected: Size, message: str, *hints: str
) -> None:
    """Fail when two sizes are known to differ."""
    if same_size(bound, actual, expected) is False:
        raise ShapeError(
            "BNN402",
            f"{message}: expected {_show(bound, expected)}, got {_show(bound, actual)}",
            *hints,
        )


def _show(bound: Bound, size: Size) -> str:
    known = bound.known(size)
    text = str(size)
    return text if known is None or text == str(known) else f"{text} (= {known})"


def normalise_axis(x: TensorType, axis: int, what: str) -> int:
    """An axis in ``range(rank)``; negative axes count from the end."""
    if not -x.rank <= axis < x.rank:
        raise ShapeError(
            "BNN406",
            f"{what}: dim {axis} is out of range for a {x.rank}-d input {x.describe()}",
            arg="dim",
        )
    return axis % x.rank


def window_output(
    bound: Bound,
    length: Size,
    kernel: Size,
    stride: Size,
    padding: Size,
    dilation: Size | int,
    what: str,
) -> Size:
    """Output length of a convolution or pooling window along one axis."""
    span = Size.of(dilation) * (kernel - 1) + 1
    padded = length + padding * 2
    known_padded, known_span = bound.known(padded), bound.known(span)
    if (
        known_padded is not None
        and known_span is not None
        and known_span > known_padded
    ):
        raise ShapeError(
            "BNN404",
            f"{what}: kernel covers {known_span} positions but the padded input "
            f"has only {known_padded}",
            "use a smaller kernel_size or dilation, or more padding",
            arg="kernel_size",
        )
    return (padded - span) // stride + 1


def _unknown_or(value: object, fallback: object) -> object:
    return fallback if isinstance(value, Unknown) else value


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


def _linear_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    (x,) = inputs
    expect_min_rank(x, 1, "Linear")
    expect_float(x, "Linear")
    expect_size(
        bound,
        x.dims[-1],
        bound.size("input_size"),
        "Linear input features",
        "write `auto` as input_size to infer it from the input",
    )
    return x.with_dims((*x.dims[:-1], bound.size("output_size")))


register(
    Op(
        name="Linear",
        kind="layer",
        summary="Fully connected layer: y = x W^T + b over the last axis.",
        args=(
            Arg("input_size", "size", minimum=1, doc="input features (`auto` ok)"),
            Arg("output_size", "size", minimum=1, doc="output features"),
            Arg("use_bias", "bool", default=True, doc="add a bias vector"),
        ),
        infer=_linear_infer,
        auto={"input_size": lambda inputs: inputs[0].dims[-1]},
        sequential_input=lambda b: (["B", b.size("input_size")], "float32"),
        bayesian=True,
        estimators=ESTIMATORS,
    )
)


def _conv_args(pairs: bool) -> tuple[Arg, ...]:
    kind: ArgKind = "int_or_pair" if pairs else "size"
    return (
        Arg("input_channels", "size", minimum=1, doc="input channels (`auto` ok)"),
        Arg("output_channels", "size", minimum=1, doc="output channels"),
        Arg("kernel_size", kind, minimum=1, doc="kernel size"),
        Arg("stride", kind, default=1, minimum=1, doc="stride"),
        Arg("padding", kind, default=0, minimum=0, doc="zero padding on each side"),
        Arg("dilation", kind, default=1, minimum=1, doc="kernel dilation"),
        Arg("groups", "size", default=1, minimum=1, doc="blocked connections"),
        Arg("use_bias", "bool", default=True, doc="add a bias per channel"),
    )


def _conv_validate(bound: Bound) -> None:
    groups = bound.known("groups")
    if groups is None:
        return
    for name in ("input_channels", "output_channels"):
        channels = bound.known(name)
        if channels is not None and channels % groups:
            raise ShapeError(
                "BNN303",
                f"{name} ({channels}) must be divisible by groups ({groups})",
                arg=name,
            )


def _conv_infer(spatial: int) -> Infer:
    what = f"Conv{spatial}d"
    layout = "[N, C, L]" if spatial == 1 else "[N, C, H, W]"

    def infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_rank(x, [spatial + 2], what, layout)
        expect_float(x, what)
        expect_size(
            bound,
            x.dims[1],
            bound.size("input_channels"),
            f"{what} input channels",
            "write `auto` as input_channels to infer it from the input",
        )
        if spatial == 1:
            params = [
                (
                    bound.size("kernel_size"),
                    bound.size("stride"),
                    bound.size("padding"),
                    bound.size("dilation"),
                )
            ]
        else:
            params = list(
                zip(
                    bound.pair("kernel_size"),
                    bound.pair("stride"),
                    bound.pair("padding"),
                    bound.pair("dilation"),
                    strict=True,
                )
            )
        out = [
            window_output(bound, length, k, s, p, d, what)
            for length, (k, s, p, d) in zip(x.dims[2:], params, strict=True)
        ]
        return x.with_dims((x.dims[0], bound.size("output_channels"), *out))

    return infer


for _spatial in (1, 2):
    register(
        Op(
            name=f"Conv{_spatial}d",
            kind="layer",
            summary=f"{_spatial}-d convolution over "
            f"[N, C, {'L' if _spatial == 1 else 'H, W'}].",
            args=_conv_args(pairs=_spatial == 2),
            infer=_conv_infer(_spatial),
            validate=_conv_validate,
            auto={"input_channels": lambda inputs: inputs[0].dims[1]},
            sequential_input=(
                (lambda b: (["B", b.size("input_channels"), "L"], "float32"))
                if _spatial == 1
                else (lambda b: (["B", b.size("input_channels"), "H", "W"], "float32"))
            ),
            bayesian=True,
            estimators=ESTIMATORS,
        )
    )


def _padding_idx_validate(bound: Bound) -> None:
    index = bound.get("padding_idx")
    vocabulary = bound.known("num_embeddings")
    if isinstance(index, Size) and vocabulary is not None:
        value = bound.known(index)
        if value is not None and not -vocabulary <= value < vocabulary:
            raise ShapeError(
                "BNN302",
                f"padding_idx {value} is outside the vocabulary of {vocabulary}",
                arg="padding_idx",
            )


_EMBEDDING_OPTIONS = (
    Arg("padding_idx", "int", default=None, optional=True, doc="index mapped to 0"),
    Arg("max_norm", "float", default=None, optional=True, minimum=0.0, doc="renorm"),
    Arg("norm_type", "float", default=2.0, minimum=0.0, doc="p of the max_norm norm"),
    Arg("scale_grad_by_freq", "bool", default=False, doc="kept for API parity"),
)


def _embedding_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    (x,) = inputs
    expect_int(x, "Embedding")
    return TensorType((*x.dims, bound.size("embeddings_dim")), "float32")


register(
    Op(
        name="Embedding",
        kind="layer",
        summary="Lookup table from integer token ids to vectors.",
        args=(
            Arg("num_embeddings", "size", minimum=1, doc="vocabulary size"),
            Arg("embeddings_dim", "size", minimum=1, doc="vector size"),
            *_EMBEDDING_OPTIONS,
        ),
        infer=_embedding_infer,
        validate=_padding_idx_validate,
        sequential_input=lambda b: (["B", "T"], "int64"),
        bayesian=True,
        estimators=(DEFAULT_ESTIMATOR,),
    )
)


def _lstm_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    (x,) = inputs
    expect_int(x, "LSTM")
    expect_rank(x, [2, 3], "LSTM", "of token ids [B, T] or [B, T, 1]")
    if x.rank == 3:
        expect_size(bound, x.dims[2], Size.of(1), "LSTM token-id trailing axis")
    return TensorType((x.dims[0], bound.size("output_size")), "float32")


register(
    Op(
        name="LSTM",
        kind="layer",
        summary="Embedding + LSTM over token ids + linear read-out of the last state.",
        args=(
            Arg("num_embeddings", "size", minimum=1, doc="vocabulary size"),
            Arg("embeddings_dim", "size", minimum=1, doc="token vector size"),
            Arg("hidden_size", "size", minimum=1, doc="LSTM state size"),
            Arg("output_size", "size", minimum=1, doc="read-out size"),
            *_EMBEDDING_OPTIONS,
        ),
        infer=_lstm_infer,
        validate=_padding_idx_validate,
        sequential_input=lambda b: (["B", "T"], "int64"),
        bayesian=True,
        estimators=(DEFAULT_ESTIMATOR,),
    )
)


# --------------------------------------------------------------------------------------
# Functional ops
# --------------------------------------------------------------------------------------


def _elementwise(what: str) -> Infer:
    def infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_float(x, what)
        return x

    return infer


_ACTIVATIONS: dict[str, tuple[str, tuple[Arg, ...]]] = {
    "relu": ("Rectified linear unit, max(x, 0).", ()),
    "gelu": ("Gaussian error linear unit.", ()),
    "tanh": ("Hyperbolic tangent.", ()),
    "sigmoid": ("Logistic sigmoid.", ()),
    "softplus": ("log(1 + exp(x)).", ()),
    "silu": ("x * sigmoid(x) (swish).", ()),
    "elu": ("Exponential linear unit.", (Arg("alpha", "float", default=1.0),)),
    "leaky_relu": (
        "Leaky ReLU.",
        (Arg("negative_slope", "float", default=0.01, minimum=0.0),),
    ),
}
for _name, (_summary, _args) in _ACTIVATIONS.items():
    register(
        Op(
            name=_name,
            kind="function",
            summary=_summary,
            args=_args,
            infer=_elementwise(_name),
        )
    )


def _softmax_infer(what: str) -> Infer:
    def infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_float(x, what)
        normalise_axis(x, _int_arg(bound, "dim"), what)
        return x

    return infer


def _int_arg(bound: Bound, name: str) -> int:
    value = bound.get(name)
    assert isinstance(value, int), (name, value)
    return value


for _name in ("softmax", "log_softmax"):
    register(
        Op(
            name=_name,
            kind="function",
            summary=f"{_name.replace('_', ' ').capitalize()} along `dim`.",
            args=(Arg("dim", "dim", default=-1),),
            infer=_softmax_infer(_name),
        )
    )


def _flatten_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    (x,) = inputs
    start = normalise_axis(x, _int_arg(bound, "start_dim"), "flatten")
    end = normalise_axis(x, _int_arg(bound, "end_dim"), "flatten")
    if start > end:
        raise ShapeError("BNN406", f"flatten: start_dim {start} is after end_dim {end}")
    merged = Size.of(1)
    for d in x.dims[start : end + 1]:
        merged = merged * d
    return x.with_dims((*x.dims[:start], merged, *x.dims[end + 1 :]))


register(
    Op(
        name="flatten",
        kind="function",
        summary="Merge axes start_dim..end_dim into one (default: all but batch).",
        args=(Arg("start_dim", "dim", default=1), Arg("end_dim", "dim", default=-1)),
        infer=_flatten_infer,
    )
)


def _reshape_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    (x,) = inputs
    shape = bound.get("shape")
    assert isinstance(shape, tuple)
    total = Size.of(1)
    for d in x.dims[1:]:
        total = total * d
    wildcard = [i for i, s in enumerate(shape) if bound.known(s) == -1]
    if len(wildcard) > 1:
        raise ShapeError("BNN407", "reshape: at most one size may be -1", arg="shape")
    product = Size.of(1)
    for i, s in enumerate(shape):
        if i not in wildcard:
            product = product * s
    dims = list(shape)
    known_total, known_product = bound.known(total), bound.known(product)
    if wildcard:
        if (
            known_total is not None
            and known_product is not None
            and (known_product == 0 or known_total % known_product)
        ):
            raise ShapeError(
                "BNN407",
                f"reshape: {known_total} values per example cannot be split into "
                f"blocks of {known_product}",
                arg="shape",
            )
        dims[wildcard[0]] = total // product
    elif same_size(bound, total, product) is False:
        raise ShapeError(
            "BNN407",
            f"reshape: input has {_show(bound, total)} values per example, the new "
            f"shape holds {_show(bound, product)}",
            arg="shape",
        )
    return x.with_dims((x.dims[0], *dims))


register(
    Op(
        name="reshape",
        kind="function",
        summary="Reshape each example (the batch axis is kept): reshape(x, (C, H, W)).",
        args=(Arg("shape", "shape"),),
        infer=_reshape_infer,
    )
)


def _dropout_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    (x,) = inputs
    expect_float(x, "dropout")
    return x


register(
    Op(
        name="dropout",
        kind="function",
        summary="Dropout with probability p while training.",
        args=(Arg("p", "float", default=0.5, minimum=0.0, maximum=1.0),),
        infer=_dropout_infer,
    )
)


def _pool_infer(spatial: int, what: str) -> Infer:
    def infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_rank(
            x,
            [spatial + 1, spatial + 2],
            what,
            "[N, C, L]" if spatial == 1 else "[N, C, H, W]",
        )
        expect_float(x, what)
        if spatial == 1:
            kernels, paddings = [bound.size("kernel_size")], [bound.size("padding")]
            stride_value = bound.get("stride")
            strides = [kernels[0] if stride_value is None else bound.size("stride")]
        else:
            kernels, paddings = (
                list(bound.pair("kernel_size")),
                list(bound.pair("padding")),
            )
            strides = (
                kernels if bound.get("stride") is None else list(bound.pair("stride"))
            )
        for k, p in zip(kernels, paddings, strict=True):
            kk, kp = bound.known(k), bound.known(p)
            if kk is not None and kp is not None and 2 * kp > kk:
                raise ShapeError(
                    "BNN303",
                    f"{what}: padding ({kp}) must be at most half the kernel size "
                    f"({kk})",
                    arg="padding",
                )
        lead = x.rank - spatial
        out = [
            window_output(bound, length, k, s, p, 1, what)
            for length, k, s, p in zip(
                x.dims[lead:], kernels, strides, paddings, strict=True
            )
        ]
        return x.with_dims((*x.dims[:lead], *out))

    return infer


for _spatial in (1, 2):
    for _mode in ("max", "avg"):
        _kind: ArgKind = "size" if _spatial == 1 else "int_or_pair"
        register(
            Op(
                name=f"{_mode}_pool{_spatial}d",
                kind="function",
                summary=f"{'Max' if _mode == 'max' else 'Average'} pooling over "
                f"{_spatial}-d windows (stride defaults to kernel_size).",
                args=(
                    Arg("kernel_size", _kind, minimum=1),
                    Arg("stride", _kind, default=None, optional=True, minimum=1),
                    Arg("padding", _kind, default=0, minimum=0),
                ),
                infer=_pool_infer(_spatial, f"{_mode}_pool{_spatial}d"),
            )
        )


def _norm_infer(what: str, min_rank: int) -> Infer:
    def infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_min_rank(x, min_rank, what)
        expect_float(x, what)
        return x

    return infer


register(
    Op(
        name="layer_norm",
        kind="function",
        summary="Normalise over the last axis to zero mean, unit variance.",
        args=(Arg("eps", "float", default=1e-5, minimum=0.0),),
        infer=_norm_infer("layer_norm", 1),
    )
)
register(
    Op(
        name="batch_norm",
        kind="function",
        summary="Normalise each channel (axis 1) with the current batch's statistics.",
        args=(Arg("eps", "float", default=1e-5, minimum=0.0),),
        infer=_norm_infer("batch_norm", 2),
    )
)


def _concat_infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
    first = inputs[0]
    axis = normalise_axis(first, _int_arg(bound, "dim"), "concat")
    total = Size.of(0)
    for index, x in enumerate(inputs):
        if x.rank != first.rank:
            raise ShapeError(
                "BNN405",
                f"concat: input {index + 1} is {x.rank}-d {x.describe()}, input 1 is "
                f"{first.rank}-d {first.describe()}",
            )
        if x.dtype != first.dtype:
            raise ShapeError(
                "BNN309", f"concat: dtypes differ ({first.dtype}, {x.dtype})"
            )
        for d, (a, b) in enumerate(zip(first.dims, x.dims, strict=True)):
            if d != axis and same_size(bound, a, b) is False:
                raise ShapeError(
                    "BNN405",
                    f"concat along dim {axis}: inputs differ in dim {d} "
                    f"({first.describe()} vs {x.describe()})",
                )
        total = total + x.dims[axis]
    dims = list(first.dims)
    dims[axis] = total
    return first.with_dims(dims)


register(
    Op(
        name="concat",
        kind="function",
        summary="Concatenate tensors along `dim` (default 1, the feature axis).",
        args=(Arg("dim", "dim", default=1),),
        infer=_concat_infer,
        tensor_inputs=None,
    )
)


def broadcast(bound: Bound, a: TensorType, b: TensorType, what: str) -> TensorType:
    """Numpy-style broadcasting of two tensor types."""
    if a.dtype != b.dtype:
        raise ShapeError("BNN309", f"{what}: dtypes differ ({a.dtype}, {b.dtype})")
    dims: list[Size] = []
    for i in range(max(a.rank, b.rank)):
        da = a.dims[a.rank - 1 - i] if i < a.rank else Size.of(1)
        db = b.dims[b.rank - 1 - i] if i < b.rank else Size.of(1)
        if bound.known(da) == 1:
            dims.append(db)
        elif bound.known(db) == 1 or same_size(bound, da, db) is not False:
            dims.append(da)
        else:
            raise ShapeError(
                "BNN405",
                f"{what}: shapes {a.describe()} and {b.describe()} cannot be broadcast",
            )
    return a.with_dims(tuple(reversed(dims)))


register(
    Op(
        name="add",
        kind="function",
        summary="Elementwise sum with broadcasting (also written `a + b`).",
        args=(),
        infer=lambda bound, inputs: broadcast(bound, inputs[0], inputs[1], "add"),
        tensor_inputs=2,
    )
)


def _reduce_infer(what: str) -> Infer:
    def infer(bound: Bound, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_float(x, what)
        axis = normalise_axis(x, _int_arg(bound, "dim"), what)
        if bound.get("keepdim"):
            return x.with_dims((*x.dims[:axis], Size.of(1), *x.dims[axis + 1 :]))
        return x.with_dims((*x.dims[:axis], *x.dims[axis + 1 :]))

    return infer


for _name in ("mean", "sum"):
    register(
        Op(
            name=_name,
            kind="function",
            summary=f"{_name.capitalize()} over axis `dim`.",
            args=(Arg("dim", "dim"), Arg("keepdim", "bool", default=False)),
            infer=_reduce_infer(_name),
        )
    )


# --------------------------------------------------------------------------------------
# Output heads: features -> a distribution and a differentiable sample
# --------------------------------------------------------------------------------------


def head_event_size(op: Op, features: Size) -> Size:
    """The head's ``in_dim``: the sample size given the input's last dim."""
    return features // 2 if op.name == "Normal" else features


def _head_infer(kind: str) -> Infer:
    def infer(bound: Bound, inputs: Sequence[TensorType]) -> DistType:  # type: ignore[override]
        (x,) = inputs
        expect_min_rank(x, 1, kind)
        expect_float(x, kind)
        features = x.dims[-1]
        lead = x.dims[:-1]
        known = bound.known(features)
        if kind == "Normal":
            if known is not None and known % 2:
                raise ShapeError(
                    "BNN402",
                    f"Normal head needs an even number of features (mean and "
                    f"scale halves), got {known}",
                    "make the last layer output 2 * the event size",
                )
            event = features // 2
            part = x.with_dims((*lead, event))
            return DistType(kind, (("mean", part), ("std", part), ("stoch", part)))
        groups = bound.size("groups")
        known_groups = bound.known(groups)
        if known is not None and known_groups is not None and known % known_groups:
            raise ShapeError(
                "BNN303",
                f"{kind} head: {known} features cannot be split into {known_groups} "
                "groups",
                arg="groups",
            )
        grouped = x.with_dims((*lead, groups, features // groups))
        flat = x.with_dims((*lead, features))
        return DistType(
            kind, (("logits", grouped), ("probs", grouped), ("stoch", flat))
        )

    return infer


register(
    Op(
        name="Normal",
        kind="head",
        summary="Gaussian head: first half of the features is the mean, the second "
        "the scale (softplus); returns mean, std and a reparameterised sample.",
        args=(),
        infer=_head_infer("Normal"),  # type: ignore[arg-type]
    )
)
for _name, _what in (("Categorical", "one-hot"), ("Bernoulli", "binary")):
    register(
        Op(
            name=_name,
            kind="head",
            summary=f"{_name} head over `groups` groups of the features; returns "
            f"logits, probs and a straight-through {_what} sample.",
            args=(
                Arg("groups", "size", default=1, minimum=1, doc="independent groups"),
                Arg("spherical", "bool", default=False, doc="project samples"),
            ),
            infer=_head_infer(_name),  # type: ignore[arg-type]
        )
    )
