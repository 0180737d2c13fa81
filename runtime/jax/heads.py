"""Stochastic output heads: Normal, categorical and Bernoulli latent/output layers.

A :class:`Distribution` head turns the features of a network into the
parameters of a distribution and a differentiable sample of it, returned as a
container (:class:`NormalStoch`, :class:`CategoricalStoch`,
:class:`BernoulliStoch`) that behaves like a bundle of arrays: field access,
``.shape``, indexing, array methods applied to every field, stacking and
concatenation (:func:`stack_dist`, :func:`cat_dist`), and a distribution object
(:func:`get_dist`). The containers are pytrees, so they pass through
``jax.jit``, ``jax.vmap`` and ``nnx.jit``.

Layouts: a normal head maps ``[..., 2 * in_dim]`` to fields ``[..., in_dim]``;
a categorical or Bernoulli head with ``n_groups`` groups maps ``[..., in_dim]``
to ``logits``/``probs`` ``[..., n_groups, in_dim // n_groups]`` and ``stoch``
``[..., in_dim]``. Container operations that take a ``dim`` or an index
address the batch axes (the leading ones); the event axes (``stoch``'s last,
``logits``' last two) are handled for you.

The distribution objects (:class:`IndependentNormal`,
:class:`IndependentOneHotCategorical`, :class:`IndependentBernoulli`) are small
classes written here, with the methods of their ``torch.distributions``
counterparts that the runtime needs, so the JAX runtime gains no dependency.

Also here: :func:`head_nll`, the data term that :class:`~.losses.ELBOLoss`
uses when it is given no loss function, and Monte Carlo prediction with a
normal head (:func:`predictive_normal`, :func:`predictive_interval`).
Everything mirrors the torch runtime's ``heads`` module (same names, same
maths); random draws come from ``rngs.sample()``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .distributions import DEFAULT_RNGS
from .functional import softplus
from .predict import _rng_streams, mc_samples

__all__ = [
    "BSQCodebook",
    "BernoulliShape",
    "BernoulliStoch",
    "CategoricalShape",
    "CategoricalStoch",
    "Distribution",
    "IndependentBernoulli",
    "IndependentNormal",
    "IndependentOneHotCategorical",
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


# -- distribution objects -----------------------------------------------------


def _key(key: jax.Array | nnx.Rngs) -> jax.Array:
    return key.sample() if isinstance(key, nnx.Rngs) else key


def _register(cls: type, names: tuple[str, ...]) -> None:
    """Register ``cls`` as a pytree whose children are the attributes ``names``.

    Unflattening bypasses ``__init__`` (and validation), as JAX may rebuild
    pytrees with placeholder leaves.
    """

    def flatten_with_keys(obj: Any) -> tuple[list[Any], None]:
        children = [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in names]
        return children, None

    def flatten(obj: Any) -> tuple[list[Any], None]:
        return [getattr(obj, n) for n in names], None

    def unflatten(_: None, children: Sequence[Any]) -> Any:
        obj = object.__new__(cls)
        for name, child in zip(names, children, strict=True):
            object.__setattr__(obj, name, child)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)


class IndependentNormal:
    """Normal distributions, independent over the last axis (one event).

    As ``torch.distributions.Independent(Normal(loc, scale), 1)``.
    """

    def __init__(self, loc: jax.Array, scale: jax.Array) -> None:
        """Create the distribution from arrays of one shape ``[..., D]``."""
        self.loc = jnp.asarray(loc)
        self.scale = jnp.asarray(scale)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """All axes but the last."""
        return tuple(self.loc.shape[:-1])

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The last axis."""
        return tuple(self.loc.shape[-1:])

    @property
    def mean(self) -> jax.Array:
        """``loc``."""
        return self.loc

    @property
    def mode(self) -> jax.Array:
        """``loc``."""
        return self.loc

    @property
    def stddev(self) -> jax.Array:
        """``scale``."""
        return self.scale

    @property
    def variance(self) -> jax.Array:
        """``scale ** 2``."""
        return jnp.square(self.scale)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Log-density of ``value`` ``[..., D]``, summed over the last axis."""
        z = (value - self.loc) / self.scale
        return jnp.sum(-_LOG_SQRT_2PI - jnp.log(self.scale) - 0.5 * z * z, axis=-1)

    def entropy(self) -> jax.Array:
        """``sum(1/2 + log(2 pi)/2 + log scale)`` over the last axis."""
        return jnp.sum(0.5 + _LOG_SQRT_2PI + jnp.log(self.scale), axis=-1)

    def sample(
        self, key: jax.Array | nnx.Rngs, sample_shape: tuple[int, ...] = ()
    ) -> jax.Array:
        """Draw ``[*sample_shape, *loc.shape]`` values (reparameterised).

        Args:
            key: A PRNG key, or an ``nnx.Rngs`` (its ``sample()`` key is used).
            sample_shape: Leading shape of the draws.
        """
        shape = (*sample_shape, *self.loc.shape)
        eps = jax.random.normal(_key(key), shape, self.loc.dtype)
        return self.loc + self.scale * eps

    rsample = sample


class IndependentOneHotCategorical:
    """One-hot categorical distributions over the last axis, independent per group.

    As ``torch.distributions.Independent(OneHotCategorical(logits), 1)`` for
    logits ``[..., G, K]``: events are one-hot arrays ``[G, K]``.
    """

    def __init__(self, logits: jax.Array) -> None:
        """Create the distribution from (unnormalised) logits ``[..., G, K]``."""
        self.logits = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)

    @property
    def probs(self) -> jax.Array:
        """``softmax(logits)``."""
        return jnp.exp(self.logits)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """All axes but the last two."""
        return tuple(self.logits.shape[:-2])

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The last two axes (groups, classes)."""
        return tuple(self.logits.shape[-2:])

    @property
    def mean(self) -> jax.Array:
        """``probs``."""
        return self.probs

    @property
    def mode(self) -> jax.Array:
        """One-hot argmax of each group."""
        index = jnp.argmax(self.logits, axis=-1)
        return jax.nn.one_hot(index, self.logits.shape[-1], dtype=self.logits.dtype)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Log-probability of one-hot ``value`` ``[..., G, K]``, summed over groups."""
        return jnp.sum(value * self.logits, axis=(-2, -1))

    def entropy(self) -> jax.Array:
        """Entropy, summed over groups."""
        return -jnp.sum(self.probs * self.logits, axis=(-2, -1))

    def sample(
        self, key: jax.Array | nnx.Rngs, sample_shape: tuple[int, ...] = ()
    ) -> jax.Array:
        """Draw one-hot arrays ``[*sample_shape, *logits.shape]``.

        Args:
            key: A PRNG key, or an ``nnx.Rngs`` (its ``sample()`` key is used).
            sample_shape: Leading shape of the draws.
        """
        shape = (*sample_shape, *self.logits.shape[:-1])
        index = jax.random.categorical(_key(key), self.logits, axis=-1, shape=shape)
        return jax.nn.one_hot(index, self.logits.shape[-1], dtype=self.logits.dtype)


class IndependentBernoulli:
    """Bernoulli distributions, independent over the last two axes.

    As ``torch.distributions.Independent(Bernoulli(logits=logits), 2)`` for
    logits ``[..., G, K]``: events are bit arrays ``[G, K]``.
    """

    def __init__(self, logits: jax.Array) -> None:
        """Create the distribution from logits ``[..., G, K]``."""
        self.logits = jnp.asarray(logits)

    @property
    def probs(self) -> jax.Array:
        """``sigmoid(logits)``."""
        return jax.nn.sigmoid(self.logits)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """All axes but the last two."""
        return tuple(self.logits.shape[:-2])

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The last two axes (groups, bits)."""
        return tuple(self.logits.shape[-2:])

    @property
    def mean(self) -> jax.Array:
        """``probs``."""
        return self.probs

    @property
    def mode(self) -> jax.Array:
        """``probs > 0.5`` as 0/1."""
        return (self.logits > 0).astype(self.logits.dtype)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Log-probability of bits ``value`` ``[..., G, K]``, summed over the event."""
        log_p = value * self.logits - jax.nn.softplus(self.logits)
        return jnp.sum(log_p, axis=(-2, -1))

    def entropy(self) -> jax.Array:
        """Entropy ``softplus(l) - l * sigmoid(l)``, summed over the event."""
        per_bit = jax.nn.softplus(self.logits) - self.logits * self.probs
        return jnp.sum(per_bit, axis=(-2, -1))

    def sample(
        self, key: jax.Array | nnx.Rngs, sample_shape: tuple[int, ...] = ()
    ) -> jax.Array:
        """Draw bits ``[*sample_shape, *logits.shape]`` (as 0/1 floats).

        Args:
            key: A PRNG key, or an ``nnx.Rngs`` (its ``sample()`` key is used).
            sample_shape: Leading shape of the draws.
        """
        shape = (*sample_shape, *self.logits.shape)
        bits = jax.random.bernoulli(_key(key), self.probs, shape)
        return bits.astype(self.logits.dtype)


_register(IndependentNormal, ("loc", "scale"))
_register(IndependentOneHotCategorical, ("logits",))
_register(IndependentBernoulli, ("logits",))


# -- containers ---------------------------------------------------------------

_S = TypeVar("_S", bound="_Stoch")


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


class _Stoch:
    """Behaviour shared by the three containers (fields are arrays)."""

    _shape_type: ClassVar[type]
    #: True when ``logits``/``probs`` carry a group axis that ``stoch`` lacks.
    _grouped: ClassVar[bool] = False

    # construction ----------------------------------------------------------

    @classmethod
    def _make(cls: type[_S], *values: jax.Array) -> _S:
        """Build without validation (for values valid by construction)."""
        obj = cls.__new__(cls)
        for field, value in zip(fields(cls), values, strict=True):
            object.__setattr__(obj, field.name, value)
        return obj

    def _values(self) -> tuple[jax.Array, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def _map(self: _S, fn: Callable[[jax.Array], jax.Array]) -> _S:
        return type(self)(*(fn(value) for value in self._values()))

    def _to_arrays(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, jax.Array):
                try:
                    value = jnp.asarray(value)
                except TypeError as error:
                    raise TypeError(
                        f"{type(self).__name__}.{f.name} must be an array, "
                        f"not {type(value).__name__}"
                    ) from error
                object.__setattr__(self, f.name, value)

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

    # array-like behaviour ----------------------------------------------------

    @property
    def shape(self) -> Any:
        """The shape of every field, as a ``*Shape`` named tuple."""
        return self._shape_type(*(tuple(value.shape) for value in self._values()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Apply a ``jax.Array`` method to every field.

        ``normal.flatten()`` is ``NormalStoch(mean.flatten(), std.flatten(),
        stoch.flatten())``; ``reshape``, ``astype``, ``transpose``... work
        alike. A method returning arrays gives a container of the same type
        (validated); any other result gives the ``*Shape`` named tuple of the
        per-field results.

        Raises:
            AttributeError: If ``name`` is not a method of ``jax.Array``.
        """
        if name.startswith("__") or not callable(getattr(jax.Array, name, None)):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            )

        def apply(*args: Any, **kwargs: Any) -> Any:
            results = [
                getattr(value, name)(*args, **kwargs) for value in self._values()
            ]
            if all(isinstance(result, jax.Array) for result in results):
                return type(self)(*results)
            return self._shape_type(*results)

        apply.__name__ = name
        return apply

    def __getitem__(self: _S, idx: Any) -> _S:
        """Index the batch axes of every field (``stoch[0]``, ``stoch[:, 1:3]``).

        For categorical and Bernoulli containers only the batch axes may be
        indexed (``logits`` has one axis more than ``stoch``). As for any JAX
        array, out-of-range integer indices are clamped, not rejected.

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
        """Remove the batch axis ``dim`` (of size 1, as ``jnp.squeeze`` requires)."""
        axis = self._batch_axis(dim)
        return self._map(lambda value: jnp.squeeze(value, axis))

    def unsqueeze(self: _S, dim: int) -> _S:
        """Insert a batch axis of size 1 at ``dim`` (``-1``: after the last one)."""
        axis = self._batch_axis(dim, extra=1)
        return self._map(lambda value: jnp.expand_dims(value, axis))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fields with ``numpy.savez`` (``.npz`` appended if missing)."""
        np.savez(
            path, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        )

    @classmethod
    def load(cls: type[_S], path: str | os.PathLike[str]) -> _S:
        """Load a container written by :meth:`save`."""
        name = os.fspath(path)
        if not os.path.exists(name) and os.path.exists(name + ".npz"):
            name += ".npz"
        with np.load(name) as data:
            return cls(**{f.name: jnp.asarray(data[f.name]) for f in fields(cls)})


@dataclass(eq=False)
class NormalStoch(_Stoch):
    """Parameters of a normal distribution and its stochastic sample.

    Attributes:
        mean: Mean of the normal distribution.
        std: Standard deviation of the normal distribution.
        stoch: Sample from the normal distribution with the reparametrization
            trick (``mean + std * eps``).
    """

    mean: jax.Array
    std: jax.Array
    stoch: jax.Array

    _shape_type: ClassVar[type] = NormalShape

    def __post_init__(self) -> None:
        """Check the fields (arrays are converted with ``jnp.asarray``).

        Raises:
            TypeError: If a field is not array-like.
            ValueError: If the three shapes differ or ``std`` is negative (not
                checked for traced values).
        """
        self._to_arrays()
        if not self.mean.shape == self.std.shape == self.stoch.shape:
            raise ValueError(
                "NormalStoch fields must have one shape, got "
                f"mean {tuple(self.mean.shape)}, std {tuple(self.std.shape)}, "
                f"stoch {tuple(self.stoch.shape)}"
            )
        if not _is_traced(self.std) and bool(np.any(np.asarray(self.std) < 0)):
            raise ValueError("NormalStoch.std must be non-negative")

    def get_distribution(self) -> IndependentNormal:
        """:class:`IndependentNormal` ``(mean, std)``: one event over the last axis."""
        return IndependentNormal(self.mean, self.std)


class _GroupedStoch(_Stoch):
    """``logits``/``probs`` ``[..., G, K]`` and ``stoch`` ``[..., G * K]``."""

    _grouped: ClassVar[bool] = True
    logits: jax.Array
    probs: jax.Array
    stoch: jax.Array

    def __post_init__(self) -> None:
        """Check the fields (arrays are converted with ``jnp.asarray``).

        Raises:
            TypeError: If a field is not array-like.
            ValueError: If ``probs`` and ``logits`` differ in shape, or
                ``stoch`` does not match them.
        """
        self._to_arrays()
        name = type(self).__name__
        if self.probs.shape != self.logits.shape:
            raise ValueError(
                f"{name}.probs must have the shape of logits "
                f"{tuple(self.logits.shape)}, got {tuple(self.probs.shape)}"
            )
        if self.stoch.size != self.logits.size or (
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

    logits: jax.Array
    probs: jax.Array
    stoch: jax.Array

    _shape_type: ClassVar[type] = CategoricalShape

    def get_distribution(self) -> IndependentOneHotCategorical:
        """:class:`IndependentOneHotCategorical` of ``logits``.

        Events are one-hot arrays ``[..., G, K]`` (not the flattened, possibly
        spherical ``stoch``).
        """
        return IndependentOneHotCategorical(self.logits)


@dataclass(eq=False)
class BernoulliStoch(_GroupedStoch):
    """Parameters of a Bernoulli distribution and its stochastic sample.

    Attributes:
        logits: Logits of the Bernoulli distribution ``[..., G, K]``.
        probs: Probabilities of the Bernoulli distribution ``[..., G, K]``.
        stoch: Sample from the Bernoulli distribution with the straight-through
            estimator, ``[..., G * K]``.
    """

    logits: jax.Array
    probs: jax.Array
    stoch: jax.Array

    _shape_type: ClassVar[type] = BernoulliShape

    def get_distribution(self) -> IndependentBernoulli:
        """:class:`IndependentBernoulli` of ``logits`` (events: bits ``[G, K]``)."""
        return IndependentBernoulli(self.logits)


_register(NormalStoch, ("mean", "std", "stoch"))
_register(CategoricalStoch, ("logits", "probs", "stoch"))
_register(BernoulliStoch, ("logits", "probs", "stoch"))

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
        >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        >>> dist1 = NormalStoch(jax.random.normal(k1, (2, 3)),
        ...                     jax.random.uniform(k2, (2, 3)),
        ...                     jax.random.normal(k3, (2, 3)))
        >>> dist2 = NormalStoch(jax.random.normal(k3, (2, 3)),
        ...                     jax.random.uniform(k1, (2, 3)),
        ...                     jax.random.normal(k2, (2, 3)))
        >>> stack_dist = stack_dist((dist1, dist2))
        >>> stack_dist.shape
        NormalShape(mean=(2, 2, 3), std=(2, 2, 3), stoch=(2, 2, 3))
    """
    kind = _check_same_type(stochs, "stack_dist")
    axis = stochs[0]._batch_axis(dim, extra=1)
    columns = zip(*(s._values() for s in stochs), strict=True)
    return kind(*(jnp.stack(column, axis=axis) for column in columns))


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
        >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        >>> dist1 = NormalStoch(jax.random.normal(k1, (2, 3)),
        ...                     jax.random.uniform(k2, (2, 3)),
        ...                     jax.random.normal(k3, (2, 3)))
        >>> dist2 = NormalStoch(jax.random.normal(k3, (2, 3)),
        ...                     jax.random.uniform(k1, (2, 3)),
        ...                     jax.random.normal(k2, (2, 3)))
        >>> cat_dist = cat_dist((dist1, dist2))
        >>> cat_dist.shape
        NormalShape(mean=(2, 6), std=(2, 6), stoch=(2, 6))
    """
    kind = _check_same_type(stochs, "cat_dist")
    first = stochs[0]
    ndim = first.stoch.ndim
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim {dim} is out of range for stoch of {ndim} axes")
    axis = dim % ndim
    columns = list(zip(*(s._values() for s in stochs), strict=True))
    if kind is NormalStoch or axis < first._batch_ndim:
        return kind(*(jnp.concatenate(column, axis=axis) for column in columns))
    # event axis of a grouped container: logits/probs gain groups
    logits, probs, stoch = columns
    return kind(
        jnp.concatenate(logits, axis=-2),
        jnp.concatenate(probs, axis=-2),
        jnp.concatenate(stoch, axis=-1),
    )


def get_dist(
    state: StochState,
) -> IndependentNormal | IndependentOneHotCategorical | IndependentBernoulli:
    """The distribution object of a container (``state.get_distribution()``).

    Args:
        state: A normal, categorical or Bernoulli container.

    Returns:
        :class:`IndependentNormal`, :class:`IndependentOneHotCategorical` or
        :class:`IndependentBernoulli`; events as in each container's
        ``get_distribution``.
    """
    if not isinstance(state, _STOCH_TYPES):
        raise TypeError(f"get_dist needs a Stoch container, not {type(state).__name__}")
    return state.get_distribution()


# -- BSQ codebook ---------------------------------------------------------------


class BSQCodebook(nnx.Module):
    """Binary Spherical Quantization codebook.

    Reference: https://arxiv.org/abs/2406.07548. Code ``i`` is the binary
    expansion of ``i`` (most significant bit first) mapped to
    ``(2 * bit - 1) / sqrt(codebook_dim)``, a point of the unit sphere.

    Attributes:
        codebook_dim: Dimension of the codebook.
        codebook_size: Size of the codebook, ``2 ** codebook_dim``.
        codebook: Every code, ``[codebook_size, codebook_dim]``: a constant
            array (not an ``nnx.Variable``, like the torch runtime's
            non-persistent buffer, so state transfer ignores it). It holds
            ``2 ** codebook_dim`` rows, so keep ``codebook_dim`` small.
    """

    def __init__(self, codebook_dim: int) -> None:
        """Create the codebook.

        Args:
            codebook_dim: Number of bits per code (at least 1; at most 31, as
                indices are int32).
        """
        if not isinstance(codebook_dim, int) or not 1 <= codebook_dim <= 31:
            raise ValueError(
                f"codebook_dim must be an int in [1, 31], not {codebook_dim!r}"
            )
        self.codebook_dim = codebook_dim
        self.codebook_size = 2**codebook_dim
        self.codebook = self.indices_to_codes(jnp.arange(self.codebook_size))

    @staticmethod
    def bits_to_codes(bits: jax.Array) -> jax.Array:
        """Convert bits to codes, which are bits of either 0 or 1.

        Args:
            bits: Bits of either 0 or 1, ``[..., d]``.

        Returns:
            Codes ``(2 * bits - 1) / sqrt(d)``, on the unit sphere of
            dimension ``d`` (the last axis).

        Examples:
            >>> bits = jnp.array([[0., 1.], [1., 0.]])
            >>> np.asarray(BSQCodebook.bits_to_codes(bits)).round(4)
            array([[-0.7071,  0.7071],
                   [ 0.7071, -0.7071]], dtype=float32)
            >>> bits = jnp.array([[0., 0., 1.], [1., 0., 0.]])
            >>> np.asarray(BSQCodebook.bits_to_codes(bits)).round(4)
            array([[-0.5774, -0.5774,  0.5774],
                   [ 0.5774, -0.5774, -0.5774]], dtype=float32)
        """
        bits = jnp.asarray(bits)
        return (bits * 2 - 1) / math.sqrt(bits.shape[-1])

    def _shifts(self) -> jax.Array:
        return jnp.arange(self.codebook_dim - 1, -1, -1, dtype=jnp.int32)

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """Convert indices to codes, which are bits of either -1 or 1 (scaled).

        Args:
            indices: Integer indices ``[...]`` or ``[..., 1]`` (the reference's
                layout; the trailing 1 is dropped).

        Returns:
            Codes ``[..., codebook_dim]`` (most significant bit first).

        Examples:
            >>> indices = jnp.array([[31], [19]])
            >>> codebook = BSQCodebook(5)
            >>> np.asarray(codebook.indices_to_codes(indices)).round(4)
            array([[ 0.4472,  0.4472,  0.4472,  0.4472,  0.4472],
                   [ 0.4472, -0.4472, -0.4472,  0.4472,  0.4472]], dtype=float32)
        """
        indices = jnp.asarray(indices)
        if indices.ndim > 0 and indices.shape[-1] == 1:
            indices = indices[..., 0]
        bits = jnp.right_shift(indices.astype(jnp.int32)[..., None], self._shifts()) & 1
        return self.bits_to_codes(bits.astype(jnp.float32))

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """Convert codes ``[..., codebook_dim]`` (signs matter) to indices ``[...]``."""
        codes = jnp.asarray(codes)
        if codes.shape[-1] != self.codebook_dim:
            raise ValueError(
                f"codes must end with codebook_dim={self.codebook_dim}, "
                f"got shape {tuple(codes.shape)}"
            )
        bits = (codes > 0).astype(jnp.int32)
        return jnp.sum(jnp.left_shift(bits, self._shifts()), axis=-1)


# -- the head -------------------------------------------------------------------


def _straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass.

    ``soft - stop_gradient(soft)`` is exactly zero, so the value is exactly
    ``hard``.
    """
    return hard + (soft - jax.lax.stop_gradient(soft))


def _onehot_argmax(x: jax.Array) -> jax.Array:
    return jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype)


@partial(jax.jit, static_argnames=("deterministic",))
def _normal_head(
    x: jax.Array, key: jax.Array | None, deterministic: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    mean, raw = jnp.split(x, 2, axis=-1)
    std = softplus(raw) + STD_EPS
    if deterministic:
        return mean, std, mean
    return mean, std, mean + std * jax.random.normal(key, mean.shape, mean.dtype)


@partial(jax.jit, static_argnames=("n_groups", "spherical", "deterministic"))
def _categorical_head(
    x: jax.Array,
    key: jax.Array | None,
    inv_tmp: Any,
    n_groups: int,
    spherical: bool,
    deterministic: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    logits = x.reshape(*x.shape[:-1], n_groups, x.shape[-1] // n_groups) * inv_tmp
    probs = jax.nn.softmax(logits, axis=-1)
    if deterministic:
        hard = _onehot_argmax(logits)
    else:
        index = jax.random.categorical(key, jax.lax.stop_gradient(logits), axis=-1)
        hard = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    sample = _straight_through(hard, probs)
    if spherical:
        sample = sample * 2 - 1
    return logits, probs, sample.reshape(x.shape)


@partial(jax.jit, static_argnames=("n_groups", "spherical", "deterministic"))
def _bernoulli_head(
    x: jax.Array,
    key: jax.Array | None,
    inv_tmp: Any,
    n_groups: int,
    spherical: bool,
    deterministic: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    logits = x.reshape(*x.shape[:-1], n_groups, x.shape[-1] // n_groups) * inv_tmp
    probs = jax.nn.sigmoid(logits)
    if deterministic:
        hard = (probs > 0.5).astype(probs.dtype)
    else:
        uniform = jax.random.uniform(key, probs.shape, probs.dtype)
        hard = (uniform < jax.lax.stop_gradient(probs)).astype(probs.dtype)
    sample = _straight_through(hard, probs)
    if spherical:
        sample = BSQCodebook.bits_to_codes(sample)
    return logits, probs, sample.reshape(x.shape)


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


class Distribution(nnx.Module):
    """A distribution function: features to a distribution and a sample of it.

    - ``"normal"``: input ``[..., 2 * in_dim]``; the first half is the mean,
      the second half gives ``std = softplus(.) + 1e-6`` (never zero; torch's
      softplus); ``stoch`` is ``mean + std * eps`` (reparameterised), or
      ``mean`` when deterministic.
    - ``"categorical"``: input ``[..., in_dim]`` split into ``n_groups`` groups:
      ``logits = inv_tmp * x`` ``[..., n_groups, in_dim // n_groups]``,
      ``probs = softmax(logits)``, ``stoch`` a one-hot sample per group with the
      straight-through estimator (value exactly one-hot, gradient of
      ``probs``), flattened to ``[..., in_dim]``; deterministic: argmax one-hot.
    - ``"bernoulli"``: as categorical with ``probs = sigmoid(logits)`` and
      independent bits; deterministic: ``probs > 0.5``.

    The module has no parameters; samples draw their key from
    ``rngs.sample()`` (the ``sample`` stream, else the default one), and none
    is drawn in deterministic mode. It is deterministic when the call says so
    or when its ``deterministic`` attribute is True: ``model.eval()`` sets
    that attribute and ``model.train()`` clears it, as for ``nnx.Dropout``.

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
        rngs: Random streams (default: the runtime's shared ``DEFAULT_RNGS``).

    Examples:
        >>> dist = Distribution(10, "normal", rngs=nnx.Rngs(0))
        >>> data = jax.random.normal(jax.random.key(0), (2, 20))
        >>> posterior = dist(data)
        >>> posterior.__class__.__name__
        'NormalStoch'
        >>> posterior.shape
        NormalShape(mean=(2, 10), std=(2, 10), stoch=(2, 10))
        >>> dist = Distribution(10, "categorical", n_groups=2, rngs=nnx.Rngs(0))
        >>> data = jax.random.normal(jax.random.key(1), (2, 10))
        >>> posterior = dist(data)
        >>> posterior.__class__.__name__
        'CategoricalStoch'
        >>> posterior.shape
        CategoricalShape(logits=(2, 2, 5), probs=(2, 2, 5), stoch=(2, 10))
        >>> dist = Distribution(10, "bernoulli", n_groups=2, rngs=nnx.Rngs(0))
        >>> data = jax.random.normal(jax.random.key(2), (2, 10))
        >>> posterior = dist(data)
        >>> posterior.__class__.__name__
        'BernoulliStoch'
        >>> posterior.shape
        BernoulliShape(logits=(2, 2, 5), probs=(2, 2, 5), stoch=(2, 10))
    """

    def __init__(
        self,
        in_dim: int,
        dist: DistName,
        n_groups: int = 1,
        spherical: bool = False,
        rngs: nnx.Rngs = DEFAULT_RNGS,
    ) -> None:
        """Create the head (arguments in the class docstring)."""
        _check_head_args(in_dim, dist, n_groups)
        self.in_dim = in_dim
        self.dist = dist
        self.n_groups = n_groups
        self.spherical = bool(spherical)
        self.deterministic = False
        self.rngs = rngs

    def __call__(
        self, x: jax.Array, deterministic: bool = False, inv_tmp: Any = 1.0
    ) -> StochState:
        """Compute the posterior distribution.

        Args:
            x: Input array.
            deterministic: Whether to use the deterministic mode (a Python
                bool). Default is False (the ``deterministic`` attribute also
                switches it on). If True and dist=="normal", the mean is
                returned. If True and dist=="categorical", the one-hot vector
                computed by argmax is returned. If True and dist=="bernoulli",
                1 is returned where probs > 0.5 and 0 elsewhere. Categorical and
                Bernoulli values keep the straight-through gradient of ``probs``.
            inv_tmp: Inverse temperature (a number or 0-d array). Default is
                1.0. This is used for the categorical and Bernoulli
                distributions (``logits = inv_tmp * x``).

        Returns:
            The :class:`NormalStoch`, :class:`CategoricalStoch` or
            :class:`BernoulliStoch` of ``x``.
        """
        deterministic = bool(deterministic) or bool(self.deterministic)
        if self.dist == "normal":
            return self.normal(x, deterministic)
        if self.dist == "categorical":
            return self.categorical(x, deterministic, inv_tmp)
        return self.bernoulli(x, deterministic, inv_tmp)

    def _key(self, deterministic: bool) -> jax.Array | None:
        return None if deterministic else self.rngs.sample()

    def normal(self, x: jax.Array, deterministic: bool = False) -> NormalStoch:
        """Normal head: ``mean, softplus(.) + 1e-6`` from the two halves of ``x``."""
        x = jnp.asarray(x)
        _check_last_dim(x, 2 * self.in_dim, "normal", self.in_dim)
        values = _normal_head(x, self._key(deterministic), deterministic)
        return NormalStoch._make(*values)

    def categorical(
        self, x: jax.Array, deterministic: bool = False, inv_tmp: Any = 1.0
    ) -> CategoricalStoch:
        """Categorical head: a straight-through one-hot sample per group."""
        x = jnp.asarray(x)
        _check_last_dim(x, self.in_dim, "categorical", self.in_dim)
        values = _categorical_head(
            x,
            self._key(deterministic),
            inv_tmp,
            self.n_groups,
            self.spherical,
            deterministic,
        )
        return CategoricalStoch._make(*values)

    def bernoulli(
        self, x: jax.Array, deterministic: bool = False, inv_tmp: Any = 1.0
    ) -> BernoulliStoch:
        """Bernoulli head: straight-through bits, BSQ-projected when spherical."""
        x = jnp.asarray(x)
        _check_last_dim(x, self.in_dim, "bernoulli", self.in_dim)
        values = _bernoulli_head(
            x,
            self._key(deterministic),
            inv_tmp,
            self.n_groups,
            self.spherical,
            deterministic,
        )
        return BernoulliStoch._make(*values)

    def deterministic_onehot(self, input: jax.Array) -> jax.Array:
        """Compute the one-hot vector by argmax (over the last axis).

        Args:
            input: Input array.

        Returns:
            One-hot vector, in the dtype of ``input`` (no gradient path).

        Examples:
            >>> input = jnp.arange(6).reshape(2, 3) / 5.0
            >>> dist = Distribution(3, "categorical", rngs=nnx.Rngs(0))
            >>> onehot = dist.deterministic_onehot(input)
            >>> onehot
            Array([[0., 0., 1.],
                   [0., 0., 1.]], dtype=float32)
        """
        return _onehot_argmax(jnp.asarray(input))


# -- likelihood -------------------------------------------------------------------


def _batch_mean(nll: jax.Array) -> jax.Array:
    return jnp.mean(nll) if nll.ndim > 0 else nll


def _categorical_targets(
    outputs: CategoricalStoch, targets: jax.Array
) -> tuple[str, jax.Array]:
    """``("index", [..., G])`` or ``("onehot", [..., G, K])`` from ``targets``."""
    logits = outputs.logits
    batch, (groups, classes) = tuple(logits.shape[:-2]), tuple(logits.shape[-2:])
    shape = tuple(targets.shape)
    floating = jnp.issubdtype(targets.dtype, jnp.floating)
    if shape == (*batch, groups * classes) and (floating or classes > 1):
        return "onehot", targets.reshape(*batch, groups, classes)
    if not floating and shape == (*batch, groups):
        return "index", targets
    if not floating and groups == 1 and shape == batch:
        return "index", targets[..., None]
    raise ValueError(
        f"categorical targets must be class indices {(*batch, groups)} (integer) "
        f"or one-hot {(*batch, groups * classes)}, got {shape} ({targets.dtype})"
    )


def head_nll(outputs: StochState, targets: jax.Array) -> jax.Array:
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
        A 0-d array: the mean over every batch axis of the per-example NLL.
    """
    targets = jnp.asarray(targets)
    if isinstance(outputs, NormalStoch):
        mean, std = outputs.mean, outputs.std
        if tuple(targets.shape) != tuple(mean.shape):
            raise ValueError(
                f"normal targets must have the shape of the mean "
                f"{tuple(mean.shape)}, got {tuple(targets.shape)}"
            )
        z = (targets.astype(mean.dtype) - mean) / std
        nll = _LOG_SQRT_2PI + jnp.log(std) + 0.5 * z * z
        return _batch_mean(jnp.sum(nll, axis=-1))
    if isinstance(outputs, CategoricalStoch):
        log_p = jax.nn.log_softmax(outputs.logits, axis=-1)
        kind, values = _categorical_targets(outputs, targets)
        if kind == "onehot":
            picked = jnp.sum(values.astype(log_p.dtype) * log_p, axis=-1)
        else:
            index = values.astype(jnp.int32)[..., None]
            picked = jnp.take_along_axis(log_p, index, axis=-1)[..., 0]
        return _batch_mean(-jnp.sum(picked, axis=-1))
    if isinstance(outputs, BernoulliStoch):
        logits = outputs.logits
        expected = (*logits.shape[:-2], logits.shape[-2] * logits.shape[-1])
        if tuple(targets.shape) != expected:
            raise ValueError(
                f"bernoulli targets must be bits {expected}, got {tuple(targets.shape)}"
            )
        bits = targets.reshape(logits.shape).astype(logits.dtype)
        nll = jax.nn.softplus(logits) - bits * logits
        return _batch_mean(jnp.sum(nll, axis=(-2, -1)))
    raise TypeError(
        f"head_nll needs a NormalStoch, CategoricalStoch or BernoulliStoch, "
        f"not {type(outputs).__name__}"
    )


# -- Monte Carlo prediction -------------------------------------------------------


def _normal_samples(
    model: nnx.Module, inputs: tuple[Any, ...], num_samples: int
) -> NormalStoch:
    """``num_samples`` normal-head outputs stacked on axis 0 (via ``mc_samples``)."""
    samples = mc_samples(model, *inputs, num_samples=num_samples)
    if not isinstance(samples, NormalStoch):
        raise TypeError(
            "the model must return a NormalStoch (a normal head), "
            f"not {type(samples).__name__}"
        )
    return samples


def predictive_normal(
    model: nnx.Module,
    *inputs: Any,
    num_samples: int = DEFAULT_NUM_SAMPLES,
) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of the posterior predictive of a normal head.

    The predictive is the mixture of the ``num_samples`` normals
    ``N(mean_s, std_s^2)`` given by forward passes with fresh weights
    (:func:`~.predict.mc_samples`, vectorised). By the law of total variance
    its mean is ``mean_s`` averaged and its variance ``mean(std_s^2)``
    (aleatoric) plus the population variance of ``mean_s`` (epistemic).
    Gradients are stopped; tuple outputs contribute their first element.

    Returns:
        ``(mean, std)``, each shaped like the head's ``mean``.
    """
    samples = _normal_samples(model, inputs, num_samples)
    mean = jnp.mean(samples.mean, axis=0)
    variance = jnp.mean(jnp.square(samples.std), axis=0) + jnp.var(samples.mean, axis=0)
    return mean, jnp.sqrt(variance)


def predictive_interval(
    model: nnx.Module,
    *inputs: Any,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    level: float = 0.9,
    draws_per_sample: int = 64,
    key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Central ``level`` interval of the posterior predictive of a normal head.

    Draws ``draws_per_sample`` values from each of the ``num_samples`` normals
    of :func:`predictive_normal`'s mixture and returns the ``(1 - level) / 2``
    and ``(1 + level) / 2`` empirical quantiles (linear interpolation) of the
    ``num_samples * draws_per_sample`` draws. Memory grows as that product
    times the output size.

    Args:
        model: The model, returning a :class:`NormalStoch`.
        *inputs: Positional inputs of the model.
        num_samples: Forward passes (posterior samples).
        level: Probability mass of the interval, in (0, 1).
        draws_per_sample: Draws from each sample's normal.
        key: Key of the within-sample draws; by default one is drawn from the
            model's first random stream.

    Returns:
        ``(low, high)``, each shaped like the head's ``mean``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    if draws_per_sample < 1:
        raise ValueError(f"draws_per_sample must be >= 1, not {draws_per_sample}")
    samples = _normal_samples(model, inputs, num_samples)
    if key is None:
        streams = _rng_streams(model)
        if not streams:
            raise ValueError("the model has no random stream: pass key=")
        key = streams[0]()
    draws = IndependentNormal(samples.mean, samples.std).sample(
        key, (draws_per_sample,)
    )
    draws = draws.reshape(-1, *samples.mean.shape[1:])
    qs = jnp.array([(1.0 - level) / 2, (1.0 + level) / 2], dtype=draws.dtype)
    low, high = jnp.quantile(draws, qs, axis=0)
    return low, high
