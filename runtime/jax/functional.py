"""Functional ops that generated JAX code calls, with PyTorch's exact semantics.

Layouts follow PyTorch: ``[N, C, L]`` for 1-D and ``[N, C, H, W]`` for 2-D ops,
so a spec compiles to the same shapes in both backends. Where ``jax.nn``
differs from ``torch.nn.functional`` (``gelu`` defaults to the tanh
approximation, ``softplus`` has no ``beta``/``threshold``), the functions here
follow torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "cat",
    "dropout",
    "elu",
    "flatten",
    "gelu",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "max_pool1d",
    "max_pool2d",
    "mean",
    "relu",
    "reshape_batch",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "sum",
    "tanh",
]

IntOrPair = int | Sequence[int]


# -- normalisation and reshaping (mirrors bnnc.runtime.torch.functional) -------


def layer_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalise over the last axis to zero mean and unit variance (no affine).

    Uses the biased variance, as ``torch.nn.functional.layer_norm``.
    """
    mean_ = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean_), axis=-1, keepdims=True)
    return (x - mean_) * jax.lax.rsqrt(var + eps)


def batch_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalise each channel (axis 1) with the current batch's statistics.

    No running statistics and no affine parameters: the result depends only on
    the batch, in training and evaluation alike (as the torch runtime's
    ``batch_norm``; biased variance, as torch uses for normalisation).
    """
    axes = (0, *range(2, x.ndim))
    mean_ = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean_), axis=axes, keepdims=True)
    return (x - mean_) * jax.lax.rsqrt(var + eps)


def reshape_batch(x: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Reshape each example to ``shape``, keeping the batch axis (-1 allowed)."""
    return jnp.reshape(x, (x.shape[0], *shape))


def flatten(x: jax.Array, start_dim: int = 1, end_dim: int = -1) -> jax.Array:
    """Merge axes ``start_dim..end_dim`` (inclusive) into one, as ``torch.flatten``.

    Note the default ``start_dim=1`` (the ``F.flatten`` of a spec keeps the
    batch axis), whereas ``torch.flatten``'s own default is 0.
    """
    ndim = x.ndim
    if ndim == 0:
        return jnp.reshape(x, (1,))
    start = start_dim + ndim if start_dim < 0 else start_dim
    end = end_dim + ndim if end_dim < 0 else end_dim
    if not 0 <= start <= end < ndim:
        raise ValueError(
            f"flatten: start_dim={start_dim}, end_dim={end_dim} invalid for "
            f"{ndim} dimensions"
        )
    merged = math.prod(x.shape[start : end + 1])
    return jnp.reshape(x, (*x.shape[:start], merged, *x.shape[end + 1 :]))


# -- activations ----------------------------------------------------------------


def relu(x: jax.Array) -> jax.Array:
    """``max(x, 0)``."""
    return jax.nn.relu(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid."""
    return jax.nn.sigmoid(x)


def silu(x: jax.Array) -> jax.Array:
    """``x * sigmoid(x)``."""
    return jax.nn.silu(x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``, as ``F.elu``."""
    return jax.nn.elu(x, alpha)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """``x`` for ``x >= 0``, else ``negative_slope * x``, as ``F.leaky_relu``."""
    return jax.nn.leaky_relu(x, negative_slope)


def gelu(x: jax.Array, approximate: str = "none") -> jax.Array:
    """GELU as ``torch.nn.functional.gelu``: the exact erf form by default.

    ``jax.nn.gelu`` defaults to the tanh approximation; here
    ``approximate="tanh"`` asks for it, as in torch.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def softplus(x: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``log(1 + exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold``.

    Exactly ``torch.nn.functional.softplus``. The exponential is taken of a
    clipped argument so that neither the value nor the gradient of the branch
    not taken can overflow.
    """
    scaled = x * beta
    safe = jnp.minimum(scaled, threshold)
    return jnp.where(scaled > threshold, x, jnp.log1p(jnp.exp(safe)) / beta)


def softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """Softmax over ``dim``."""
    return jax.nn.softmax(x, axis=dim)


def log_softmax(x: jax.Array, dim: int = -1) -> jax.Array:
    """Log-softmax over ``dim``."""
    return jax.nn.log_softmax(x, axis=dim)


# -- tensor ops with torch's argument names ---------------------------------------


def cat(tensors: Sequence[jax.Array], dim: int = 0) -> jax.Array:
    """Concatenate along ``dim``, as ``torch.cat``."""
    return jnp.concatenate(list(tensors), axis=dim)


def mean(
    x: jax.Array, dim: int | Sequence[int] | None = None, keepdim: bool = False
) -> jax.Array:
    """Mean over ``dim`` (all axes when None), as ``torch.mean``."""
    axis = tuple(dim) if isinstance(dim, Sequence) else dim
    return jnp.mean(x, axis=axis, keepdims=keepdim)


def sum(  # torch's name, used by generated code
    x: jax.Array, dim: int | Sequence[int] | None = None, keepdim: bool = False
) -> jax.Array:
    """Sum over ``dim`` (all axes when None), as ``torch.sum``."""
    axis = tuple(dim) if isinstance(dim, Sequence) else dim
    return jnp.sum(x, axis=axis, keepdims=keepdim)


# -- dropout ----------------------------------------------------------------------


def dropout(
    x: jax.Array,
    p: float = 0.5,
    *,
    rngs: nnx.Rngs | None = None,
    deterministic: bool = False,
) -> jax.Array:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    As ``F.dropout(x, p, training=not deterministic)``. The mask's key comes
    from ``rngs.dropout()`` (which falls back to the default stream).

    Args:
        x: Input array.
        p: Drop probability in ``[0, 1]``.
        rngs: Random streams; required unless ``deterministic`` or ``p == 0``.
        deterministic: When True (evaluation), return ``x`` unchanged.

    Returns:
        An array shaped like ``x``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], not {p}")
    if deterministic or p == 0.0:
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    if rngs is None:
        raise ValueError("dropout needs rngs unless deterministic=True or p == 0")
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


# -- pooling ----------------------------------------------------------------------


def _tuple(value: IntOrPair, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"{name} must be an int or a {n}-tuple, not {value!r}")
    return values


def _pool(
    x: jax.Array,
    kernel_size: IntOrPair,
    stride: IntOrPair | None,
    padding: IntOrPair,
    spatial: int,
    kind: str,
) -> jax.Array:
    """Max or average pooling over the last ``spatial`` axes (torch semantics).

    ``ceil_mode=False``; average pooling counts the zero padding in the divisor
    (torch's default ``count_include_pad=True``); max pooling pads with -inf.
    Inputs without a batch axis (``[C, *spatial]``) are accepted, as in torch.
    """
    kernel = _tuple(kernel_size, spatial, "kernel_size")
    strides = kernel if stride is None else _tuple(stride, spatial, "stride")
    pads = _tuple(padding, spatial, "padding")
    for k, p in zip(kernel, pads, strict=True):
        if p > k // 2:
            raise ValueError(
                f"padding {pads} must be at most half of kernel_size {kernel}"
            )
    lead = x.ndim - spatial
    if lead < 1:
        raise ValueError(f"pooling expects at least {spatial + 1} dimensions")
    # Pooled channels-last (the channel axis, just before the spatial ones,
    # moved to the end): XLA's CPU loops run along the last axis, which is
    # then the channels rather than a few pixels, and the transposes cancel
    # against those around a channels-last convolution (see .conv._conv).
    to_last = (*range(lead - 1), *range(lead, x.ndim), lead - 1)
    x = jnp.transpose(x, to_last)
    window = (1,) * (lead - 1) + kernel + (1,)
    window_strides = (1,) * (lead - 1) + strides + (1,)
    padding_config = ((0, 0),) * (lead - 1) + tuple((p, p) for p in pads) + ((0, 0),)
    # The initial values are concrete NumPy scalars so that JAX recognises the
    # max / sum monoids and uses its differentiable reduce_window primitives.
    if kind == "max":
        if jnp.issubdtype(x.dtype, jnp.floating):
            init = np.array(-np.inf, x.dtype)
        else:
            init = np.array(jnp.iinfo(x.dtype).min, x.dtype)
        pooled = jax.lax.reduce_window(
            x, init, jax.lax.max, window, window_strides, padding_config
        )
    else:
        total = jax.lax.reduce_window(
            x, np.array(0, x.dtype), jax.lax.add, window, window_strides, padding_config
        )
        pooled = total / math.prod(kernel)
    return jnp.transpose(pooled, tuple(int(i) for i in np.argsort(to_last)))


def max_pool1d(
    x: jax.Array,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> jax.Array:
    """1-D max pooling of ``[N, C, L]`` as ``F.max_pool1d`` (padding is -inf)."""
    return _pool(x, kernel_size, stride, padding, 1, "max")


def max_pool2d(
    x: jax.Array,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> jax.Array:
    """2-D max pooling of ``[N, C, H, W]`` as ``F.max_pool2d`` (padding is -inf)."""
    return _pool(x, kernel_size, stride, padding, 2, "max")


def avg_pool1d(
    x: jax.Array,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> jax.Array:
    """1-D average pooling of ``[N, C, L]`` as ``F.avg_pool1d`` (padding counted)."""
    return _pool(x, kernel_size, stride, padding, 1, "avg")


def avg_pool2d(
    x: jax.Array,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> jax.Array:
    """2-D average pooling of ``[N, C, H, W]`` as ``F.avg_pool2d`` (padding counted)."""
    return _pool(x, kernel_size, stride, padding, 2, "avg")
