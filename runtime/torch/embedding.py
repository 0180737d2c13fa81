"""Embeddings: Bayesian :class:`Embedding` and deterministic :class:`FixedEmbedding`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import BayesianModule, FixedModule
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


def embedding(
    inputs: torch.Tensor,
    weights: torch.Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> torch.Tensor:
    """Look up rows of ``weights``; the shared maths of both embedding layers.

    As in the JAX reference, and unlike ``torch.nn.functional.embedding``:
    rows looked up at ``padding_idx`` are zeroed through a mask, and looked-up
    vectors whose ``norm_type``-norm exceeds ``max_norm`` are scaled by
    ``min(1, max_norm / (norm + 1e-8))``. ``weights`` is never renormalised in
    place, which would fail on sampled (non-leaf) weights.

    Args:
        inputs: Integer indices of any shape ``[*]``.
        weights: Embedding matrix ``[num_embeddings, embeddings_dim]``.
        padding_idx: Index whose vectors are zero (non-negative).
        max_norm: Largest norm of an output vector, or None.
        norm_type: The p of the p-norm used with ``max_norm``.
        scale_grad_by_freq: Scale gradients by inverse token frequency.
        sparse: Ask for a sparse gradient of ``weights``.

    Returns:
        Tensor ``[*, embeddings_dim]``.
    """
    outputs = F.embedding(
        inputs, weights, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse
    )
    if padding_idx is not None:
        outputs = outputs.masked_fill((inputs == padding_idx).unsqueeze(-1), 0.0)
    if max_norm is not None:
        norms = torch.linalg.vector_norm(outputs, ord=norm_type, dim=-1, keepdim=True)
        outputs = outputs * torch.clamp(max_norm / (norms + _NORM_EPS), max=1.0)
    return outputs


class Embedding(BayesianModule):
    """Bayesian embedding: ``weights`` ``(num_embeddings, embeddings_dim)`` is sampled.

    See :func:`embedding` for how ``padding_idx`` and ``max_norm`` act.
    """

    weights: torch.Tensor

    def __init__(
        self,
        num_embeddings: int,
        embeddings_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        weights_distribution: DistributionModule | None = None,
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
            sparse: Accepted for compatibility and stored; it has no effect.
                Sparse gradients cannot flow back through the sampled
                (non-leaf) table into ``mu`` and ``rho`` (torch has no sparse
                ``softplus`` backward), so the lookup is always dense.
            weights_distribution: Distribution of the table; a
                :class:`GaussianDistribution` built from the prior/posterior
                keywords when None.
            mu_prior: Prior mean of the default distribution.
            std_prior: Prior standard deviation of the default distribution.
            mu_init: Initial posterior mean of the default distribution.
            rho_init: Initial posterior rho of the default distribution.
            **kwargs: Passed to ``torch.nn.Module``.
        """
        super().__init__(**kwargs)
        self.num_embeddings = num_embeddings
        self.embeddings_dim = embeddings_dim
        self.padding_idx = _normalise_padding_idx(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        self._register_random(
            "weights",
            weights_distribution,
            (num_embeddings, embeddings_dim),
            mu_prior=mu_prior,
            std_prior=std_prior,
            mu_init=mu_init,
            rho_init=rho_init,
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Sample (unless frozen) and look up integer ``inputs`` ``[*]``."""
        values = self._draw()
        return embedding(
            inputs,
            values["weights"],
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            sparse=False,
        )


class FixedEmbedding(FixedModule):
    """Deterministic twin of :class:`Embedding`, initialised ``N(0, 1)`` like torch.

    The row at ``padding_idx`` starts at zero (as in ``torch.nn.Embedding``) and
    is masked in the output.
    """

    weights: torch.nn.Parameter

    def __init__(
        self,
        num_embeddings: int,
        embeddings_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> None:
        """Create the layer (arguments as in :class:`Embedding`)."""
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embeddings_dim = embeddings_dim
        self.padding_idx = _normalise_padding_idx(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        self.weights = torch.nn.Parameter(torch.randn(num_embeddings, embeddings_dim))
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weights[self.padding_idx].zero_()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Look up integer ``inputs`` ``[*]``."""
        return embedding(
            inputs,
            self.weights,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )
