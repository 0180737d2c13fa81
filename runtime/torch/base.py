"""Shared machinery of Bayesian layers and of their deterministic twins.

A Bayesian layer registers each random tensor once with
:meth:`BayesianModule._register_random`; sampling, freezing, unfreezing and the
KL cost are written here, once, for every layer.
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .distributions import (
    DistributionModule,
    GaussianDistribution,
    KLEstimator,
    check_kl_estimator,
    fusable,
    groupable,
)
from .grouped_kl import grouped_kl

__all__ = [
    "BayesianModule",
    "FixedModule",
    "freeze_all",
    "per_example_samples",
    "samples_not_stored",
    "total_kl",
    "unfreeze_all",
]

_FROZEN_UNDEFINED = "Module has been frozen with undefined weights and/or bias."
_EXTRA_STATE_KEY = "_extra_state"  # torch's suffix for get_extra_state()


#: While False (inside :func:`samples_not_stored`), layers use their fresh
#: samples without keeping them as ``layer.weights`` etc.
_store_samples = True


@contextmanager
def samples_not_stored() -> Iterator[None]:
    """Sample without overwriting the layers' current samples.

    Used by vectorised Monte Carlo prediction, where ``torch.func.vmap`` draws
    a batch of weights that must not leak into the modules.
    """
    global _store_samples
    previous, _store_samples = _store_samples, False
    try:
        yield
    finally:
        _store_samples = previous


#: While True (inside :func:`per_example_samples`), prediction needs only each
#: example's marginal predictive distribution, not weights shared by a batch.
_per_example = False


@contextmanager
def per_example_samples() -> Iterator[None]:
    """Let layers sample each example's outputs independently.

    Inside ``torch.func.vmap`` a Bayesian ``Linear``/``Conv`` layer whose
    input is the same for every Monte Carlo sample (the first Bayesian layer
    of a model) then draws its outputs with the local reparameterisation
    from one evaluation of their mean and variance, instead of evaluating
    the layer once per weight sample. Every example's predictive
    distribution is unchanged (exactly); what changes is that the examples
    of one sample no longer share that layer's weights, which statistics of
    single examples (predictive mean, std, entropy, mutual information) do
    not see. The predictive helpers use it; :func:`~.predict.mc_samples`
    only with ``joint=False``.
    """
    global _per_example
    previous, _per_example = _per_example, True
    try:
        yield
    finally:
        _per_example = previous


def per_example_mode() -> bool:
    """Whether :func:`per_example_samples` is active."""
    return _per_example


def _zero_like_module(module: torch.nn.Module) -> torch.Tensor:
    """A 0-d zero on the device and floating dtype of ``module``'s tensors."""
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.new_zeros(())
    for tensor in module.buffers():
        if tensor.is_floating_point():
            return tensor.new_zeros(())
    return torch.zeros(())


class BayesianModule(torch.nn.Module, ABC):
    """Base of Bayesian layers: random tensors that are resampled on every call.

    A subclass calls :meth:`_register_random` for each random tensor, e.g.
    ``self._register_random("weights", dist)``: the distribution becomes the
    submodule ``weights_distribution`` and the current sample the persistent
    buffer ``weights`` (sampled once at construction). ``forward`` takes this
    call's values from :meth:`_draw` (fresh samples unless frozen).

    ``state_dict()`` holds the current samples, ``mu``/``rho``, the priors and
    the ``frozen`` flag (as ``<prefix>_extra_state``), so ``load_state_dict``
    restores a frozen module frozen, with the same outputs.

    Attributes:
        frozen: When True, ``forward`` reuses the current samples.
        is_bayesian: True for Bayesian layers, False for deterministic ones.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Set ``frozen = False`` and ``is_bayesian = True``.

        Args:
            **kwargs: Passed to ``torch.nn.Module``.
        """
        super().__init__(**kwargs)
        self.frozen: bool = False
        self.is_bayesian: bool = True
        self._random_names: list[str] = []

    # -- registration ------------------------------------------------------

    def _register_random(
        self,
        name: str,
        distribution: DistributionModule | None,
        shape: tuple[int, ...] | None = None,
        *,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
    ) -> None:
        """Register the random tensor ``name`` drawn from ``distribution``.

        Stores the distribution as the submodule ``<name>_distribution`` and an
        initial sample (drawn without gradient) as the persistent buffer
        ``name``.

        Args:
            name: Attribute name of the random tensor (e.g. ``"weights"``).
            distribution: Its distribution; when None, a
                :class:`GaussianDistribution` of ``shape`` built from the
                prior/posterior keywords.
            shape: Shape of the default distribution.
            mu_prior: Prior mean of the default distribution.
            std_prior: Prior standard deviation of the default distribution.
            mu_init: Initial posterior mean of the default distribution.
            rho_init: Initial posterior rho of the default distribution.
        """
        if distribution is None:
            if shape is None:
                raise ValueError(f"{name}: give a distribution or a shape")
            distribution = GaussianDistribution(
                shape,
                mu_prior=mu_prior,
                std_prior=std_prior,
                mu_init=mu_init,
                rho_init=rho_init,
            )
        self.add_module(f"{name}_distribution", distribution)
        with torch.no_grad():
            value = distribution.sample()
        self.register_buffer(name, value)
        self._random_names.append(name)

    def _register_absent(self, name: str) -> None:
        """Declare an unused optional random tensor (e.g. ``bias`` without bias).

        Both ``name`` and ``<name>_distribution`` read as None.
        """
        setattr(self, f"{name}_distribution", None)
        self.register_buffer(name, None)

    def _register_weights_and_bias(
        self,
        weights_shape: tuple[int, ...],
        weights_distribution: DistributionModule | None,
        bias_distribution: DistributionModule | None,
        use_bias: bool,
        **priors: float,
    ) -> None:
        """Register ``weights`` and, if ``use_bias``, a bias of shape ``(out,)``.

        ``out`` is ``weights_shape[0]``; ``priors`` are the keywords of
        :meth:`_register_random`.
        """
        self._register_random("weights", weights_distribution, weights_shape, **priors)
        if use_bias:
            shape = (weights_shape[0],)
            self._register_random("bias", bias_distribution, shape, **priors)
        else:
            self._register_absent("bias")

    def random_tensors(
        self,
    ) -> Iterator[tuple[str, DistributionModule, torch.Tensor | None]]:
        """Yield ``(name, distribution, current value)`` for each random tensor."""
        modules, buffers = self._modules, self._buffers
        for name in self._random_names:
            yield name, modules[f"{name}_distribution"], buffers[name]

    def __getstate__(self) -> dict[str, Any]:
        """State for ``copy.deepcopy`` and ``pickle``, with detached samples.

        After a forward pass the current samples belong to an autograd graph
        (they are not leaves), which deep copies and pickles refuse; the copy
        gets the same values without the graph.
        """
        state = super().__getstate__()
        buffers = dict(state["_buffers"])
        for name in self._random_names:
            value = buffers.get(name)
            if value is not None and not value.is_leaf:
                buffers[name] = value.detach()
        state["_buffers"] = buffers
        return state

    # -- persistence -------------------------------------------------------

    def get_extra_state(self) -> torch.Tensor:
        """The ``frozen`` flag, saved by ``state_dict()`` as ``<prefix>_extra_state``.

        A 0-d bool tensor (not a buffer, so ``.to()`` and ``.double()`` leave
        it alone and :mod:`bnnc.runtime.transfer` does not see it), which
        ``torch.load(..., weights_only=True)`` reads back.
        """
        return torch.tensor(bool(self.frozen))

    def set_extra_state(self, state: Any) -> None:
        """Restore the ``frozen`` flag saved by :meth:`get_extra_state`.

        ``load_state_dict`` calls this after loading the samples; a module
        loaded frozen keeps the loaded samples (detached) on every call.
        """
        self.frozen = bool(state)
        if self.frozen:
            for name, _, value in self.random_tensors():
                if value is not None and value.requires_grad:
                    setattr(self, name, value.detach())

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Load as ``torch.nn.Module`` does; a missing ``frozen`` flag is allowed.

        State dicts without the flag (saved before it was stored, or from the
        reference implementation) load under ``strict=True`` and leave the
        module's flag unchanged.
        """
        super()._load_from_state_dict(
            state_dict,
            prefix,
            local_metadata,
            strict,
            missing_keys,
            unexpected_keys,
            error_msgs,
        )
        key = prefix + _EXTRA_STATE_KEY
        if key not in state_dict and key in missing_keys:
            missing_keys.remove(key)

    # -- sampling ----------------------------------------------------------

    def _draw(self) -> dict[str, torch.Tensor]:
        """The values of the random tensors for this call, by name.

        Fresh samples unless the module is frozen, in which case the current
        ones. Fresh samples become the current ones (``self.weights`` ...)
        except inside :func:`samples_not_stored`. With gradients on, each
        distribution evaluates its closed-form KL in the same pass
        (:meth:`~.distributions.DistributionModule.sample_with_kl`), so
        :meth:`kl_cost` costs nothing more in a training step.

        Raises:
            ValueError: If the module is frozen and a value is undefined.
        """
        values: dict[str, torch.Tensor] = {}
        if self.frozen:
            for name in self._random_names:
                value = getattr(self, name)
                if value is None:
                    raise ValueError(_FROZEN_UNDEFINED)
                values[name] = value
            return values
        modules, buffers = self._modules, self._buffers
        for name in self._random_names:
            value, _ = modules[f"{name}_distribution"].sample_with_kl()
            if _store_samples:
                # What setattr does for a registered buffer, without its
                # attribute lookups (this runs for every tensor of every step).
                buffers[name] = value
            values[name] = value
        return values

    def freeze(self) -> None:
        """Fix the current samples (drawing any that are missing) and stop gradients.

        Bayesian submodules (e.g. an LSTM's embedding) are frozen as well.
        """
        self.frozen = True
        for name, distribution, value in self.random_tensors():
            if value is None:
                with torch.no_grad():
                    value = distribution.sample()
            setattr(self, name, value.detach())
        for child in self.children():
            if isinstance(child, BayesianModule):
                child.freeze()

    def unfreeze(self) -> None:
        """Resume sampling on every call (Bayesian submodules included)."""
        self.frozen = False
        for child in self.children():
            if isinstance(child, BayesianModule):
                child.unfreeze()

    def kl_cost(
        self, estimator: KLEstimator = "closed_form"
    ) -> tuple[torch.Tensor, int]:
        """KL cost of this module's own random tensors.

        Args:
            estimator: ``"closed_form"`` (default): the exact KL(q || p) of each
                distribution that has one (Gaussian posterior and prior),
                else the one-sample estimate; ``"sample"``: the reference's
                one-sample estimate, ``sum of distribution.log_prob(current
                value)``.

        Returns:
            ``(KL, number of random values)``. Bayesian submodules are not
            included (as in the reference, an LSTM's embedding reports its own
            cost); :class:`KLDivergenceLoss` and :func:`total_kl` visit every
            module.
        """
        check_kl_estimator(estimator)
        terms, num_params = self._kl_terms(estimator, None)
        return _sum_or_zero(terms, self), num_params

    def _kl_terms(
        self, estimator: KLEstimator, deferred: list[GaussianDistribution] | None
    ) -> tuple[list[torch.Tensor], int]:
        """The KL terms of :meth:`kl_cost`, and its count of random values.

        With a ``deferred`` list (closed form only), the distributions whose
        KL :func:`~.grouped_kl.grouped_kl` evaluates together are appended to
        it instead of being evaluated here.
        """
        terms: list[torch.Tensor] = []
        num_params = 0
        for _, distribution, value in self.random_tensors():
            num_params += distribution.num_params()
            if deferred is not None and groupable(distribution):
                deferred.append(distribution)
                continue
            term = None
            if estimator == "closed_form":
                try:
                    term = distribution.kl_divergence()
                except NotImplementedError:
                    term = None
            if term is None and value is not None:
                term = distribution.log_prob(value)
            if term is not None:
                terms.append(term)
        return terms, num_params


def _sum_or_zero(terms: list[torch.Tensor], module: torch.nn.Module) -> torch.Tensor:
    """The sum of ``terms``, or a zero on ``module``'s device and dtype."""
    if not terms:
        return _zero_like_module(module)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class FixedModule(BayesianModule):
    """Base of deterministic layers (``fixed`` in a spec).

    The tensors are ordinary ``nn.Parameter`` objects with the same attribute
    names as the Bayesian twin. ``is_bayesian`` is False, ``freeze`` and
    ``unfreeze`` do nothing and ``kl_cost`` is ``(0., 0)``.
    """

    # A deterministic layer is never frozen: no flag in its state dict.
    get_extra_state = torch.nn.Module.get_extra_state
    set_extra_state = torch.nn.Module.set_extra_state

    def __init__(self, **kwargs: Any) -> None:
        """Set ``is_bayesian = False``.

        Args:
            **kwargs: Passed to ``torch.nn.Module``.
        """
        super().__init__(**kwargs)
        self.is_bayesian = False

    def freeze(self) -> None:
        """Do nothing: the tensors are already fixed."""

    def unfreeze(self) -> None:
        """Do nothing: the tensors are never sampled."""

    def kl_cost(
        self, estimator: KLEstimator = "closed_form"
    ) -> tuple[torch.Tensor, int]:
        """Return ``(0., 0)``: a deterministic layer has no KL cost."""
        return _zero_like_module(self), 0

    def _kl_terms(
        self, estimator: KLEstimator, deferred: list[GaussianDistribution] | None
    ) -> tuple[list[torch.Tensor], int]:
        """No terms: a deterministic layer has no KL cost."""
        return [], 0

    def _create_weights_and_bias(
        self, weights_shape: tuple[int, ...], use_bias: bool
    ) -> None:
        """Create ``weights`` and (if ``use_bias``) ``bias`` like ``torch.nn``.

        Shapes are ``weights_shape`` and ``(weights_shape[0],)``; the values
        come from :meth:`_init_like_torch`.
        """
        self.weights = torch.nn.Parameter(torch.empty(weights_shape))
        if use_bias:
            self.bias = torch.nn.Parameter(torch.empty(weights_shape[0]))
        else:
            self.register_parameter("bias", None)
        self._init_like_torch(self.weights, self.bias)

    @staticmethod
    def _init_like_torch(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Initialise as ``torch.nn.Linear``/``ConvNd`` do.

        Kaiming-uniform weights with ``a = sqrt(5)`` and a bias uniform in
        ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, where ``fan_in`` is the number of
        elements of one output row of ``weight``.
        """
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if bias is not None:
            fan_in = weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            torch.nn.init.uniform_(bias, -bound, bound)


def _bayesian_modules(model: torch.nn.Module) -> Iterator[BayesianModule]:
    """The Bayesian modules of ``model`` in ``model.modules()`` order.

    A plain depth-first walk over ``_modules``: ``modules()`` builds a name
    for every submodule, and ``isinstance`` against an ABC is slow; this runs
    on every training step.
    """
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if BayesianModule in type(module).__mro__ and module.is_bayesian:
            yield module  # type: ignore[misc]
        children = [child for child in module._modules.values() if child is not None]
        stack.extend(reversed(children))


def freeze_all(model: torch.nn.Module) -> None:
    """Freeze every Bayesian module in ``model`` (samples drawn where missing)."""
    for module in _bayesian_modules(model):
        module.freeze()


def unfreeze_all(model: torch.nn.Module) -> None:
    """Unfreeze every Bayesian module in ``model``."""
    for module in _bayesian_modules(model):
        module.unfreeze()


def total_kl(
    model: torch.nn.Module, estimator: KLEstimator = "closed_form"
) -> tuple[torch.Tensor, int]:
    """Sum ``kl_cost(estimator)`` over every Bayesian module of ``model``.

    Returns:
        ``(summed KL, total number of random values)``; the KL is a 0-d
        tensor on the model's device and dtype (zero without Bayesian modules).
    """
    check_kl_estimator(estimator)
    terms: list[torch.Tensor] = []
    num_params = 0
    # Small Gaussian tensors: one grouped KL in eager training (see grouped_kl).
    deferred: list[GaussianDistribution] | None = (
        [] if estimator == "closed_form" and fusable() else None
    )
    for module in _bayesian_modules(model):
        module_terms, module_params = module._kl_terms(estimator, deferred)
        terms.extend(module_terms)
        num_params += module_params
    if deferred:
        plans = model.__dict__.setdefault("_grouped_kl_plans", {})
        terms.extend(grouped_kl(deferred, plans))
    return _sum_or_zero(terms, model), num_params
