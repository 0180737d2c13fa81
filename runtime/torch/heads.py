"""Stochastic output heads: Normal, categorical and Bernoulli latent/output layers.

A :class:`Distribution` head turns the features of a network into the
parameters of a distribution and a differentiable sample of it, returned as a
container (:class:`NormalStoch`, :class:`CategoricalStoch`,
:class:`BernoulliStoch`) that behaves like a bundle of tensors: field access,
``.shape``, indexing, tensor methods applied to every field, stacking and
concatenation (:func:`stack_dist`, :func:`cat_dist`), and a
``torch.distributions`` object (:func:`get_dist`).

Layouts: a normal head maps ``[..., 2 * in_dim]`` to fields ``[..., in_dim]``;
a categorical or Bernoulli head with ``n_groups`` groups maps ``[..., in_dim]``
to ``logits``/``probs`` ``[..., n_groups, in_dim // n_groups]`` and ``stoch``
``[..., in_dim]``. Container operations that take a ``dim`` or an index
address the batch axes (the leading ones); the event axes (``stoch``'s last,
``logits``' last two) are handled for you.

Also here: :func:`head_nll`, the data term that :class:`~.losses.ELBOLoss`
uses when it is given no loss function, and Monte Carlo prediction with a
normal head (:func:`predictive_normal`, :func:`predictive_interval`).
Everything mirrors the JAX runtime's ``heads`` module (same names, same maths).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import distributions as D

__all__ = [
    "BSQCodebook",
    "BernoulliShape",
    "BernoulliStoch",
    "CategoricalShape",
    "CategoricalStoch",
    "Distribution",
    "NormalShape",
    "NormalStoch",
    "StochState",
    "cat_dist",
    "get_dist",
    "head_nll",
    "predictive_interval",
    "predictive_normal",
    "stack_dist",
]

DistName = Literal["normal", "categorical", "bernoulli"]
_DISTS = ("normal", "categorical", "bernoulli")
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
#: Added to ``softplus`` so that a normal head's ``std`` is never zero.
STD_EPS = 1e-6
DEFAULT_NUM_SAMPLES = 32


# -- shapes -------------------------------------------------------------------


class NormalShape(NamedTuple):
    """Shapes (or any per-field results) of a :class:`NormalStoch`."""

    mean: Any
    std: Any
    stoch: Any


class CategoricalShape(NamedTuple):
    """Shapes (or any per-field results) of a :class:`CategoricalStoch`."""

    logits: Any
    probs: Any
    stoch: Any


class BernoulliShape(NamedTuple):
    """Shapes (or any per-field results) of a :class:`BernoulliStoch`."""

    logits: Any
    probs: Any
    stoch: Any


# -- containers ---------------------------------------------------------------

_S = TypeVar("_S", bound="_Stoch")


def _is_compiling() -> bool:
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())


class _Stoch:
    """Behaviour shared by the three containers (fields are tensors)."""

    _shape_type: ClassVar[type]
    #: True when ``logits``/``probs`` carry a group axis that ``stoch`` lacks.
    _grouped: ClassVar[bool] = False

    # construction ----------------------------------------------------------

    @classmethod
    def _make(cls: type[_S], *values: torch.Tensor) -> _S:
        """Build without validation (for values valid by construction)."""
        if _is_compiling():  # dynamo traces the dataclass constructor instead
            return cls(*values)
        obj = cls.__new__(cls)
        for field, value in zip(fields(cls), values, strict=True):
            object.__setattr__(obj, field.name, value)
        return obj

    def _values(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def _map(self: _S, fn: Callable[[torch.Tensor], torch.Tensor]) -> _S:
        return type(self)(*(fn(value) for value in self._values()))

    def _check_tensors(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), torch.Tensor):
                raise TypeError(
                    f"{type(self).__name__}.{f.name} must be a torch.Tensor, "
                    f"not {type(getattr(self, f.name)).__name__}"
                )

    # axes ------------------------------------------------------------------

    @property
    def _batch_ndim(self) -> int:
        """Number of leading (batch) axes that indexing and ``dim`` address."""
        stoch = self.stoch
        if self._grouped and self.logits.ndim == stoch.ndim + 1:
            return stoch.ndim - 1
        return stoch.ndim

    def _batch_axis(self, dim: int, extra: int = 0) -> int:
        """Normalise ``dim`` over ``batch_ndim + extra`` positions."""
        size = self._batch_ndim + extra
        if not -size <= dim < size:
            raise IndexError(
                f"dim {dim} is out of range for {type(self).__name__} with "
                f"{self._batch_ndim} batch axes (the event axes cannot be addressed)"
            )
        return dim % size

    # tensor-like behaviour -------------------------------------------------

    @property
    def shape(self) -> Any:
        """The shape of every field, as a ``*Shape`` named tuple."""
        return self._shape_type(*(value.shape for value in self._values()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Apply a ``torch.Tensor`` method to every field.

        ``normal.flatten()`` is ``NormalStoch(mean.flatten(), std.flatten(),
        stoch.flatten())``; ``detach``, ``to``, ``reshape``, ``float``... work
        alike. A method returning tensors gives a container of the same type
        (validated); any other result (``dim()``, ``numel()``) gives the
        ``*Shape`` named tuple of the per-field results.

        Raises:
            AttributeError: If ``name`` is not a method of ``torch.Tensor``.
        """
        if name.startswith("__") or not callable(getattr(torch.Tensor, name, None)):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            )

        def apply(*args: Any, **kwargs: Any) -> Any:
            results = [
                getattr(value, name)(*args, **kwargs) for value in self._values()
            ]
            if all(isinstance(result, torch.Tensor) for result in results):
                return type(self)(*results)
            return self._shape_type(*results)

        apply.__name__ = name
        return apply

    def __getitem__(self: _S, idx: Any) -> _S:
        """Index the batch axes of every field (``stoch[0]``, ``stoch[:, 1:3]``).

        For categorical and Bernoulli containers only the batch axes may be
        indexed (``logits`` has one axis more than ``stoch``).

        Raises:
            IndexError: If the index reaches the event axes or uses ``...``.
        """
        if self._grouped:
            parts = idx if isinstance(idx, tuple) else (idx,)
            if any(part is Ellipsis for part in parts):
                raise IndexError(
                    f"{type(self).__name__} indexing does not take '...': index "
                    "the batch axes explicitly"
                )
            used = sum(1 for part in parts if part is not None)
            if used > self._batch_ndim:
                raise IndexError(
                    f"{type(self).__name__} has {self._batch_ndim} batch axes; "
                    f"an index of {used} axes would reach the event axes"
                )
        return self._map(lambda value: value[idx])

    def __len__(self) -> int:
        """Size of the first axis."""
        if self._batch_ndim == 0:
            raise TypeError(f"len() of a {type(self).__name__} without batch axes")
        return int(self.stoch.shape[0])

    def __iter__(self: _S) -> Iterator[_S]:
        """Iterate over the first axis."""
        for index in range(len(self)):
            yield self[index]

    def squeeze(self: _S, dim: int) -> _S:
        """Remove the batch axis ``dim`` (a no-op if it is not of size 1)."""
        axis = self._batch_axis(dim)
        return self._map(lambda value: value.squeeze(axis))

    def unsqueeze(self: _S, dim: int) -> _S:
        """Insert a batch axis of size 1 at ``dim`` (``-1``: after the last one)."""
        axis = self._batch_axis(dim, extra=1)
        return self._map(lambda value: value.unsqueeze(axis))

    def save(self, path: Any) -> None:
        """Save the fields with ``torch.save`` as ``{field name: tensor}``."""
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, path)

    @classmethod
    def load(cls: type[_S], path: Any, map_location: Any = None) -> _S:
        """Load a container written by :meth:`save`."""
        data = torch.load(path, map_location=map_location, weights_only=True)
        return cls(**data)


@dataclass(eq=False)
class NormalStoch(_Stoch):
    """Parameters of a normal distribution and its stochastic sample.

    Attributes:
        mean: Mean of the normal distribution.
        std: Standard deviation of the normal distribution.
        stoch: Sample from the normal distribution with the reparametrization
            trick (``mean + std * eps``).
    """

    mean: torch.Tensor
    std: torch.Tensor
    stoch: torch.Tensor

    _shape_type: ClassVar[type] = NormalShape

    def __post_init__(self) -> None:
        """Check the fields.

        Raises:
            TypeError: If a field is not a tensor.
            ValueError: If the three shapes differ or ``std`` is negative.
        """
        self._check_tensors()
        if not self.mean.shape == self.std.shape == self.stoch.shape:
            raise ValueError(
                "NormalStoch fields must have one shape, got "
                f"mean {tuple(self.mean.shape)}, std {tuple(self.std.shape)}, "
                f"stoch {tuple(self.stoch.shape)}"
            )
        if not _is_compiling() and bool((self.std < 0).any()):
            raise ValueError("NormalStoch.std must be non-negative")

    def get_distribution(self) -> D.Independent:
        """``Independent(Normal(mean, std), 1)``: one event over the last axis."""
        return D.Independent(D.Normal(self.mean, self.std), 1)


class _GroupedStoch(_Stoch):
    """``logits``/``probs`` ``[..., G, K]`` and ``stoch`` ``[..., G * K]``."""

    _grouped: ClassVar[bool] = True
    logits: torch.Tensor
    probs: torch.Tensor
    stoch: torch.Tensor

    def __post_init__(self) -> None:
        """Check the fields.

        Raises:
            TypeError: If a field is not a tensor.
            ValueError: If ``probs`` and ``logits`` differ in shape, or
                ``stoch`` does not match them.
        """
        self._check_tensors()
        name = type(self).__name__
        if self.probs.shape != self.logits.shape:
            raise ValueError(
                f"{name}.probs must have the shape of logits "
                f"{tuple(self.logits.shape)}, got {tuple(self.probs.shape)}"
            )
        if self.stoch.numel() != self.logits.numel() or (
            self.logits.ndim == self.stoch.ndim + 1
            and self.stoch.shape[:-1] != self.logits.shape[:-2]
        ):
            raise ValueError(
                f"{name}.stoch {tuple(self.stoch.shape)} does not match logits "
                f"{tuple(self.logits.shape)} (expected stoch [..., G * K] for "
                "logits [..., G, K])"
            )


@dataclass(eq=False)
class CategoricalStoch(_GroupedStoch):
    """Parameters of a categorical distribution and its stochastic sample.

    Attributes:
        logits: Logits of the categorical distribution ``[..., G, K]``.
        probs: Probabilities of the categorical distribution ``[..., G, K]``.
        stoch: Sample from the categorical distribution with the
            straight-through estimator, ``[..., G * K]``.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    stoch: torch.Tensor

    _shape_type: ClassVar[type] = CategoricalShape

    def get_distribution(self) -> D.Independent:
        """``Independent(OneHotCategoricalStraightThrough(logits), 1)``.

        Events are one-hot tensors ``[..., G, K]`` (not the flattened,
        possibly spherical ``stoch``); ``rsample`` is straight-through.
        """
        return D.Independent(D.OneHotCategoricalStraightThrough(logits=self.logits), 1)


@dataclass(eq=False)
class BernoulliStoch(_GroupedStoch):
    """Parameters of a Bernoulli distribution and its stochastic sample.

    Attributes:
        logits: Logits of the Bernoulli distribution ``[..., G, K]``.
        probs: Probabilities of the Bernoulli distribution ``[..., G, K]``.
        stoch: Sample from the Bernoulli distribution with the straight-through
            estimator, ``[..., G * K]``.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    stoch: torch.Tensor

    _shape_type: ClassVar[type] = BernoulliShape

    def get_distribution(self) -> D.Independent:
        """``Independent(Bernoulli(logits), 2)``: events are bits ``[..., G, K]``."""
        return D.Independent(D.Bernoulli(logits=self.logits), 2)


StochState = NormalStoch | CategoricalStoch | BernoulliStoch
_STOCH_TYPES = (NormalStoch, CategoricalStoch, BernoulliStoch)


def _check_same_type(stochs: Sequence[StochState], what: str) -> type:
    if len(stochs) == 0:
        raise ValueError(f"{what} needs at least one container")
    kind = type(stochs[0])
    if kind not in _STOCH_TYPES or any(type(s) is not kind for s in stochs):
        names = sorted({type(s).__name__ for s in stochs})
        raise TypeError(f"{what} needs containers of one Stoch type, got {names}")
    return kind


def stack_dist(stochs: Sequence[StochState], dim: int = 0) -> StochState:
    """Stack the parameters of the distributions along a new batch axis ``dim``.

    Args:
        stochs: Tuple of containers of the same type and shape.
        dim: Position of the new axis among the batch axes. Default is 0.

    Returns:
        The stacked container.

    Examples:
        >>> dist1 = NormalStoch(torch.randn(2, 3), torch.rand(2, 3), torch.randn(2, 3))
        >>> dist2 = NormalStoch(torch.randn(2, 3), torch.rand(2, 3), torch.randn(2, 3))
        >>> stack_dist = stack_dist((dist1, dist2))
        >>> stack_dist.shape
        NormalShape(mean=torch.Size([2, 2, 3]), std=torch.Size([2, 2, 3]), stoch=torch.Size([2, 2, 3]))
    """  # noqa: E501
    kind = _check_same_type(stochs, "stack_dist")
    axis = stochs[0]._batch_axis(dim, extra=1)
    columns = zip(*(s._values() for s in stochs), strict=True)
    return kind(*(torch.stack(column, dim=axis) for column in columns))


def cat_dist(stochs: Sequence[StochState], dim: int = -1) -> StochState:
    """Concatenate the parameters of the distributions.

    ``dim=-1`` (the default) concatenates the events: the features of normal
    containers, the groups of categorical and Bernoulli ones (whose group
    sizes must then agree). Any other ``dim`` is a batch axis.

    Args:
        stochs: Tuple of containers of the same type.
        dim: Axis of ``stoch`` along which to concatenate. Default is -1.

    Returns:
        The concatenated container.

    Examples:
        >>> dist1 = NormalStoch(torch.randn(2, 3), torch.rand(2, 3), torch.randn(2, 3))
        >>> dist2 = NormalStoch(torch.randn(2, 3), torch.rand(2, 3), torch.randn(2, 3))
        >>> cat_dist = cat_dist((dist1, dist2))
        >>> cat_dist.shape
        NormalShape(mean=torch.Size([2, 6]), std=torch.Size([2, 6]), stoch=torch.Size([2, 6]))
    """  # noqa: E501
    kind = _check_same_type(stochs, "cat_dist")
    first = stochs[0]
    ndim = first.stoch.ndim
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim {dim} is out of range for stoch of {ndim} axes")
    axis = dim % ndim
    columns = list(zip(*(s._values() for s in stochs), strict=True))
    if kind is NormalStoch or axis < first._batch_ndim:
        return kind(*(torch.cat(column, dim=axis) for column in columns))
    # event axis of a grouped container: logits/probs gain groups
    logits, probs, stoch = columns
    return kind(
        torch.cat(logits, dim=-2), torch.cat(probs, dim=-2), torch.cat(stoch, -1)
    )


def get_dist(state: StochState) -> D.Independent:
    """The ``torch.distributions`` object of a container (``state.get_distribution()``).

    Args:
        state: A normal, categorical or Bernoulli container.

    Returns:
        ``Independent(Normal)``, ``Independent(OneHotCategoricalStraightThrough)``
        or ``Independent(Bernoulli)``; events as in each container's
        ``get_distribution``.
    """
    if not isinstance(state, _STOCH_TYPES):
        raise TypeError(f"get_dist needs a Stoch container, not {type(state).__name__}")
    return state.get_distribution()


# -- BSQ codebook ---------------------------------------------------------------


class BSQCodebook(torch.nn.Module):
    """Binary Spherical Quantization codebook.

    Reference: https://arxiv.org/abs/2406.07548. Code ``i`` is the binary
    expansion of ``i`` (most significant bit first) mapped to
    ``(2 * bit - 1) / sqrt(codebook_dim)``, a point of the unit sphere.

    Attributes:
        codebook_dim: Dimension of the codebook.
        codebook_size: Size of the codebook, ``2 ** codebook_dim``.
        codebook: Every code, ``[codebook_size, codebook_dim]`` (a non-persistent
            buffer: it follows ``.to()`` but is not in the ``state_dict``). It
            holds ``2 ** codebook_dim`` rows, so keep ``codebook_dim`` small.
    """

    codebook: torch.Tensor

    def __init__(self, codebook_dim: int) -> None:
        """Create the codebook.

        Args:
            codebook_dim: Number of bits per code (at least 1).
        """
        super().__init__()
        if not isinstance(codebook_dim, int) or codebook_dim < 1:
            raise ValueError(f"codebook_dim must be an int >= 1, not {codebook_dim!r}")
        self.codebook_dim = codebook_dim
        self.codebook_size = 2**codebook_dim
        self.register_buffer(
            "mask",
            2 ** torch.arange(codebook_dim - 1, -1, -1, dtype=torch.long),
            persistent=False,
        )
        codes = self.indices_to_codes(torch.arange(self.codebook_size))
        self.register_buffer("codebook", codes, persistent=False)

    @staticmethod
    def bits_to_codes(bits: torch.Tensor) -> torch.Tensor:
        """Convert bits to codes, which are bits of either 0 or 1.

        Args:
            bits: Bits of either 0 or 1, ``[..., d]``.

        Returns:
            Codes ``(2 * bits - 1) / sqrt(d)``, on the unit sphere of
            dimension ``d`` (the last axis).

        Examples:
            >>> bits = torch.tensor([[0., 1.], [1., 0.]])
            >>> BSQCodebook.bits_to_codes(bits)
            tensor([[-0.7071,  0.7071],
                    [ 0.7071, -0.7071]])
            >>> bits = torch.tensor([[0., 0., 1.], [1., 0., 0.]])
            >>> BSQCodebook.bits_to_codes(bits)
            tensor([[-0.5774, -0.5774,  0.5774],
                    [ 0.5774, -0.5774, -0.5774]])
        """
        return (bits * 2 - 1) / math.sqrt(bits.shape[-1])

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Convert indices to codes, which are bits of either -1 or 1 (scaled).

        Args:
            indices: Integer indices ``[...]`` or ``[..., 1]`` (the reference's
                layout; the trailing 1 is dropped).

        Returns:
            Codes ``[..., codebook_dim]`` (most significant bit first).

        Examples:
            >>> indices = torch.tensor([[31], [19]])
            >>> codebook = BSQCodebook(5)
            >>> codebook.indices_to_codes(indices)
            tensor([[ 0.4472,  0.4472,  0.4472,  0.4472,  0.4472],
                    [ 0.4472, -0.4472, -0.4472,  0.4472,  0.4472]])
        """
        indices = torch.as_tensor(indices, device=self.mask.device)
        if indices.ndim > 0 and indices.shape[-1] == 1:
            indices = indices.squeeze(-1)
        bits = (indices.long().unsqueeze(-1) & self.mask) != 0
        return self.bits_to_codes(bits.to(torch.get_default_dtype()))

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Convert codes ``[..., codebook_dim]`` (signs matter) to indices ``[...]``."""
        if codes.shape[-1] != self.codebook_dim:
            raise ValueError(
                f"codes must end with codebook_dim={self.codebook_dim}, "
                f"got shape {tuple(codes.shape)}"
            )
        return ((codes > 0).long() * self.mask.to(codes.device)).sum(dim=-1)


# -- the head -------------------------------------------------------------------


def _straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass.

    ``soft - soft.detach()`` is exactly zero, so the value is exactly ``hard``.
    """
    return hard + (soft - soft.detach())


def _check_head_args(in_dim: Any, dist: Any, n_groups: Any) -> None:
    if dist not in _DISTS:
        raise ValueError(f"dist must be one of {_DISTS}, not {dist!r}")
    if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim < 1:
        raise ValueError(f"in_dim must be a positive int, not {in_dim!r}")
    if not isinstance(n_groups, int) or isinstance(n_groups, bool) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive int, not {n_groups!r}")
    if in_dim % n_groups != 0:
        raise ValueError(
            f"in_dim ({in_dim}) must be divisible by n_groups ({n_groups})"
        )


def _check_last_dim(x: Any, expected: int, dist: str, in_dim: int) -> None:
    if x.ndim == 0 or x.shape[-1] != expected:
        raise ValueError(
            f"a {dist} head with in_dim={in_dim} expects inputs [..., {expected}], "
            f"got shape {tuple(x.shape)}"
        )


class Distribution(torch.nn.Module):
    """A distribution function: features to a distribution and a sample of it.

    - ``"normal"``: input ``[..., 2 * in_dim]``; the first half is the mean,
      the second half gives ``std = softplus(.) + 1e-6`` (never zero); ``stoch``
      is ``mean + std * eps`` (reparameterised), or ``mean`` when deterministic.
    - ``"categorical"``: input ``[..., in_dim]`` split into ``n_groups`` groups:
      ``logits = inv_tmp * x`` ``[..., n_groups, in_dim // n_groups]``,
      ``probs = softmax(logits)``, ``stoch`` a one-hot sample per group with the
      straight-through estimator (value exactly one-hot, gradient of
      ``probs``), flattened to ``[..., in_dim]``; deterministic: argmax one-hot.
    - ``"bernoulli"``: as categorical with ``probs = sigmoid(logits)`` and
      independent bits; deterministic: ``probs > 0.5``.

    The module has no parameters. It is deterministic when the call says so
    or when its ``deterministic`` attribute is True; ``eval()`` sets that
    attribute and ``train()`` clears it (as ``model.eval()`` does in the JAX
    runtime).

    Args:
        in_dim: Input dimension (of the distribution; a normal head reads twice
            as many features).
        dist: Distribution type: ``"normal"``, ``"categorical"`` or
            ``"bernoulli"``.
        n_groups: Number of groups. Default is 1. This is used for the
            categorical and Bernoulli distributions; it must divide ``in_dim``.
        spherical: Whether to project samples to the unit sphere. Default is
            False. This is used for the categorical and Bernoulli
            distributions. If True and dist=="categorical", the samples are
            projected from {0, 1} to {-1, 1}. If True and dist=="bernoulli",
            the samples are projected from {0, 1} to the unit sphere (each
            group to ``(2 * bit - 1) / sqrt(group size)``); refer to
            https://arxiv.org/abs/2406.07548

    Examples:
        >>> dist = Distribution(10, "normal")
        >>> data = torch.randn(2, 20)
        >>> posterior = dist(data)
        >>> posterior.__class__.__name__
        'NormalStoch'
        >>> posterior.shape
        NormalShape(mean=torch.Size([2, 10]), std=torch.Size([2, 10]), stoch=torch.Size([2, 10]))
        >>> dist = Distribution(10, "categorical", n_groups=2)
        >>> data = torch.randn(2, 10)
        >>> posterior = dist(data)
        >>> posterior.__class__.__name__
        'CategoricalStoch'
        >>> posterior.shape
        CategoricalShape(logits=torch.Size([2, 2, 5]), probs=torch.Size([2, 2, 5]), stoch=torch.Size([2, 10]))
        >>> dist = Distribution(10, "bernoulli", n_groups=2)
        >>> data = torch.randn(2, 10)
        >>> posterior = dist(data)
        >>> posterior.__class__.__name__
        'BernoulliStoch'
        >>> posterior.shape
        BernoulliShape(logits=torch.Size([2, 2, 5]), probs=torch.Size([2, 2, 5]), stoch=torch.Size([2, 10]))
    """  # noqa: E501

    def __init__(
        self,
        in_dim: int,
        dist: DistName,
        n_groups: int = 1,
        spherical: bool = False,
    ) -> None:
        """Create the head (arguments in the class docstring)."""
        super().__init__()
        _check_head_args(in_dim, dist, n_groups)
        self.in_dim = in_dim
        self.dist = dist
        self.n_groups = n_groups
        self.spherical = bool(spherical)
        self.deterministic = False

    def train(self, mode: bool = True) -> Distribution:
        """Set training mode; ``deterministic`` becomes ``not mode``."""
        super().train(mode)
        self.deterministic = not mode
        return self

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, dist={self.dist!r}, n_groups={self.n_groups}, "
            f"spherical={self.spherical}"
        )

    def forward(
        self, x: torch.Tensor, deterministic: bool = False, inv_tmp: float = 1.0
    ) -> StochState:
        """Compute the posterior distribution.

        Args:
            x: Input tensor.
            deterministic: Whether to use the deterministic mode. Default is
                False (the ``deterministic`` attribute also switches it on).
                If True and dist=="normal", the mean is returned. If True and
                dist=="categorical", the one-hot vector computed by argmax is
                returned. If True and dist=="bernoulli", 1 is returned where
                probs > 0.5 and 0 elsewhere. Categorical and Bernoulli values
                keep the straight-through gradient of ``probs``.
            inv_tmp: Inverse temperature. Default is 1.0. This is used for the
                categorical and Bernoulli distributions (``logits = inv_tmp * x``).

        Returns:
            The :class:`NormalStoch`, :class:`CategoricalStoch` or
            :class:`BernoulliStoch` of ``x``.
        """
        deterministic = bool(deterministic) or self.deterministic
        if self.dist == "normal":
            return self.normal(x, deterministic)
        if self.dist == "categorical":
            return self.categorical(x, deterministic, inv_tmp)
        return self.bernoulli(x, deterministic, inv_tmp)

    def normal(self, x: torch.Tensor, deterministic: bool = False) -> NormalStoch:
        """Normal head: ``mean, softplus(.) + 1e-6`` from the two halves of ``x``."""
        _check_last_dim(x, 2 * self.in_dim, "normal", self.in_dim)
        mean, raw = torch.chunk(x, 2, dim=-1)
        std = F.softplus(raw) + STD_EPS
        stoch = mean if deterministic else mean + std * torch.randn_like(mean)
        return NormalStoch._make(mean, std, stoch)

    def _grouped_logits(self, x: torch.Tensor, inv_tmp: float) -> torch.Tensor:
        _check_last_dim(x, self.in_dim, self.dist, self.in_dim)
        groups = x.reshape(*x.shape[:-1], self.n_groups, self.in_dim // self.n_groups)
        return groups * inv_tmp

    def categorical(
        self, x: torch.Tensor, deterministic: bool = False, inv_tmp: float = 1.0
    ) -> CategoricalStoch:
        """Categorical head: a straight-through one-hot sample per group."""
        logits = self._grouped_logits(x, inv_tmp)
        probs = torch.softmax(logits, dim=-1)
        if deterministic:
            hard = self.deterministic_onehot(logits)
        else:
            index = D.Categorical(probs=probs.detach(), validate_args=False).sample()
            hard = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
        sample = _straight_through(hard, probs)
        if self.spherical:
            sample = sample * 2 - 1
        return CategoricalStoch._make(logits, probs, sample.flatten(-2))

    def bernoulli(
        self, x: torch.Tensor, deterministic: bool = False, inv_tmp: float = 1.0
    ) -> BernoulliStoch:
        """Bernoulli head: straight-through bits, BSQ-projected when spherical."""
        logits = self._grouped_logits(x, inv_tmp)
        probs = torch.sigmoid(logits)
        if deterministic:
            hard = (probs > 0.5).to(probs.dtype)
        else:
            hard = torch.bernoulli(probs.detach())
        sample = _straight_through(hard, probs)
        if self.spherical:
            sample = BSQCodebook.bits_to_codes(sample)
        return BernoulliStoch._make(logits, probs, sample.flatten(-2))

    def deterministic_onehot(self, input: torch.Tensor) -> torch.Tensor:
        """Compute the one-hot vector by argmax (over the last axis).

        Args:
            input: Input tensor.

        Returns:
            One-hot vector, in the dtype of ``input`` (no gradient path).

        Examples:
            >>> input = torch.arange(6).reshape(2, 3) / 5.0
            >>> dist = Distribution(3, "categorical")
            >>> onehot = dist.deterministic_onehot(input)
            >>> onehot
            tensor([[0., 0., 1.],
                    [0., 0., 1.]])
        """
        index = input.argmax(dim=-1)
        return F.one_hot(index, input.shape[-1]).to(input.dtype)


# -- likelihood -------------------------------------------------------------------


def _batch_mean(nll: torch.Tensor) -> torch.Tensor:
    return nll.mean() if nll.ndim > 0 else nll


def _categorical_targets(
    outputs: CategoricalStoch, targets: torch.Tensor
) -> tuple[str, torch.Tensor]:
    """``("index", [..., G])`` or ``("onehot", [..., G, K])`` from ``targets``."""
    logits = outputs.logits
    batch, (groups, classes) = tuple(logits.shape[:-2]), tuple(logits.shape[-2:])
    shape = tuple(targets.shape)
    floating = targets.is_floating_point()
    if shape == (*batch, groups * classes) and (floating or classes > 1):
        return "onehot", targets.reshape(*batch, groups, classes)
    if not floating and shape == (*batch, groups):
        return "index", targets
    if not floating and groups == 1 and shape == batch:
        return "index", targets.unsqueeze(-1)
    raise ValueError(
        f"categorical targets must be class indices {(*batch, groups)} (integer) "
        f"or one-hot {(*batch, groups * classes)}, got {shape} ({targets.dtype})"
    )


def head_nll(outputs: StochState, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``targets`` under a head, averaged over the batch.

    - normal: targets shaped like ``mean``; per example
      ``sum_d [log(2 pi)/2 + log std + (t - mean)^2 / (2 std^2)]`` over the last
      axis;
    - categorical: class indices per group ``[..., n_groups]`` (integer; plain
      ``[...]`` when ``n_groups == 1``) or one-hot ``[..., in_dim]``; per example
      ``-sum_g log p_g(t_g)``;
    - bernoulli: bits ``[..., in_dim]`` in {0, 1}; per example the summed binary
      cross-entropy with the logits.

    Args:
        outputs: The head's container (``logits`` already include ``inv_tmp``).
        targets: Observed values.

    Returns:
        A 0-d tensor: the mean over every batch axis of the per-example NLL.
    """
    if isinstance(outputs, NormalStoch):
        mean, std = outputs.mean, outputs.std
        if tuple(targets.shape) != tuple(mean.shape):
            raise ValueError(
                f"normal targets must have the shape of the mean "
                f"{tuple(mean.shape)}, got {tuple(targets.shape)}"
            )
        z = (targets.to(mean.dtype) - mean) / std
        nll = _LOG_SQRT_2PI + torch.log(std) + 0.5 * z * z
        return _batch_mean(nll.sum(dim=-1))
    if isinstance(outputs, CategoricalStoch):
        log_p = torch.log_softmax(outputs.logits, dim=-1)
        kind, values = _categorical_targets(outputs, targets)
        if kind == "onehot":
            picked = (values.to(log_p.dtype) * log_p).sum(dim=-1)
        else:
            picked = log_p.gather(-1, values.long().unsqueeze(-1)).squeeze(-1)
        return _batch_mean(-picked.sum(dim=-1))
    if isinstance(outputs, BernoulliStoch):
        logits = outputs.logits
        expected = (*logits.shape[:-2], logits.shape[-2] * logits.shape[-1])
        if tuple(targets.shape) != expected:
            raise ValueError(
                f"bernoulli targets must be bits {expected}, got {tuple(targets.shape)}"
            )
        bits = targets.reshape(logits.shape).to(logits.dtype)
        nll = F.binary_cross_entropy_with_logits(logits, bits, reduction="none")
        return _batch_mean(nll.sum(dim=(-2, -1)))
    raise TypeError(
        f"head_nll needs a NormalStoch, CategoricalStoch or BernoulliStoch, "
        f"not {type(outputs).__name__}"
    )


# -- Monte Carlo prediction -------------------------------------------------------


def _normal_parts(output: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, NormalStoch):
        raise TypeError(
            "the model must return a NormalStoch (a normal head), "
            f"not {type(output).__name__}"
        )
    return output.mean, output.std, output.stoch


def _normal_samples(
    model: torch.nn.Module,
    inputs: tuple[Any, ...],
    num_samples: int,
    vectorize: bool | None,
) -> NormalStoch:
    """``num_samples`` normal-head outputs of ``model(*inputs)`` stacked on axis 0.

    Vectorised like :func:`~.predict.mc_samples`.
    """
    from .predict import sample_outputs  # predict is the higher-level module

    parts = sample_outputs(
        model, inputs, num_samples, _normal_parts, vectorize=vectorize, joint=False
    )
    return NormalStoch(*parts)


def predictive_normal(
    model: torch.nn.Module,
    *inputs: Any,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    vectorize: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the posterior predictive of a normal head.

    The predictive is the mixture of the ``num_samples`` normals
    ``N(mean_s, std_s^2)`` given by forward passes with fresh weights. By the
    law of total variance its mean is ``mean_s`` averaged and its variance
    ``mean(std_s^2)`` (aleatoric) plus the population variance of ``mean_s``
    (epistemic). Runs under ``torch.no_grad()``; tuple outputs contribute their
    first element. ``vectorize`` is as in :func:`~.predict.mc_samples`.

    Returns:
        ``(mean, std)``, each shaped like the head's ``mean``.
    """
    samples = _normal_samples(model, inputs, num_samples, vectorize)
    mean = samples.mean.mean(dim=0)
    variance = samples.std.square().mean(dim=0) + samples.mean.var(dim=0, correction=0)
    return mean, variance.sqrt()


def _quantiles(sorted_draws: torch.Tensor, qs: Sequence[float]) -> list[torch.Tensor]:
    """Linear-interpolation quantiles (numpy's default) of draws sorted on axis 0."""
    n = sorted_draws.shape[0]
    result = []
    for q in qs:
        position = q * (n - 1)
        low = math.floor(position)
        high = min(low + 1, n - 1)
        frac = position - low
        result.append(sorted_draws[low] * (1 - frac) + sorted_draws[high] * frac)
    return result


def predictive_interval(
    model: torch.nn.Module,
    *inputs: Any,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    level: float = 0.9,
    draws_per_sample: int = 64,
    vectorize: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Central ``level`` interval of the posterior predictive of a normal head.

    Draws ``draws_per_sample`` values from each of the ``num_samples`` normals
    of :func:`predictive_normal`'s mixture and returns the ``(1 - level) / 2``
    and ``(1 + level) / 2`` empirical quantiles (linear interpolation) of the
    ``num_samples * draws_per_sample`` draws. Memory grows as that product
    times the output size.

    Returns:
        ``(low, high)``, each shaped like the head's ``mean``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    if draws_per_sample < 1:
        raise ValueError(f"draws_per_sample must be >= 1, not {draws_per_sample}")
    samples = _normal_samples(model, inputs, num_samples, vectorize)
    eps = torch.randn(
        (draws_per_sample, *samples.mean.shape),
        dtype=samples.mean.dtype,
        device=samples.mean.device,
    )
    draws = (samples.mean + samples.std * eps).flatten(0, 1)
    low, high = _quantiles(
        draws.sort(dim=0).values, ((1.0 - level) / 2, (1.0 + level) / 2)
    )
    return low, high
