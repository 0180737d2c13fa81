"""Variational losses: the normalised KL term and the ELBO (Flax NNX)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from .base import KLEstimator, check_kl_estimator, total_kl
from .heads import BernoulliStoch, CategoricalStoch, NormalStoch, head_nll

__all__ = ["ELBOLoss", "KLDivergenceLoss"]

Inputs = jax.Array | tuple[jax.Array, ...] | list[jax.Array]


class KLDivergenceLoss(nnx.Module):
    """KL term of a model: ``weight * sum(kl_cost) / N`` over its Bayesian modules.

    ``N`` is the TOTAL number of random values of all Bayesian modules. The
    reference implementation divides by the parameter count of the last module
    it visits instead, which makes the term depend on module order and
    overweights it for models whose last layer is small; bnnc divides by the
    total, as documented.

    The KL is the closed form by default (``estimator="closed_form"``); the
    reference's one-sample estimate of the current samples is
    ``estimator="sample"`` (see :meth:`~.base.BayesianModule.kl_cost`).
    """

    def __init__(
        self,
        reduction: Literal["mean", "sum"] = "mean",
        weight: float = 1.0,
        *,
        estimator: KLEstimator = "closed_form",
    ) -> None:
        """Create the loss.

        Args:
            reduction: ``"mean"`` (the reference's only mode) divides the summed
                KL by the total parameter count; ``"sum"`` returns the sum.
            weight: Factor applied to the result.
            estimator: ``"closed_form"`` (default) or ``"sample"``.
        """
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
        self.reduction = reduction
        self.weight = weight
        self.estimator = check_kl_estimator(estimator)

    def __call__(self, model: nnx.Module) -> jax.Array:
        """Return the weighted KL term of ``model`` as a 0-d array.

        It has the model's floating dtype and is zero when the model has no
        Bayesian modules.
        """
        kl, num_params = total_kl(model, self.estimator)
        if self.reduction == "mean" and num_params > 0:
            kl = kl / num_params
        return self.weight * kl


class ELBOLoss(nnx.Module):
    """Negative ELBO: ``loss_function(outputs, targets) + kl_weight * KL / N``.

    Without a ``loss_function`` the model must return a stochastic head's
    container (:class:`~.heads.NormalStoch`, ``CategoricalStoch``,
    ``BernoulliStoch``) and the data term is :func:`~.heads.head_nll`: a
    normal head then trains a heteroscedastic regression (the head learns
    its own noise scale).

    ``KL / N`` is :class:`KLDivergenceLoss` (normalised by the total parameter
    count). :meth:`__call__` keeps the reference signature and scores outputs
    that the caller already computed. The reference averaged that same loss
    ``num_samples`` times, which only repeats one sample; here ``num_samples``
    is used by :meth:`monte_carlo`, which draws that many forward passes.

    ``kl_estimator`` chooses the KL term: the closed form (default) or the
    reference's one-sample estimate of the current samples (``"sample"``).
    """

    def __init__(
        self,
        loss_function: Callable[..., Any] | None = None,
        num_samples: int = 1,
        kl_weight: float = 1e-3,
        *,
        kl_estimator: KLEstimator = "closed_form",
    ) -> None:
        """Create the loss.

        Args:
            loss_function: Data loss ``f(outputs, targets) -> 0-d array``, e.g.
                ``lambda y, t: optax.softmax_cross_entropy_with_integer_labels(
                y, t).mean()``; None (the default) uses :func:`~.heads.head_nll`
                on the outputs of a stochastic head.
            num_samples: Forward passes averaged by :meth:`monte_carlo`.
            kl_weight: Factor of the normalised KL term.
            kl_estimator: ``"closed_form"`` (default) or ``"sample"``, passed
                to :class:`KLDivergenceLoss`.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, not {num_samples}")
        self.loss_function = loss_function
        self.num_samples = num_samples
        self.kl_weight = kl_weight
        self.kl_estimator = check_kl_estimator(kl_estimator, "kl_estimator")
        self.kl_loss = KLDivergenceLoss(weight=1.0, estimator=kl_estimator)

    def __call__(
        self, outputs: jax.Array, targets: jax.Array, model: nnx.Module
    ) -> jax.Array:
        """Score one forward pass: data loss plus the weighted KL of its samples."""
        if self.loss_function is not None:
            data_loss = self.loss_function(outputs, targets)
        elif isinstance(outputs, (NormalStoch, CategoricalStoch, BernoulliStoch)):
            data_loss = head_nll(outputs, targets)
        else:
            raise TypeError(
                "ELBOLoss without a loss_function needs a NormalStoch, "
                "CategoricalStoch or BernoulliStoch output (a stochastic head), "
                f"not {type(outputs).__name__}"
            )
        return data_loss + self.kl_weight * self.kl_loss(model)

    def monte_carlo(
        self, model: nnx.Module, inputs: Inputs, targets: jax.Array
    ) -> jax.Array:
        """Average :meth:`__call__` over ``num_samples`` fresh forward passes.

        Each call of ``model`` resamples the weights of unfrozen layers (new
        keys from their ``rngs``), and each KL term uses the weights of its own
        pass. Call it inside the loss function given to ``nnx.value_and_grad``
        (under ``nnx.jit`` the passes are unrolled).

        Args:
            model: The model; called as ``model(inputs)``, or ``model(*inputs)``
                when ``inputs`` is a tuple or list.
            inputs: Model inputs.
            targets: Targets passed to ``loss_function``.

        Returns:
            A 0-d array, differentiable with respect to the variational
            parameters.
        """
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        losses = [self(model(*args), targets, model) for _ in range(self.num_samples)]
        return jnp.mean(jnp.stack(losses))
