"""Shared machinery of Bayesian layers and of their deterministic twins (Flax NNX).

A Bayesian layer registers each random tensor once with
:meth:`BayesianModule._register_random`; sampling, freezing, unfreezing and the
KL cost are written here, once, for every layer, as in the torch runtime.

How state is stored (an improvement over the reference, which wraps every
fresh sample in a new ``nnx.Param``): a random tensor ``name`` has a
distribution submodule ``<name>_distribution`` whose ``mu`` and ``rho`` are the
only ``nnx.Param`` of a Bayesian layer, and its current value lives in the
:class:`~.distributions.Sample` variable ``name``, updated in place
(``set_value``) on every call. The graph therefore has the same structure
before and after a call, so ``nnx.jit`` traces a training step once, and an
optimiser built with ``wrt=nnx.Param`` keeps moments only for ``mu``, ``rho``
and the weights of ``Fixed*`` layers.
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Iterator
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from .distributions import (
    DEFAULT_RNGS,
    DistributionModule,
    GaussianDistribution,
    Sample,
)

__all__ = [
    "DEFAULT_RNGS",
    "KL_ESTIMATORS",
    "BayesianModule",
    "FixedModule",
    "KLEstimator",
    "bayesian_modules",
    "freeze_all",
    "init_like_torch",
    "total_kl",
    "unfreeze_all",
    "uniform",
]

_FROZEN_UNDEFINED = "Module has been frozen with undefined weights and/or bias."

#: How a KL cost is computed: ``"closed_form"`` (the default) uses each
#: distribution's :meth:`~.distributions.DistributionModule.kl_divergence`,
#: falling back to the sample estimate for a distribution without one;
#: ``"sample"`` is the reference's one-sample estimate ``log q(w) - log p(w)``
#: of the current samples ``w``.
KLEstimator = Literal["closed_form", "sample"]
KL_ESTIMATORS: tuple[str, ...] = ("closed_form", "sample")


def check_kl_estimator(estimator: str, name: str = "estimator") -> str:
    """Return ``estimator`` (the argument ``name``) if it is in :data:`KL_ESTIMATORS`.

    Raises:
        ValueError: For any other value.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"{name} must be 'closed_form' or 'sample', not {estimator!r}")
    return estimator


def _zero_like_module(module: nnx.Module) -> jax.Array:
    """A 0-d zero of the floating dtype of ``module``'s first parameter."""
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable) and not isinstance(node, nnx.RngState):
            value = node.get_value()
            if isinstance(value, jax.Array) and jnp.issubdtype(
                value.dtype, jnp.floating
            ):
                return jnp.zeros((), value.dtype)
    return jnp.zeros((), jnp.float32)


class BayesianModule(nnx.Module, ABC):
    """Base of Bayesian layers: random tensors that are resampled on every call.

    A subclass calls :meth:`_register_random` for each random tensor, e.g.
    ``self._register_random("weights", dist, shape, rngs=rngs)``: the
    distribution becomes the submodule ``weights_distribution`` and the current
    sample the :class:`~.distributions.Sample` variable ``weights`` (sampled
    once at construction). ``__call__`` calls :meth:`_resample` first and then
    reads the current values with :meth:`_current`.

    Attributes:
        frozen: When True, calls reuse the current samples.
        is_bayesian: True for Bayesian layers, False for deterministic ones.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Set ``frozen = False`` and ``is_bayesian = True``.

        Args:
            **kwargs: Passed to ``nnx.Module``.
        """
        super().__init__(**kwargs)
        self.frozen: bool = False
        self.is_bayesian: bool = True
        self._random_names: tuple[str, ...] = ()

    # -- registration ------------------------------------------------------

    def _register_random(
        self,
        name: str,
        distribution: DistributionModule | None,
        shape: tuple[int, ...] | None = None,
        *,
        rngs: nnx.Rngs,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
    ) -> None:
        """Register the random tensor ``name`` drawn from ``distribution``.

        Stores the distribution as the submodule ``<name>_distribution`` and an
        initial sample (drawn from ``rngs``) as the :class:`Sample` ``name``.

        Args:
            name: Attribute name of the random tensor (e.g. ``"weights"``).
            distribution: Its distribution; when None, a
                :class:`GaussianDistribution` of ``shape`` built from the
                prior/posterior keywords and ``rngs``.
            shape: Shape of the default distribution.
            rngs: Random streams of the layer.
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
                rngs=rngs,
            )
        setattr(self, f"{name}_distribution", distribution)
        setattr(self, name, Sample(jax.lax.stop_gradient(distribution.sample(rngs))))
        self._random_names = (*self._random_names, name)

    def _register_absent(self, name: str) -> None:
        """Declare an unused optional random tensor (e.g. ``bias`` without bias).

        Both ``name`` and ``<name>_distribution`` read as None.
        """
        setattr(self, f"{name}_distribution", None)
        setattr(self, name, None)

    def _register_weights_and_bias(
        self,
        weights_shape: tuple[int, ...],
        weights_distribution: DistributionModule | None,
        bias_distribution: DistributionModule | None,
        use_bias: bool,
        *,
        rngs: nnx.Rngs,
        **priors: float,
    ) -> None:
        """Register ``weights`` and, if ``use_bias``, a bias of shape ``(out,)``.

        ``out`` is ``weights_shape[0]``; ``priors`` are the keywords of
        :meth:`_register_random`.
        """
        self._register_random(
            "weights", weights_distribution, weights_shape, rngs=rngs, **priors
        )
        if use_bias:
            shape = (weights_shape[0],)
            self._register_random("bias", bias_distribution, shape, rngs=rngs, **priors)
        else:
            self._register_absent("bias")

    def random_tensors(
        self,
    ) -> Iterator[tuple[str, DistributionModule, jax.Array | None]]:
        """Yield ``(name, distribution, current value)`` for each random tensor.

        The value is the array held by the :class:`Sample` ``name`` (None when
        the attribute was set to None).
        """
        for name in self._random_names:
            distribution = getattr(self, f"{name}_distribution")
            variable = getattr(self, name)
            value = None if variable is None else jnp.asarray(variable[...])
            yield name, distribution, value

    # -- sampling ----------------------------------------------------------

    def _store(self, name: str, value: jax.Array) -> None:
        """Write ``value`` into the :class:`Sample` ``name`` in place.

        The variable is created only if the attribute was None (after a user
        cleared it), so the graph structure does not change from call to call.
        """
        variable = getattr(self, name)
        if isinstance(variable, Sample):
            variable.set_value(value)
        else:
            setattr(self, name, Sample(value))

    def _resample(self) -> None:
        """Draw fresh values for every random tensor unless the module is frozen.

        Keys come from ``self.rngs.sample()``.

        Raises:
            ValueError: If the module is frozen and a value is undefined.
        """
        if not self.frozen:
            for name, distribution, _ in self.random_tensors():
                self._store(name, distribution.sample(self.rngs))
        elif any(value is None for _, _, value in self.random_tensors()):
            raise ValueError(_FROZEN_UNDEFINED)

    def _current(self, name: str) -> jax.Array | None:
        """The value of random tensor ``name`` for the forward maths.

        Gradients are stopped when the module is frozen.
        """
        variable = getattr(self, name)
        if variable is None:
            return None
        value = jnp.asarray(variable[...])
        return jax.lax.stop_gradient(value) if self.frozen else value

    def freeze(self) -> None:
        """Fix the current samples (drawing any that are missing) and stop gradients.

        Bayesian submodules (e.g. an LSTM's embedding) are frozen as well.
        """
        self.frozen = True
        for name, distribution, value in self.random_tensors():
            if value is None:
                value = distribution.sample(self.rngs)
            self._store(name, jax.lax.stop_gradient(value))
        for module in self._bayesian_descendants():
            module.freeze()

    def unfreeze(self) -> None:
        """Resume sampling on every call (Bayesian submodules included)."""
        self.frozen = False
        for module in self._bayesian_descendants():
            module.unfreeze()

    def _bayesian_descendants(self) -> Iterator[BayesianModule]:
        for path, module in nnx.iter_modules(self):
            if path and isinstance(module, BayesianModule):
                yield module

    def kl_cost(self, estimator: KLEstimator = "closed_form") -> tuple[jax.Array, int]:
        """KL cost of this module's own random tensors.

        Args:
            estimator: ``"closed_form"`` (default): the exact
                ``KL(q || p)`` of each distribution from its parameters
                (:meth:`~.distributions.DistributionModule.kl_divergence`),
                whatever the current samples and whether or not the module is
                frozen; a distribution without a closed form (its
                ``kl_divergence`` raises ``NotImplementedError``) falls back
                to the sample estimate. ``"sample"``: the reference's
                one-sample estimate, ``distribution.log_prob`` of each current
                value (gradients through the value stopped when frozen;
                a value set to None is skipped).

        Returns:
            ``(KL, number of parameters)``: the summed KL (a 0-d array) and the
            number of random values. Bayesian submodules are not included (as
            in the reference, an LSTM's embedding reports its own cost);
            :class:`KLDivergenceLoss` and :func:`total_kl` visit every module.

        Raises:
            ValueError: For an unknown ``estimator``.
        """
        check_kl_estimator(estimator)
        kl = _zero_like_module(self)
        num_params = 0
        for name, distribution, _ in self.random_tensors():
            term = None
            if estimator == "closed_form":
                try:
                    term = distribution.kl_divergence()
                except NotImplementedError:
                    term = None
            if term is None:
                value = self._current(name)  # gradients stopped when frozen
                if value is not None:
                    term = distribution.log_prob(value)
            if term is not None:
                kl = kl + term
            num_params += distribution.num_params
        return kl, num_params


class FixedModule(BayesianModule):
    """Base of deterministic layers (``fixed`` in a spec).

    The tensors are ``nnx.Param`` with the same attribute names as the
    Bayesian twin. ``is_bayesian`` is False, ``freeze`` and ``unfreeze`` do
    nothing and ``kl_cost`` is ``(0., 0)``.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Set ``is_bayesian = False``.

        Args:
            **kwargs: Passed to ``nnx.Module``.
        """
        super().__init__(**kwargs)
        self.is_bayesian = False

    def freeze(self) -> None:
        """Do nothing: the tensors are already fixed."""

    def unfreeze(self) -> None:
        """Do nothing: the tensors are never sampled."""

    def kl_cost(self, estimator: KLEstimator = "closed_form") -> tuple[jax.Array, int]:
        """Return ``(0., 0)``: a deterministic layer has no KL cost."""
        check_kl_estimator(estimator)
        return _zero_like_module(self), 0

    def _current(self, name: str) -> jax.Array | None:
        variable = getattr(self, name)
        return None if variable is None else jnp.asarray(variable[...])

    def _create_weights_and_bias(
        self, weights_shape: tuple[int, ...], use_bias: bool, rngs: nnx.Rngs
    ) -> None:
        """Create ``weights`` and (if ``use_bias``) ``bias`` like ``torch.nn``.

        Shapes are ``weights_shape`` and ``(weights_shape[0],)``; values are
        drawn as in :func:`init_like_torch` from ``rngs.params()``.
        """
        weights, bias = init_like_torch(weights_shape, use_bias, rngs)
        self.weights = nnx.Param(weights)
        self.bias = None if bias is None else nnx.Param(bias)


@partial(jax.jit, static_argnums=(1,))
def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def uniform(rngs: nnx.Rngs, shape: tuple[int, ...], bound: float) -> jax.Array:
    """Values uniform in ``[-bound, bound)`` from ``rngs.params()``."""
    return _uniform(rngs.params(), tuple(shape), float(bound))


def init_like_torch(
    weights_shape: tuple[int, ...], use_bias: bool, rngs: nnx.Rngs
) -> tuple[jax.Array, jax.Array | None]:
    """Initialise as ``torch.nn.Linear``/``ConvNd`` do.

    Kaiming-uniform weights with ``a = sqrt(5)``, i.e. uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, and a bias uniform in the same
    interval, where ``fan_in`` is the number of elements of one output row.
    """
    fan_in = math.prod(weights_shape[1:])
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    weights = uniform(rngs, weights_shape, bound)
    bias = uniform(rngs, (weights_shape[0],), bound) if use_bias else None
    return weights, bias


def bayesian_modules(model: nnx.Module) -> Iterator[BayesianModule]:
    """Yield every Bayesian module of ``model`` (``model`` included), once each."""
    for _, module in nnx.iter_modules(model):
        if isinstance(module, BayesianModule) and module.is_bayesian:
            yield module


def freeze_all(model: nnx.Module) -> None:
    """Freeze every Bayesian module in ``model`` (samples drawn where missing)."""
    for module in list(bayesian_modules(model)):
        module.freeze()


def unfreeze_all(model: nnx.Module) -> None:
    """Unfreeze every Bayesian module in ``model``."""
    for module in list(bayesian_modules(model)):
        module.unfreeze()


def total_kl(
    model: nnx.Module, estimator: KLEstimator = "closed_form"
) -> tuple[jax.Array, int]:
    """Sum ``kl_cost(estimator)`` over every Bayesian module of ``model``.

    Args:
        model: The model.
        estimator: ``"closed_form"`` (default) or ``"sample"``, as in
            :meth:`BayesianModule.kl_cost`.

    Returns:
        ``(summed KL, total number of random values)``; the KL is a 0-d array
        of the model's floating dtype (zero without Bayesian modules).
    """
    check_kl_estimator(estimator)
    kl = _zero_like_module(model)
    num_params = 0
    for module in bayesian_modules(model):
        module_kl, module_params = module.kl_cost(estimator)
        kl = kl + module_kl
        num_params += module_params
    return kl, num_params
