"""Types the checker gives to values: tensors with symbolic shapes, and records."""

from __future__ import annotations

from dataclasses import dataclass

from bnnc.compiler.symbolic import Size

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int64", "int32")


@dataclass(frozen=True)
class TensorType:
    """A tensor: one symbolic size per dimension, and a dtype."""

    dims: tuple[Size, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.dims)

    @property
    def is_float(self) -> bool:
        """Whether the dtype is a floating-point type."""
        return self.dtype in FLOAT_DTYPES

    def with_dims(self, dims: tuple[Size, ...] | list[Size]) -> TensorType:
        """The same dtype with other dims."""
        return TensorType(tuple(dims), self.dtype)

    def describe(self) -> str:
        """``[B, 16, 4, 4]`` (with ``: int64`` for non-float tensors)."""
        suffix = "" if self.dtype == "float32" else f": {self.dtype}"
        return f"{self.shape_text()}{suffix}"

    def shape_text(self) -> str:
        """``[B, 16, 4, 4]``."""
        return f"[{', '.join(str(d) for d in self.dims)}]"


@dataclass(frozen=True)
class DistType:
    """What an output head returns: a distribution's tensors and a sample.

    ``kind`` is ``Normal``, ``Categorical`` or ``Bernoulli``; ``fields`` holds
    the container's tensors (``mean``/``std``/``stoch`` or
    ``logits``/``probs``/``stoch``).
    """

    kind: str
    fields: tuple[tuple[str, TensorType], ...]

    def field(self, name: str) -> TensorType | None:
        """The type of one of the container's tensors."""
        return dict(self.fields).get(name)

    def describe(self) -> str:
        """``Normal[B, 1]`` (the sample's shape)."""
        stoch = dict(self.fields)["stoch"]
        return f"{self.kind}{stoch.shape_text()}"


@dataclass(frozen=True)
class RecordType:
    """The named outputs of a network with several outputs."""

    network: str
    fields: tuple[tuple[str, TensorType | DistType], ...]

    def field(self, name: str) -> TensorType | DistType | None:
        """The type of one named output."""
        return dict(self.fields).get(name)

    def describe(self) -> str:
        """``(mean: [B, 1], std: [B, 1])``."""
        inner = ", ".join(f"{n}: {t.describe()}" for n, t in self.fields)
        return f"({inner})"


ValueType = TensorType | RecordType | DistType


@dataclass(frozen=True)
class Unknown:
    """A compile-time value that is not known (a parameter without default)."""

    type: str

    def __repr__(self) -> str:
        return f"<unknown {self.type}>"
