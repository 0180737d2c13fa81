"""Variational losses: the normalised KL term and the ELBO."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from .base import total_kl
from .distributions import KLEstimator, check_kl_estimator
from .heads import BernoulliStoch, CategoricalStoch, NormalStoch, head_nll

__all__ = ["ELBOLoss", "KLDivergenceLoss"]

Inputs = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]


class KLDivergenceLoss(torch.nn.Module):
    """KL term of a model: ``weight * sum(kl_cost) / N`` over its Bayesian modules.

    ``N`` is the TOTAL number of random values of all Bayesian modules. The
    reference implementation divides by the parameter count of the last module
    it visits instead, which makes the term depend on module order and
    overweights it for models whose last layer is small; bnnc divides by the
    total, as documented.
    """

    def __init__(
        self,
        reduction: Literal["mean", "sum"] = "mean",
        weight: float = 1.0,
        *,
        estimator: KLEstimator = "closed_form",
    ):
        """Create the loss.

        Args:
            reduction: ``"mean"`` (the reference's only mode) divides the summed
                KL by the total parameter count; ``"sum"`` returns the sum.
            weight: Factor applied to the result.
            estimator: ``"closed_form"`` (exact Gaussian KL) or ``"sample"``
                (the reference's one-sample estimate); see
                :meth:`~.base.BayesianModule.kl_cost`.
        """
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
        check_kl_estimator(estimator)
        self.reduction = reduction
        self.weight = weight
        self.estimator = estimator

    def forward(self, model: torch.nn.Module) -> torch.Tensor:
        """Return the weighted KL term of ``model`` as a 0-d tensor.

        It is on the model's device and dtype, and zero when the model has no
        Bayesian modules.
        """
        return self.scaled(model, 1.0)

    def scaled(
        self, model: torch.nn.Module, factor: float, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``offset + factor * self(model)``, with one tensor operation.

        The weight, the normalisation and ``factor`` are folded into one
        number when they are numbers (the training loop calls this on every
        step). ``offset`` defaults to zero.
        """
        kl, num_params = total_kl(model, self.estimator)
        divisor = num_params if self.reduction == "mean" and num_params > 0 else 1
        scale = self.weight * factor
        if isinstance(scale, (int, float)):
            if offset is None:
                return kl * (scale / divisor)
            return torch.add(offset, kl, alpha=scale / divisor)
        term = scale * (kl / divisor)
        return term if offset is None else offset + term


class ELBOLoss(torch.nn.Module):
    """Negative ELBO: ``loss_function(outputs, targets) + kl_weight * KL / N``.

    Without a ``loss_function`` the model must return a stochastic head's
    container (:class:`~.heads.NormalStoch`, ``CategoricalStoch``,
    ``BernoulliStoch``) and the data term is :func:`~.heads.head_nll`: a
    normal head then trains a heteroscedastic regression (the head learns
    its own noise scale).

    ``KL / N`` is :class:`KLDivergenceLoss` (normalised by the total parameter
    count). :meth:`forward` keeps the reference signature and scores outputs
    that the caller already computed. The reference averaged that same loss
    ``num_samples`` times, which only repeats one sample; here ``num_samples``
    is used by :meth:`monte_carlo`, which draws that many forward passes.
    """

    def __init__(
        self,
        loss_function: Callable[..., torch.Tensor] | None = None,
        num_samples: int = 1,
        kl_weight: float = 1e-3,
        *,
        kl_estimator: KLEstimator = "closed_form",
    ) -> None:
        """Create the loss.

        Args:
            loss_function: Data loss ``f(outputs, targets) -> 0-d tensor``,
                e.g. ``torch.nn.CrossEntropyLoss()``; None (the default) uses
                :func:`~.heads.head_nll` on the outputs of a stochastic head.
            num_samples: Forward passes averaged by :meth:`monte_carlo`.
            kl_weight: Factor of the normalised KL term.
            kl_estimator: How the KL is computed: ``"closed_form"`` (exact
                for Gaussian posteriors and priors) or ``"sample"`` (the
                reference's one-sample estimate).
        """
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, not {num_samples}")
        self.loss_function = loss_function
        self.num_samples = num_samples
        self.kl_weight = kl_weight
        self.kl_loss = KLDivergenceLoss(weight=1.0, estimator=kl_estimator)

    def forward(
        self, outputs: torch.Tensor, targets: torch.Tensor, model: torch.nn.Module
    ) -> torch.Tensor:
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
        return self.kl_loss.scaled(model, self.kl_weight, data_loss)

    def monte_carlo(
        self, model: torch.nn.Module, inputs: Inputs, targets: torch.Tensor
    ) -> torch.Tensor:
        """Average :meth:`forward` over ``num_samples`` fresh forward passes.

        Each call of ``model`` resamples the weights of unfrozen layers, and
        each KL term uses the weights of its own pass.

        Args:
            model: The model; called as ``model(inputs)``, or ``model(*inputs)``
                when ``inputs`` is a tuple or list.
            inputs: Model inputs.
            targets: Targets passed to ``loss_function``.

        Returns:
            A 0-d tensor, differentiable with respect to the variational
            parameters.
        """
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        if self.num_samples == 1:
            return self.forward(model(*args), targets, model)
        losses = [
            self.forward(model(*args), targets, model) for _ in range(self.num_samples)
        ]
        return torch.stack(losses).mean()
