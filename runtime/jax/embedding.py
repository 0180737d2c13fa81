"""Embeddings: Bayesian :class:`Embedding` and deterministic :class:`FixedEmbedding`."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .base import DEFAULT_RNGS, BayesianModule, FixedModule
from .distributions import DistributionModule

__all__ = ["Embedding", "FixedEmbedding", "embedding"]

_NORM_EPS = 1e-8


def _normalise_padding_idx(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"padding_idx={padding_idx} out of range for {num_embeddings} embeddings"
        )
    return padding_idx + num_embeddings if padding_idx < 0 else padding_idx


@jax.custom_vjp
def _lookup_scaled_by_freq(weights: jax.Array, inputs: jax.Array) -> jax.Array:
    """``weights[inputs]`` whose gradient rows are divided by each id's count."""
    return weights[inputs]


def _lookup_fwd(
    weights: jax.Array, inputs: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return weights[inputs], (weights, inputs)


def _lookup_bwd(
    residuals: tuple[jax.Array, jax.Array], grad: jax.Array
) -> tuple[jax.Array, None]:
    weights, inputs = residuals
    ids = jnp.reshape(inputs, (-1,))
    counts = jnp.zeros(weights.shape[0], grad.dtype).at[ids].add(1.0)
    rows = jnp.reshape(grad, (ids.shape[0], -1)) / counts[ids][:, None]
    return jnp.zeros_like(weights).at[ids].add(rows.astype(weights.dtype)), None


_lookup_scaled_by_freq.defvjp(_lookup_fwd, _lookup_bwd)


def _vector_norm(x: jax.Array, p: float) -> jax.Array:
    """``p``-norm over the last axis (keepdims), with a zero gradient at zero.

    ``jnp.linalg.norm`` has a NaN gradient at the zero vector (e.g. a row
    zeroed by ``padding_idx``); torch's ``vector_norm`` gives zero there.
    """
    magnitude = jnp.abs(x)
    if p == float("inf"):
        return jnp.max(magnitude, axis=-1, keepdims=True)
    if p == 1:
        return jnp.sum(magnitude, axis=-1, keepdims=True)
    total = jnp.sum(magnitude**p, axis=-1, keepdims=True)
    positive = total > 0
    safe = jnp.where(positive, total, 1.0)
    root = jnp.sqrt(safe) if p == 2 else safe ** (1.0 / p)
    return jnp.where(positive, root, 0.0)


@partial(jax.jit, static_argnums=(2, 3, 4, 5))
def embedding(
    inputs: jax.Array,
    weights: jax.Array,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
) -> jax.Array:
    """Look up rows of ``weights``; the shared maths of both embedding layers.

    As in the reference and the torch runtime: rows looked up at
    ``padding_idx`` are zeroed through a mask, and looked-up vectors whose
    ``norm_type``-norm exceeds ``max_norm`` are scaled by
    ``min(1, max_norm / (norm + 1e-8))``; ``weights`` is never renormalised.

    Args:
        inputs: Integer indices of any shape ``[*]``.
        weights: Embedding matrix ``[num_embeddings, embeddings_dim]``.
        padding_idx: Index whose vectors are zero (non-negative).
        max_norm: Largest norm of an output vector, or None.
        norm_type: The p of the p-norm used with ``max_norm``.
        scale_grad_by_freq: Divide the gradient of each row of ``weights`` by
            the number of times its index occurs in ``inputs`` (as torch).

    Returns:
        Array ``[*, embeddings_dim]``.

    Jitted, with the options static.
    """
    if scale_grad_by_freq:
        outputs = _lookup_scaled_by_freq(weights, inputs)
    else:
        outputs = weights[inputs]
    if padding_idx is not None:
        mask = (inputs == padding_idx)[..., None]
        outputs = jnp.where(mask, jnp.zeros((), outputs.dtype), outputs)
    if max_norm is not None:
        norms = _vector_norm(outputs, norm_type)
        outputs = outputs * jnp.minimum(max_norm / (norms + _NORM_EPS), 1.0)
    return outputs


class Embedding(BayesianModule):
    """Bayesian embedding: ``weights`` ``(num_embeddings, embeddings_dim)`` is sampled.

    See :func:`embedding` for how ``padding_idx`` (negative counts from the
    end), ``max_norm`` and ``scale_grad_by_freq`` act.
    """

    def __init__(
        self,
        num_embeddings: int,
        embeddings_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        weights_distribution: DistributionModule | None = None,
        rngs: nnx.Rngs = DEFAULT_RNGS,
        *,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        **kwargs: Any,
    ) -> None:
        """Create the layer and draw initial weights.

        Args:
            num_embeddings: Size of the vocabulary.
            embeddings_dim: Size of each vector.
            padding_idx: Index whose vectors are zero (negative counts from the
                end).
            max_norm: Largest norm of an output vector, or None.
            norm_type: The p of the p-norm used with ``max_norm``.
            scale_grad_by_freq: Scale gradients by inverse token frequency.
            weights_distribution: Distribution of the table; a
                :class:`GaussianDistribution` built from the prior/posterior
                keywords when None.
            rngs: Random streams for initialisation and sampling.
            mu_prior: Prior mean of the default distribution.
            std_prior: Prior standard deviation of the default distribution.
            mu_init: Initial posterior mean of the default distribution.
            rho_init: Initial posterior rho of the default distribution.
            **kwargs: Passed to ``nnx.Module``.
        """
        super().__init__(**kwargs)
        self.num_embeddings = num_embeddings
        self.embeddings_dim = embeddings_dim
        self.padding_idx = _normalise_padding_idx(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.rngs = rngs
        self._register_random(
            "weights",
            weights_distribution,
            (num_embeddings, embeddings_dim),
            rngs=rngs,
            mu_prior=mu_prior,
            std_prior=std_prior,
            mu_init=mu_init,
            rho_init=rho_init,
        )

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Sample (unless frozen) and look up integer ``inputs`` ``[*]``."""
        self._resample()
        return embedding(
            inputs,
            self._current("weights"),
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
        )


class FixedEmbedding(FixedModule):
    """Deterministic twin of :class:`Embedding`, initialised ``N(0, 1)`` like torch.

    The row at ``padding_idx`` starts at zero (as in ``torch.nn.Embedding``) and
    is masked in the output.
    """

    def __init__(
        self,
        num_embeddings: int,
        embeddings_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        rngs: nnx.Rngs = DEFAULT_RNGS,
    ) -> None:
        """Create the layer (arguments as in :class:`Embedding`)."""
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embeddings_dim = embeddings_dim
        self.padding_idx = _normalise_padding_idx(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.rngs = rngs
        table = jax.random.normal(rngs.params(), (num_embeddings, embeddings_dim))
        if self.padding_idx is not None:
            table = table.at[self.padding_idx].set(0.0)
        self.weights = nnx.Param(table)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Look up integer ``inputs`` ``[*]``."""
        return embedding(
            inputs,
            self._current("weights"),
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
        )
