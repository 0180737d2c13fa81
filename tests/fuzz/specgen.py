"""Random ``.bnn`` text for fuzzing the front end.

Three sources of inputs, shared by the hypothesis tests (``tests/fuzz``) and the
long run (``bench/fuzz_long.py``):

- :func:`valid_spec` writes a random but well-formed program: parameters,
  inputs, layers drawn from the operator registry with plausible arguments,
  forward chains that track every tensor's shape (so that the spec checks),
  output heads and named outputs in ``return``, sequential networks, networks
  used as layers, priors, posteriors and estimators at every level, doc and trailing
  comments with arbitrary characters, and varied layout (``;`` or newlines,
  tabs, CRLF, trailing commas, redundant parentheses).
- :func:`near_valid` changes one token of a valid spec: deleted, duplicated,
  swapped with its neighbour or replaced by another token of the language.
- :func:`mutate_ir` replaces string and number fields of a program's IR (as
  JSON) with payloads, non-identifiers, non-finite and huge numbers.
- :func:`mutate_bytes` applies byte-level mutations (bit flips, insertions of
  interesting bytes such as a BOM, invalid UTF-8, CR, NUL, deep nesting,
  huge numbers; deletions, duplications, truncation) to any file's bytes.

Every generator takes a :class:`Chooser`, so hypothesis (:class:`DrawChooser`,
which shrinks) and plain ``random`` (:class:`RandomChooser`, fast) drive the
same code.
"""

from __future__ import annotations

import copy
import keyword
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bnnc.compiler.registry import ESTIMATORS, REGISTRY

Item = TypeVar("Item")


class Chooser(Protocol):
    """The random decisions a generator makes."""

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""

    def choice(self, options: Sequence[Item]) -> Item:
        """One of ``options``."""

    def chance(self, percent: int) -> bool:
        """True with about ``percent`` % probability (False when shrunk)."""


class RandomChooser:
    """Decisions from :class:`random.Random` (for the long run)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def choice(self, options: Sequence[Item]) -> Item:
        return options[self.rng.randrange(len(options))]

    def chance(self, percent: int) -> bool:
        return self.rng.randrange(100) < percent


class DrawChooser:
    """Decisions drawn from hypothesis (shrinks towards small, simple specs)."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        from hypothesis import strategies

        self.draw = draw
        self.st = strategies

    def integer(self, low: int, high: int) -> int:
        return self.draw(self.st.integers(low, high))

    def choice(self, options: Sequence[Item]) -> Item:
        return options[self.integer(0, len(options) - 1)]

    def chance(self, percent: int) -> bool:
        return self.integer(0, 99) >= 100 - percent  # shrinks to False


# --------------------------------------------------------------------------------------
# Valid specs
# --------------------------------------------------------------------------------------


@dataclass
class Size:
    """A size: its value under the parameter defaults and how the spec writes it.

    ``code`` is None when only ``auto`` can stand for it (a product of channels
    and spatial sizes after ``flatten``, say).
    """

    value: int
    code: str | None


@dataclass
class Tensor:
    """A value of forward: its expression and shape.

    ``kind`` is ``vec`` [B, F], ``seq`` [B, T, F], ``img1`` [B, C, L],
    ``img2`` [B, C, H, W] or ``tok`` [B, T] (int64). ``sizes`` holds F, or C
    and the spatial sizes (plain ints, always literals in the spec).
    """

    expr: str
    kind: str
    feat: Size | None = None
    spatial: tuple[int, ...] = ()
    length: int | None = None  # T for seq/tok when it is a literal
    depth: int = 0  # call nesting of ``expr``


@dataclass
class Spec:
    """A generated program and what a test needs to run it."""

    text: str
    main: str  # the network a test instantiates
    inputs: list[tuple[tuple[int, ...], str]]  # shapes (B = 2) and dtypes of main
    expect_valid: bool = True  # False when it used ops the generator does not model
    networks: list[str] = field(default_factory=list)


# Elementwise functions and their optional (keyword, plausible value) arguments.
_ELEMENTWISE: dict[str, tuple[tuple[str, str], ...]] = {
    "relu": (),
    "gelu": (),
    "tanh": (),
    "sigmoid": (),
    "softplus": (),
    "silu": (),
    "elu": (("alpha", "0.5"),),
    "leaky_relu": (("negative_slope", "0.1"),),
    "dropout": (("p", "0.25"),),
    "layer_norm": (("eps", "1e-3"),),
}
_MODELLED = {
    *_ELEMENTWISE,
    "Linear",
    "Conv1d",
    "Conv2d",
    "Embedding",
    "LSTM",
    "softmax",
    "log_softmax",
    "flatten",
    "reshape",
    "max_pool1d",
    "avg_pool1d",
    "max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "concat",
    "add",
    "mean",
    "sum",
    "Normal",
    "Categorical",
    "Bernoulli",
}

# Characters for comments: anything but a newline, hostile ones over-represented.
_COMMENT_CHARS = (
    "abcxyz XYZ019_.,:;()[]{}=+-*/%#@!?$&|^~`'\"\\"
    "\t\r\x00\x0b\x0c\x1b\x7f\x85\u00a0\u00e9\u0430\u0435\u043e\u0441"  # Cyrillic
    "\u200b\u200c\u200d\u2028\u2029\u202a\u202e\u2066\u2069\ufeff\U0001f600"
)
_COMMENT_SNIPPETS = (
    '"""',
    "'''",
    "\\",
    "__import__('os').system('touch PWNED')",
    '"); import os; ("',
    "\r__import__('os').system('touch PWNED')",
    "\u202e}; exec('x') #",
    "\\N{DIGIT ONE}",
    "\\u0041",
    "{self}",
    "%s",
)


def _comment_text(c: Chooser) -> str:
    if c.chance(25):
        return c.choice(_COMMENT_SNIPPETS)
    length = c.integer(0, 30)
    return "".join(c.choice(_COMMENT_CHARS) for _ in range(length))


class _Namer:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"


@dataclass
class _Block:
    """A network usable as a layer: vector in ([B, d]), something out."""

    name: str
    out: str  # "vec", "record" (named outputs a, b), "normal", "categorical"
    default_k: int  # the output size with default arguments
    sequential: bool


def _prior(c: Chooser, kind: str) -> str:
    if kind == "prior":
        options = [
            f"mu={c.choice(['0.0', '-0.5', '1', '0.25'])}",
            f"std={c.choice(['0.1', '1.0', '0.05', '2', '1e-2'])}",
        ]
    else:
        options = [
            f"mu_init={c.choice(['0.0', '0.1', '-1'])}",
            f"rho_init={c.choice(['-7.0', '-5', '-3.5'])}",
        ]
    chosen = [o for o in options if c.chance(60)]
    return f"Gaussian({', '.join(chosen)})"


class _Network:
    """Builds one non-sequential network, tracking shapes through forward."""

    def __init__(
        self,
        c: Chooser,
        name: str,
        blocks: Sequence[_Block],
        *,
        generic: bool,
        layout: _Layout,
    ) -> None:
        self.c = c
        self.name = name
        self.blocks = list(blocks)
        self.generic = generic  # a block: valid for any value of its parameters
        self.layout = layout
        self.params: list[str] = []
        self.param_values: dict[str, int] = {}
        self.float_params: list[str] = []
        self.bool_params: list[str] = []
        self.inputs: list[str] = []
        self.input_shapes: list[tuple[tuple[int, ...], str]] = []
        self.input_decls: list[str] = []
        self.layers: list[str] = []
        self.statements: list[str] = []
        self.layer_name = _Namer()
        self.value_name = _Namer()
        self.expect_valid = True

    # --- sizes --------------------------------------------------------------------
    def int_param(self, name: str, default: int | None) -> Size:
        written = f"{name}: int" + (f" = {default}" if default is not None else "")
        self.params.append(written)
        if default is not None:
            self.param_values[name] = default
        return Size(default if default is not None else 8, name)

    def new_size(self, low: int = 1, high: int = 12) -> Size:
        """A fresh size, written as a literal or from an int parameter."""
        c = self.c
        ints = [p for p in self.param_values if not self.generic]
        if ints and c.chance(40):
            name = c.choice(ints)
            value = self.param_values[name]
            form = c.integer(0, 3)
            if form == 0 and low <= value <= high * 2:
                return Size(value, name)
            if form == 1 and low <= 2 * value:
                return Size(2 * value, f"2 * {name}")
            if form == 2 and low <= value + 1:
                return Size(value + 1, f"{name} + 1")
            if form == 3 and low <= value // 2 + 1:
                return Size(value // 2 + 1, f"{name} // 2 + 1")
        value = c.integer(low, high)
        return Size(value, str(value))

    def written(self, size: Size, allow_auto: bool = True) -> str:
        if size.code is None or (allow_auto and self.c.chance(35)):
            return "auto"
        return size.code

    # --- layers ---------------------------------------------------------------------
    def add_layer(self, prefix: str, decl: str, *, bayesian_op: bool) -> str:
        c = self.c
        name = self.layer_name(prefix)
        fixed = bayesian_op and c.chance(20)
        if bayesian_op and not fixed:
            extras = []
            if c.chance(20):
                extras.append(f"prior={_prior(c, 'prior')}")
            if c.chance(15):
                extras.append(f"posterior={_prior(c, 'posterior')}")
            op = REGISTRY.get(decl.split("(", 1)[0])
            if op is not None and op.estimators and c.chance(15):
                extras.append(f"estimator={c.choice(op.estimators)}")
            if extras:
                decl = decl[:-1] + ", " + ", ".join(extras) + ")"
        text = f"{name} = {'fixed ' if fixed else ''}{decl}"
        if c.chance(20):
            text += f"  # {_comment_text(c)}"
        self.layers.append(text)
        return name

    def kw(self, positional: str, keyword_: str) -> str:
        """An argument written positionally or as a keyword."""
        return positional if self.c.chance(50) else f"{keyword_}={positional}"

    # --- forward --------------------------------------------------------------------
    def bind(self, tensor: Tensor, force: bool = False) -> Tensor:
        """Assign ``tensor`` to a name (sometimes, or when forced)."""
        if not force and tensor.depth < 4 and self.c.chance(50):
            return tensor
        if tensor.depth == 0 and re.fullmatch(r"[A-Za-z_]\w*", tensor.expr):
            return tensor
        name = self.value_name("h")
        self.statements.append(f"{name} = {tensor.expr}")
        return Tensor(
            name, tensor.kind, tensor.feat, tensor.spatial, tensor.length, depth=0
        )

    def call(self, tensor: Tensor, func: str, *options: str, **changes: Any) -> Tensor:
        inner = tensor.expr
        if self.c.chance(5):
            inner = f"({inner})"
        args = ", ".join([inner, *options])
        if options and self.c.chance(10):
            args += ","
        result = Tensor(
            f"{func}({args})",
            changes.get("kind", tensor.kind),
            changes.get("feat", tensor.feat),
            changes.get("spatial", tensor.spatial),
            changes.get("length", tensor.length),
            tensor.depth + 1,
        )
        return result

    def step(self, t: Tensor) -> Tensor:
        """One op applied to ``t``, chosen among those valid for its shape."""
        c = self.c
        options: list[Callable[[Tensor], Tensor | None]] = [self.elementwise]
        if t.kind == "vec":
            options += [self.linear, self.linear, self.residual, self.concat]
            options += [self.softmax, self.batch_norm, self.block]
            if not self.generic:
                options.append(self.reshape)
        elif t.kind == "seq":
            options += [self.linear, self.reduce, self.softmax]
            if t.length is not None:
                options.append(self.flatten)
        elif t.kind in ("img1", "img2"):
            options += [self.conv, self.conv, self.pool, self.flatten, self.reduce]
            options.append(self.batch_norm)
        elif t.kind == "tok":
            options = [self.embedding, self.lstm]
        for _ in range(4):
            result = c.choice(options)(t)
            if result is not None:
                return result
        return self.elementwise(t) if t.kind != "tok" else self.embedding(t)

    def elementwise(self, t: Tensor) -> Tensor:
        c = self.c
        func = c.choice(sorted(_ELEMENTWISE))
        options = []
        for name, value in _ELEMENTWISE[func]:
            if c.chance(40):
                if name == "p" and self.float_params and c.chance(50):
                    value = c.choice(self.float_params)
                options.append(
                    self.kw(value, name) if name == "p" else f"{name}={value}"
                )
        return self.call(t, func, *options)

    def linear(self, t: Tensor) -> Tensor:
        assert t.feat is not None
        out = self.new_size()
        args = [self.written(t.feat), out.code or str(out.value)]
        if self.c.chance(15):
            bias = self.c.choice(["true", "false", *self.bool_params])
            args.append(self.kw(bias, "use_bias") if len(args) == 2 else bias)
        name = self.add_layer("fc", f"Linear({', '.join(args)})", bayesian_op=True)
        return Tensor(
            f"{name}({t.expr})", t.kind, out, t.spatial, t.length, t.depth + 1
        )

    def residual(self, t: Tensor) -> Tensor | None:
        assert t.feat is not None
        if t.feat.code is None:
            return None
        t = self.bind(t, force=True)
        layer = self.add_layer(
            "fc",
            f"Linear({self.written(t.feat)}, {t.feat.code})",
            bayesian_op=True,
        )
        if self.c.chance(70):
            expr = f"{t.expr} + {layer}({t.expr})"
        else:
            expr = f"add({t.expr}, {layer}({t.expr}))"
        return Tensor(expr, "vec", t.feat, depth=2)

    def concat(self, t: Tensor) -> Tensor:
        t = self.bind(t, force=True)
        out = self.new_size()
        layer = self.add_layer(
            "fc", f"Linear({self.written(t.feat)}, {out.code})", bayesian_op=True
        )
        assert t.feat is not None
        total = t.feat.value + out.value
        code = (
            f"{t.feat.code} + {out.code}"
            if t.feat.code is not None and out.code is not None
            else None
        )
        dim = self.c.choice(["", ", dim=1", ", dim=-1"])
        expr = f"concat({t.expr}, {layer}({t.expr}){dim})"
        return Tensor(expr, "vec", Size(total, code), depth=2)

    def softmax(self, t: Tensor) -> Tensor:
        func = self.c.choice(["softmax", "log_softmax"])
        dim = self.c.choice(["", "dim=-1", "dim=1"])
        return self.call(t, func, *([dim] if dim else []))

    def batch_norm(self, t: Tensor) -> Tensor:
        return self.call(t, "batch_norm", *(["eps=1e-4"] if self.c.chance(30) else []))

    def reshape(self, t: Tensor) -> Tensor | None:
        assert t.feat is not None
        value = t.feat.value
        divisors = [d for d in range(1, value + 1) if value % d == 0]
        channels = self.c.choice(divisors)
        rest = value // channels
        shape = self.c.choice(
            [f"({channels}, {rest})", f"({channels}, -1)", f"(-1, {rest})"]
        )
        return self.call(
            t,
            "reshape",
            self.kw(shape, "shape"),
            kind="img1",
            feat=Size(channels, str(channels)),
            spatial=(rest,),
        )

    def flatten(self, t: Tensor) -> Tensor:
        assert t.feat is not None
        if t.kind == "img2" and self.c.chance(30):  # merge H and W only
            h, w = t.spatial
            return self.call(t, "flatten", "start_dim=2", kind="img1", spatial=(h * w,))
        extent = t.length if t.kind == "seq" else 1
        for s in t.spatial:
            extent *= s
        assert extent is not None
        total = t.feat.value * extent
        code = str(total) if t.feat.code == str(t.feat.value) else None
        return self.call(t, "flatten", kind="vec", feat=Size(total, code), spatial=())

    def reduce(self, t: Tensor) -> Tensor:
        func = self.c.choice(["mean", "sum"])
        if t.kind == "seq":
            return self.call(t, func, self.kw("1", "dim"), kind="vec", length=None)
        keep = self.c.chance(20)
        option = ", keepdim=true" if keep else ""
        spatial = t.spatial[:-1] + ((1,) if keep else ())
        kind = t.kind if keep else {"img1": "vec", "img2": "img1"}[t.kind]
        result = self.call(t, func, f"dim=-1{option}", kind=kind, spatial=spatial)
        return result

    def conv(self, t: Tensor) -> Tensor:
        c = self.c
        assert t.feat is not None
        out = self.new_size(1, 8)
        padding = c.integer(0, 2) if c.chance(50) else 0
        stride = c.integer(1, 2) if c.chance(30) else 1
        dilation = 2 if c.chance(10) else 1
        # The largest kernel that fits each padded extent with this dilation.
        fits = [min(5, (e + 2 * padding - 1) // dilation + 1) for e in t.spatial]
        if len(fits) == 2 and c.chance(30):
            kernels = [c.integer(1, fits[0]), c.integer(1, fits[1])]
            kernel_code = f"({kernels[0]}, {kernels[1]})"
        else:
            kernels = [c.integer(1, min(fits))] * len(fits)
            kernel_code = str(kernels[0])
        spatial = tuple(
            (e + 2 * padding - dilation * (k - 1) - 1) // stride + 1
            for e, k in zip(t.spatial, kernels, strict=True)
        )
        args = [self.written(t.feat), out.code or str(out.value)]
        args.append(self.kw(kernel_code, "kernel_size"))
        if stride != 1:
            args.append(f"stride={stride}")
        if padding:
            args.append(f"padding={padding}")
        if dilation != 1:
            args.append(f"dilation={dilation}")
        op = "Conv2d" if t.kind == "img2" else "Conv1d"
        name = self.add_layer("cv", f"{op}({', '.join(args)})", bayesian_op=True)
        return Tensor(f"{name}({t.expr})", t.kind, out, spatial, depth=t.depth + 1)

    def pool(self, t: Tensor) -> Tensor:
        c = self.c
        two = t.kind == "img2"
        smallest = min(t.spatial)
        kernel = c.integer(1, min(3, smallest))
        padding = c.integer(0, kernel // 2) if c.chance(30) else 0
        stride = c.integer(1, 2) if c.chance(30) else None
        step = stride or kernel
        spatial = tuple((e + 2 * padding - kernel) // step + 1 for e in t.spatial)
        func = f"{c.choice(['max', 'avg'])}_pool{2 if two else 1}d"
        options = [self.kw(str(kernel), "kernel_size")]
        if stride is not None:
            options.append(f"stride={stride}")
        if padding:
            options.append(f"padding={padding}")
        return self.call(t, func, *options, spatial=spatial)

    def embedding(self, t: Tensor) -> Tensor:
        c = self.c
        vocab, dim = c.integer(2, 30), self.new_size()
        args = [str(vocab), dim.code or str(dim.value)]
        if c.chance(30):
            args.append(f"padding_idx={c.integer(0, vocab - 1)}")
        name = self.add_layer("em", f"Embedding({', '.join(args)})", bayesian_op=True)
        return Tensor(f"{name}({t.expr})", "seq", dim, (), t.length, t.depth + 1)

    def lstm(self, t: Tensor) -> Tensor:
        c = self.c
        vocab = c.integer(2, 30)
        embed, hidden, out = self.new_size(), self.new_size(), self.new_size()
        args = [str(vocab), *(s.code or str(s.value) for s in (embed, hidden, out))]
        if c.chance(20):
            args.append("padding_idx=0")
        name = self.add_layer("ls", f"LSTM({', '.join(args)})", bayesian_op=True)
        return Tensor(f"{name}({t.expr})", "vec", out, depth=t.depth + 1)

    def block(self, t: Tensor) -> Tensor | None:
        c = self.c
        assert t.feat is not None
        if not self.blocks or t.feat.code is None:
            return None
        block = c.choice(self.blocks)
        out = self.new_size()
        if block.sequential:
            args = [t.feat.code, out.code or str(out.value)]
            args = [args[0], self.kw(args[1], "k")]
        else:
            args = [self.kw(t.feat.code, "d")]
            if c.chance(60):
                args.append(self.kw(out.code or str(out.value), "k"))
            else:
                out = Size(block.default_k, None)
        if args[0].startswith("d=") and len(args) > 1 and not args[1].startswith("k="):
            args[1] = f"k={args[1]}"
        name = self.add_layer(
            "bk", f"{block.name}({', '.join(args)})", bayesian_op=False
        )
        expr = f"{name}({t.expr})"
        if block.out == "record":
            expr += f".{c.choice(['a', 'b'])}"
        elif block.out == "normal":
            expr += f".{c.choice(['mean', 'std', 'stoch'])}"
        elif block.out == "categorical":
            expr += ".stoch"
        return Tensor(expr, "vec", out, depth=t.depth + 2)

    # --- returns --------------------------------------------------------------------
    def head(self, t: Tensor) -> str:
        """A head call on ``t`` (a vector), after a layer sizing it."""
        c = self.c
        kind = c.choice(["Normal", "Categorical", "Bernoulli"])
        groups = c.integer(1, 3) if kind != "Normal" and c.chance(40) else 1
        per = self.new_size(1, 4)
        factor = 2 if kind == "Normal" else groups
        code = per.code if per.code is not None else str(per.value)
        if factor > 1:
            code = f"{factor} * ({code})" if " " in code else f"{factor} * {code}"
        assert t.feat is not None
        layer = self.add_layer(
            "fc", f"Linear({self.written(t.feat)}, {code})", bayesian_op=True
        )
        options = []
        if groups > 1 or (kind != "Normal" and c.chance(20)):
            options.append(f"groups={groups}")
        if kind != "Normal" and c.chance(20):
            options.append(f"spherical={c.choice(['true', 'false'])}")
        return f"{kind}({', '.join([f'{layer}({t.expr})', *options])})"

    def returns(self, t: Tensor) -> None:
        c = self.c
        if t.kind == "vec" and c.chance(35):
            if c.chance(60):
                self.statements.append(f"return {self.head(t)}")
                return
            t = self.bind(t, force=True)
            first = self.head(t) if c.chance(50) else self.linear(t).expr
            second = self.linear(t).expr
            self.statements.append(f"return (a={first}, b={second})")
            return
        if c.chance(15) and t.kind != "tok":
            t = self.bind(t, force=True)
            self.statements.append(f"return (a={t.expr}, b={self.elementwise(t).expr})")
            return
        if c.chance(8):
            # An op the generator does not model, with plausible arguments.
            func, options = _generic_call(c)
            self.expect_valid = False
            self.statements.append(f"return {func}({', '.join([t.expr, *options])})")
            return
        self.statements.append(f"return {t.expr}")

    # --- the whole network ------------------------------------------------------------
    def build_main(self) -> str:
        c = self.c
        if c.chance(50):
            self.int_param("width", c.integer(1, 12))
        if c.chance(30):
            self.float_params.append("rate")
            self.params.append(f"rate: float = {c.choice(['0.1', '0.0', '0.5'])}")
        if c.chance(20):
            self.bool_params.append("bias")
            self.params.append(f"bias: bool = {c.choice(['true', 'false'])}")
        kind = c.choice(["vec", "vec", "img1", "img2", "tok"])
        t = self.declare_input("x", kind)
        if kind == "vec" and c.chance(20):  # a second input, joined at once
            y = self.declare_input("y", "vec")
            assert t.feat is not None and y.feat is not None
            total = Size(t.feat.value + y.feat.value, None)
            t = Tensor("concat(x, y)", "vec", total, depth=1)
        for _ in range(c.integer(1, 6)):
            t = self.bind(self.step(t))
        self.returns(t)
        return self.render()

    def build_block(self, out: str) -> tuple[str, int]:
        """A generic vector block ``(d: int, k: int = K)``; returns its text, K."""
        c = self.c
        d = self.int_param("d", None if c.chance(40) else c.integer(1, 8))
        k_default = c.integer(1, 6)
        self.int_param("k", k_default)
        t = self.declare_input("x", "vec", d)
        for _ in range(c.integer(0, 3)):
            t = self.bind(self.step(t))
        if out == "vec":
            layer = self.add_layer(
                "fc", f"Linear({self.written(t.feat)}, k)", bayesian_op=True
            )
            self.statements.append(f"return {layer}({t.expr})")
        elif out == "record":
            t = self.bind(t, force=True)
            a = self.add_layer(
                "fc", f"Linear({self.written(t.feat)}, k)", bayesian_op=True
            )
            b = self.add_layer(
                "fc", f"Linear({self.written(t.feat)}, k)", bayesian_op=True
            )
            self.statements.append(f"return (a={a}({t.expr}), b={b}({t.expr}))")
        elif out == "normal":
            layer = self.add_layer(
                "fc", f"Linear({self.written(t.feat)}, 2 * k)", bayesian_op=True
            )
            self.statements.append(f"return Normal({layer}({t.expr}))")
        else:
            layer = self.add_layer(
                "fc", f"Linear({self.written(t.feat)}, k)", bayesian_op=True
            )
            head = c.choice(["Categorical", "Bernoulli"])
            self.statements.append(f"return {head}({layer}({t.expr}))")
        return self.render(), k_default

    def declare_input(self, name: str, kind: str, feat: Size | None = None) -> Tensor:
        c = self.c
        self.inputs.append(name)
        if kind == "tok":
            length = c.integer(1, 6) if c.chance(40) else None
            dtype = c.choice(["int64", "int"])
            self.input_lines_append(name, ["B", str(length) if length else "T"], dtype)
            self.input_shapes.append(((2, length or 5), "int64"))
            return Tensor(name, "tok", None, (), length)
        feat = feat or self.new_size(1, 8)
        spatial: tuple[int, ...] = ()
        if kind == "img1":
            spatial = (c.integer(1, 12),)
        elif kind == "img2":
            spatial = (c.integer(1, 8), c.integer(1, 8))
        dims = ["B", feat.code or str(feat.value), *map(str, spatial)]
        dtype = c.choice(["float32", "float"]) if c.chance(10) else None
        self.input_lines_append(name, dims, dtype)
        self.input_shapes.append(((2, feat.value, *spatial), "float32"))
        return Tensor(name, kind, feat, spatial)

    def input_lines_append(self, name: str, dims: list[str], dtype: str | None) -> None:
        items = ", ".join(dims) + (f", dtype={dtype}" if dtype else "")
        self.input_decls.append(f"input {name}: Tensor[{items}]")

    def render(self) -> str:
        c, lay = self.c, self.layout
        header = f"network {self.name}"
        if self.params or c.chance(10):
            trailing = "," if self.params and c.chance(10) else ""
            header += f"({', '.join(self.params)}{trailing})"
        members: list[str] = []
        if c.chance(15):
            members.append(f"prior default = {_prior(c, 'prior')}")
        if c.chance(10):
            members.append(f"posterior default = {_prior(c, 'posterior')}")
        if c.chance(10):
            members.append(f"estimator default = {c.choice(ESTIMATORS)}")
        members += self.input_decls
        blocks = [
            lay.block("layers", self.layers),
            lay.block("forward", self.statements),
        ]
        if c.chance(20):
            blocks.reverse()  # forward before layers is fine
        if not self.layers and c.chance(50):
            blocks = [b for b in blocks if not b.startswith("layers")]
        members += blocks
        return lay.block(header, members)


class _Layout:
    """Whitespace and separators of one generated file."""

    def __init__(self, c: Chooser) -> None:
        self.indent = c.choice(["    ", "  ", "\t", ""])
        self.separator = c.choice(["\n", "\n", "\n", "; ", " "])
        self.newline = "\r\n" if c.chance(10) else "\n"

    def block(self, head: str, lines: Sequence[str]) -> str:
        if self.separator != "\n" and not any("#" in line for line in lines):
            return f"{head} {{ {self.separator.join(lines)} }}"
        body = "\n".join(
            self.indent + line.replace("\n", "\n" + self.indent) for line in lines
        )
        return f"{head} {{\n{body}\n}}"


def _generic_call(c: Chooser) -> tuple[str, list[str]]:
    """A call of a function or head the generator does not model, or any op."""
    unmodelled = [
        op
        for op in REGISTRY.values()
        if op.kind != "layer" and op.name not in _MODELLED
    ]
    ops = unmodelled or [op for op in REGISTRY.values() if op.kind != "layer"]
    op = c.choice(ops)
    options = []
    for arg in op.args:
        if arg.required or c.chance(30):
            options.append(f"{arg.name}={_plausible(c, arg.kind)}")
    return op.name, options


def _plausible(c: Chooser, kind: str) -> str:
    return {
        "size": lambda: str(c.integer(1, 4)),
        "int": lambda: str(c.integer(-1, 3)),
        "int_or_pair": lambda: c.choice(["1", "2", "(1, 2)"]),
        "float": lambda: c.choice(["0.5", "1e-3", "0"]),
        "bool": lambda: c.choice(["true", "false"]),
        "dim": lambda: c.choice(["-1", "1", "0"]),
        "shape": lambda: c.choice(["(-1,)", "(2, -1)", "(4,)"]),
    }[kind]()


def _sequential(
    c: Chooser, name: str, blocks: Sequence[_Block], *, as_block: bool
) -> tuple[str, tuple[tuple[int, ...], str], _Block | None]:
    """A ``sequential`` network: its text, its input shape and, as a block, itself."""
    items: list[str] = []

    def layer(op: str, args: str) -> str:
        """``[fixed] op(args[, prior=...])``: a fixed layer takes no prior."""
        if c.chance(15):
            return f"fixed {op}({args})"
        if c.chance(15):
            return f"{op}({args}, prior={_prior(c, 'prior')})"
        return f"{op}({args})"

    d_default = c.integer(1, 8)
    params = [f"d: int = {d_default}", f"k: int = {c.integer(1, 6)}"]
    start = "vec" if as_block else c.choice(["vec", "vec", "conv", "embedding", "lstm"])
    shape: tuple[tuple[int, ...], str]
    features: int | None
    if start == "vec":
        width = c.integer(1, 8)
        items.append(layer("Linear", f"d, {width}"))
        shape, features = ((2, d_default), "float32"), width
    elif start == "conv":
        width = c.integer(1, 6)
        items.append(layer("Conv2d", f"d, {width}, 3, padding=1"))
        shape, features = ((2, d_default, 6, 5), "float32"), None
        for _ in range(c.integer(0, 2)):
            items.append(
                c.choice(["relu", "max_pool2d(1)", f"Conv2d(auto, {width}, 1)"])
            )
        items += ["mean(dim=-1)", "mean(dim=-1)"]
        features = width
    elif start == "embedding":
        width = c.integer(1, 8)
        items.append(f"Embedding(d, {width})")
        shape, features = ((2, 5), "int64"), width
        items.append(c.choice(["mean(dim=1)", "sum(1)"]))
    else:
        width = c.integer(1, 8)
        items.append(f"LSTM(d, 4, 5, {width})")
        shape, features = ((2, 5), "int64"), width
    for _ in range(c.integer(0, 4)):
        roll = c.integer(0, 6)
        if roll == 0:
            width = c.integer(1, 8)
            size = c.choice(["auto", str(features)])
            items.append(layer("Linear", f"{size}, {width}"))
            features = width
        elif roll == 1 and blocks:
            block = c.choice(blocks)
            if block.out == "vec":
                width = c.integer(1, 6)
                items.append(f"{block.name}({features}, {width})")
                features = width
        elif roll == 2:
            items.append(
                c.choice(["dropout(p=0.1)", "dropout(0.2)", "softmax(dim=-1)"])
            )
        else:
            func = c.choice(sorted(_ELEMENTWISE))
            items.append(func)
    out = "vec"
    ending = c.integer(0, 4)
    if ending == 0:
        items.append(layer("Linear", "auto, 2 * k"))
        items.append("Normal")
        out = "normal"
    elif ending == 1 and not as_block:
        items.append("Linear(auto, k)")
        items.append(c.choice(["Bernoulli", "Categorical", "Categorical(groups=1)"]))
        out = "categorical"
    else:
        items.append(layer("Linear", "auto, k"))
    trailing = "," if c.chance(20) else ""
    sep = c.choice([", ", ",\n    "])
    text = (
        f"network {name}({', '.join(params)}) = sequential {{\n"
        f"    {sep.join(items)}{trailing}\n}}"
    )
    block = _Block(name, out, 0, True) if as_block and start == "vec" else None
    return text, shape, block


def valid_spec(c: Chooser) -> Spec:
    """A random program that should check and compile (see :class:`Spec`)."""
    layout = _Layout(c)
    parts: list[str] = []
    if c.chance(30):
        parts.append(f"prior default = {_prior(c, 'prior')}")
    if c.chance(20):
        parts.append(f"posterior default = {_prior(c, 'posterior')}")
    if c.chance(15):
        parts.append(f"estimator default = {c.choice(ESTIMATORS)}")
    blocks: list[_Block] = []
    names: list[str] = []
    for index in range(c.integer(0, 2)):
        if c.chance(30):
            name = f"Seq{index}"
            text, _, block = _sequential(c, name, blocks, as_block=True)
            if block is not None:
                blocks.append(block)
        else:
            name = f"Blk{index}"
            out = c.choice(["vec", "vec", "record", "normal", "categorical"])
            net = _Network(c, name, blocks, generic=True, layout=layout)
            text, k = net.build_block(out)
            blocks.append(_Block(name, out, k, False))
        parts.append(_with_doc(c, text))
        names.append(name)
    expect_valid = True
    if c.chance(20):
        main = "Main"
        text, shape, _ = _sequential(c, main, blocks, as_block=False)
        inputs = [shape]
    else:
        main = "Main"
        net = _Network(c, main, blocks, generic=False, layout=layout)
        text = net.build_main()
        inputs = net.input_shapes
        expect_valid = net.expect_valid
    parts.append(_with_doc(c, text))
    names.append(main)
    joiner = c.choice(["\n", "\n\n", "\n;\n"])
    source = joiner.join(parts) + "\n"
    if layout.newline != "\n":
        source = source.replace("\n", layout.newline)
    return Spec(source, main, inputs, expect_valid, names)


def _with_doc(c: Chooser, text: str) -> str:
    if not c.chance(40):
        return text
    lines = [f"# {_comment_text(c)}" for _ in range(c.integer(1, 3))]
    return "\n".join([*lines, text])


# --------------------------------------------------------------------------------------
# Near-valid specs: one token changed
# --------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_]\w*|\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?'
    r"|//|\s+|."
)
_REPLACEMENTS = (
    *"{}()[],;=.:+-*/%",
    "//",
    "==",
    *sorted(keyword.kwlist),
    "network", "input", "layers", "forward", "return", "fixed", "sequential", "from",
    "import", "prior", "posterior", "estimator", "default", "auto", "true", "false",
    "none", "flipout",
    "Tensor", "dtype", "int64", "float", "int", "bool", "B", "T",
    "0", "1", "-1", "2", "1.5", "1e400", "99999999999999999999", "1099511627777",
    '"x"', '"\\q"', '"', "'", "\\", "#", "@", "$", "`",
    "self", "torch", "jnp", "F", "bnn", "nnx", "rngs", "__import__", "__class__",
    "_t1", "print", "exec",
    "é", "\u0430", "\u200b", "\u202e", "\ufeff", "\x00", "\t", "\r", "\r\n",
    "(" * 40, "f(" * 80,
    *REGISTRY,
)  # fmt: skip


def tokens(text: str) -> list[str]:
    """``text`` split into tokens (whitespace and comments included)."""
    return _TOKEN.findall(text)


def near_valid(c: Chooser, text: str) -> str:
    """``text`` with one token deleted, duplicated, swapped or replaced."""
    parts = tokens(text)
    significant = [i for i, t in enumerate(parts) if not t.isspace()]
    if not significant:
        return text + c.choice(_REPLACEMENTS)
    at = c.choice(significant)
    action = c.integer(0, 4)
    if action == 0:
        del parts[at]
    elif action == 1:
        parts.insert(at, parts[at])
    elif action == 2:
        later = [i for i in significant if i > at]
        if later:
            other = later[0]
            parts[at], parts[other] = parts[other], parts[at]
        else:
            del parts[at]
    elif action == 3:
        parts[at] = c.choice(_REPLACEMENTS)
    else:
        parts.insert(at, c.choice(_REPLACEMENTS) + c.choice(["", " "]))
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Byte-level mutations
# --------------------------------------------------------------------------------------

_INTERESTING = (
    b"\xef\xbb\xbf",  # BOM
    b"\r\n",
    b"\r",
    b"\t",
    b"\x00",
    b"\xff",
    b"\xc3",  # truncated UTF-8 sequence
    b"\xed\xa0\x80",  # an encoded surrogate (invalid UTF-8)
    b"\xe2\x80\xae",  # U+202E RIGHT-TO-LEFT OVERRIDE
    b"\xe2\x80\x8b",  # U+200B ZERO WIDTH SPACE
    b"\xd0\xb0",  # Cyrillic a
    b"\xf0\x9f\x98\x80",
    b"(" * 300,
    b"-" * 300,
    b"f(" * 100,
    b"9" * 40,
    b"1e999",
    b'"',
    b"#",
    b"network",
    b"}",
    b"{",
    b";",
    b"auto",
    b"__import__",
)


def mutate_bytes(c: Chooser, data: bytes) -> bytes:
    """``data`` after one to four random byte-level mutations."""
    buffer = bytearray(data)
    for _ in range(c.integer(1, 4)):
        at = c.integer(0, len(buffer))
        action = c.integer(0, 7)
        if action == 0 and at < len(buffer):  # flip one bit
            buffer[at] ^= 1 << c.integer(0, 7)
        elif action == 1 and at < len(buffer):  # any byte
            buffer[at] = c.integer(0, 255)
        elif action == 2:
            buffer[at:at] = bytes(c.integer(0, 255) for _ in range(c.integer(1, 4)))
        elif action == 3:
            del buffer[at : at + c.integer(1, 16)]
        elif action == 4:
            size = c.integer(1, 64)
            buffer[at:at] = buffer[at : at + size]
        elif action == 5:
            del buffer[at:]
        else:
            buffer[at:at] = c.choice(_INTERESTING)
    return bytes(buffer)


# --------------------------------------------------------------------------------------
# IR mutations
# --------------------------------------------------------------------------------------

SENTINEL = "PWNED"
PAYLOADS = (
    f"__import__('os').system('touch {SENTINEL}')",
    f"open('{SENTINEL}', 'w').write('x')",
    f'"""; open("{SENTINEL}", "w"); """',
    f"\nopen('{SENTINEL}', 'w')\n",
    f"\r\nopen('{SENTINEL}', 'w')  # \\",
    f"\u202e'); open('{SENTINEL}', 'w') #",
    "\nexec(input())#",
)
_IR_STRINGS = (*PAYLOADS, "", "x y", "1x", "None", "__class__", "self", "a.b", "B")
_IR_NUMBERS = (math.inf, -math.inf, math.nan, 1e308, -1.0, 0, 2**63, -(2**70), 3)


def _leaves(value: object, path: tuple = ()) -> list[tuple[tuple, object]]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _leaves(v, (*path, i))]
    return [(path, value)]


def mutate_ir(c: Chooser, data: dict[str, Any]) -> dict[str, Any]:
    """The IR ``data`` (``model_dump(mode="json")``) with 1-3 fields replaced.

    Strings become payloads or non-identifiers, numbers non-finite, huge or
    negative; discriminators and spans are left alone (the schema refuses
    those outright).
    """
    data = copy.deepcopy(data)
    for _ in range(c.integer(1, 3)):
        leaves = [
            (path, value)
            for path, value in _leaves(data)
            if isinstance(value, str | int | float)
            and not isinstance(value, bool)
            and "span" not in path
            and path[-1] not in ("kind", "ir_version")
        ]
        if not leaves:
            break
        path, value = c.choice(leaves)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = c.choice(
            _IR_STRINGS if isinstance(value, str) else _IR_NUMBERS
        )
    return data
