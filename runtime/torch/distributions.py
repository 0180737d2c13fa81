"""Learnable variational distributions over a layer's random tensors."""

from __future__ import annotations

import math
import weakref
from abc import ABC, abstractmethod
from typing import Any, Literal

import torch
import torch.nn.functional as F

__all__ = ["DistributionModule", "GaussianDistribution", "KLEstimator"]

#: How a KL cost is computed: ``"closed_form"`` (exact, where the posterior and
#: the prior have one; the default) or ``"sample"`` (the reference's one-sample
#: estimate ``log q(w) - log p(w)`` at the current sample ``w``).
KLEstimator = Literal["closed_form", "sample"]
KL_ESTIMATORS: tuple[str, ...] = ("closed_form", "sample")


def check_kl_estimator(estimator: str) -> None:
    """Raise ``ValueError`` unless ``estimator`` is one of :data:`KL_ESTIMATORS`."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(
            f"KL estimator must be one of {', '.join(map(repr, KL_ESTIMATORS))}, "
            f"not {estimator!r}"
        )


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: Gaussian tensors with at most this many elements sample with plain
#: operations and have their KL evaluated in a group by ``total_kl``
#: (:mod:`.grouped_kl`); larger ones sample and take their KL in one fused
#: function. Per-operation overhead, not arithmetic, dominates below it.
SMALL_NUMEL = 1 << 16


#: Below this ``rho``, ``log(softplus(rho))`` is computed as ``rho - exp(rho) / 2``
#: (the next term of the series, ``5 exp(2 rho) / 24``, is under 1e-18 there).
_LOG_SOFTPLUS_TAIL = -20.0


def _log_softplus(rho: torch.Tensor) -> torch.Tensor:
    """``log(softplus(rho))`` without underflow, with finite gradients everywhere.

    For very negative ``rho`` the posterior sigma ``softplus(rho) ~ exp(rho)``
    is tiny (``2e-22`` at ``rho = -50``), and its square (the old form of the
    density) is subnormal in float32; the log is taken of neither. Each branch
    of the ``where`` sees a clamped argument, so the branch not taken has a
    finite gradient too.
    """
    tail = rho - 0.5 * torch.exp(torch.clamp(rho, max=_LOG_SOFTPLUS_TAIL))
    head = torch.log(F.softplus(torch.clamp(rho, min=_LOG_SOFTPLUS_TAIL)))
    return torch.where(rho < _LOG_SOFTPLUS_TAIL, tail, head)


def _normal_log_density(
    x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """Elementwise log N(x; mean, exp(log_std)**2), without host-side constants.

    Written with ``log_std`` and ``z = (x - mean) * exp(-log_std)``, so that
    neither the value nor the gradient squares or divides by a tiny ``std``.
    """
    z = (x - mean) * torch.exp(-log_std)
    return -_LOG_SQRT_2PI - log_std - 0.5 * z * z


class DistributionModule(torch.nn.Module, ABC):
    """Abstract base of learnable distributions (variational posteriors).

    Subclasses implement :meth:`sample`, :meth:`log_prob` and :meth:`num_params`.
    Unlike the JAX runtime, where ``num_params`` is a property, it is a method
    here, as in the PyTorch reference.
    """

    @abstractmethod
    def sample(self) -> torch.Tensor:
        """Draw one sample shaped like the distribution's parameters."""

    @abstractmethod
    def log_prob(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Return a scalar log-probability of ``x`` (a fresh sample if None)."""

    @abstractmethod
    def num_params(self) -> int:
        """Return the number of random values the distribution describes."""

    def kl_divergence(self) -> torch.Tensor:
        """Closed-form KL(q || p) summed over elements, where one exists.

        Raises:
            NotImplementedError: For distributions without a closed form; the
                KL cost then falls back to the one-sample estimate.
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed-form KL")

    def sample_with_kl(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A fresh sample and, when cheaper together, the closed-form KL.

        The default draws :meth:`sample` and returns ``None`` for the KL.
        """
        return self.sample(), None


class GaussianDistribution(DistributionModule):
    """Diagonal Gaussian posterior ``N(mu, softplus(rho)**2)`` with a Gaussian prior.

    ``mu`` and ``rho`` are trainable and initialised as ``N(mu_init, 0.1)`` and
    ``N(rho_init, 0.1)``; the prior ``N(mu_prior, std_prior**2)`` is stored in the
    buffers ``mu_prior`` and ``std_prior`` (shape ``[1]``).

    Differences from the reference implementation (same results, sturdier):
    sigma is ``torch.nn.functional.softplus(rho)``, which does not overflow for
    large ``rho`` as ``log1p(exp(rho))`` does, and the log-densities use a Python
    constant for ``log(sqrt(2 pi))`` instead of a CPU tensor, so they run on any
    device and dtype and under ``torch.compile``. The reference also subtracts an
    extra ``0.5`` from both log-densities; it cancels in :meth:`log_prob`.
    :meth:`log_prob` uses ``log sigma`` computed as a log-softplus and never
    squares sigma, so it and its gradients stay finite for ``rho`` from about
    ``-88`` up in float32 (tested on ``[-50, 50]``, where ``sigma**2``
    underflows) and float64.
    """

    mu: torch.nn.Parameter
    rho: torch.nn.Parameter
    mu_prior: torch.Tensor
    std_prior: torch.Tensor

    def __init__(
        self,
        shape: tuple[int, ...],
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        **kwargs: Any,
    ) -> None:
        """Create the distribution.

        Args:
            shape: Shape of the random tensor (an int is read as ``(shape,)``).
            mu_prior: Mean of the Gaussian prior.
            std_prior: Standard deviation of the Gaussian prior.
            mu_init: Mean of the initial values of ``mu``.
            rho_init: Mean of the initial values of ``rho``.
            **kwargs: Passed to ``torch.nn.Module``.
        """
        super().__init__(**kwargs)
        self.shape = shape
        self.mu_init = mu_init
        self.rho_init = rho_init
        size = torch.Size((shape,) if isinstance(shape, int) else shape)
        self.register_buffer("mu_prior", torch.tensor([float(mu_prior)]))
        self.register_buffer("std_prior", torch.tensor([float(std_prior)]))
        self.mu = torch.nn.Parameter(torch.empty(size).normal_(mu_init, 0.1))
        self.rho = torch.nn.Parameter(torch.empty(size).normal_(rho_init, 0.1))

    @property
    def sigma(self) -> torch.Tensor:
        """Posterior standard deviation ``softplus(rho)``."""
        return F.softplus(self.rho)

    def sample(self) -> torch.Tensor:
        """Draw ``mu + softplus(rho) * eps`` with ``eps ~ N(0, 1)`` (reparameterised).

        Returns:
            A tensor shaped like ``mu``, differentiable with respect to ``mu``
            and ``rho``.
        """
        eps = torch.randn_like(self.rho)
        return torch.addcmul(self.mu, self.sigma, eps)

    def kl_divergence(self) -> torch.Tensor:
        """Closed-form KL(q || p) summed over elements, as a 0-d tensor.

        ``sum(log s_p - log sigma + (sigma**2 + (mu - mu_p)**2) / (2 s_p**2) - 1/2)``.
        If :meth:`sample_with_kl` computed it for the current ``mu`` and ``rho``
        (not modified in place since, and not yet back-propagated), that value
        is returned, so a training step evaluates the KL once; otherwise it is
        computed here, with ``log sigma`` as a stable log-softplus.
        """
        cached = self._cached_kl()
        if cached is not None:
            return cached
        log_sigma = _log_softplus(self.rho)
        log_std_prior = torch.log(self.std_prior)
        half_inv_var = 0.5 * torch.exp(-2.0 * log_std_prior)
        diff = self.mu - self.mu_prior
        terms = (
            log_std_prior
            - log_sigma
            + (torch.exp(2.0 * log_sigma) + diff * diff) * half_inv_var
            - 0.5
        )
        return terms.sum()

    def sample_with_kl(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A fresh sample and the closed-form KL, fused for a training step.

        In eager mode with gradients on, one custom autograd function draws
        ``mu + softplus(rho) * eps`` and evaluates the KL in the same pass
        over the parameters, and its backward writes both gradients at once
        (about half the elementwise passes of sampling and KL taken apart).
        The KL is remembered for :meth:`kl_divergence`. Under
        ``torch.compile``, functorch transforms or ``torch.no_grad()`` this is
        :meth:`sample` (and the KL is None): the compiler fuses the plain ops
        itself, and without gradients the KL is not needed. So is a tensor of
        at most :data:`SMALL_NUMEL` elements, whose KL
        :func:`~.base.total_kl` evaluates with the model's other small
        tensors in one function (:mod:`.grouped_kl`).
        """
        if not fusable() or groupable(self):
            # a small tensor's KL: total_kl takes it with the others' (grouped_kl)
            return self.sample(), None
        # The tensors straight from the module's dicts, and the record stored
        # without Module.__setattr__: this runs for every tensor of every step.
        params = self._parameters
        mu, rho = params.get("mu"), params.get("rho")
        if mu is None or rho is None:  # replaced by plain tensors
            mu, rho = self.mu, self.rho
        record = _KLRecord(mu, rho)
        value, kl = _GaussianSampleKL.apply(mu, rho, self._prior_terms(), record)
        record.kl = kl
        self.__dict__["_kl_record"] = record
        return value, kl

    def _prior_terms(self) -> _PriorTerms:
        """The prior's constants for the fused KL, recomputed when it changes.

        Cached against the prior buffers' identity and version counters, so
        a training step does no small tensor arithmetic on them and never
        reads a device value back, except once after the prior changes.
        """
        buffers = self._buffers
        mu_prior, std_prior = buffers["mu_prior"], buffers["std_prior"]
        mu = self._parameters.get("mu")
        if mu is None:
            mu = self.mu
        key = (
            id(mu_prior),
            mu_prior._version,
            id(std_prior),
            std_prior._version,
            mu.numel(),
            mu.dtype,
            mu.device,
        )
        terms = self.__dict__.get("_prior_cache")
        if terms is None or terms.key != key:
            terms = _PriorTerms(key, mu_prior, std_prior, mu.numel())
            self.__dict__["_prior_cache"] = terms
        return terms

    def _cached_kl(self) -> torch.Tensor | None:
        record = self.__dict__.get("_kl_record")
        if record is None or _in_transform() or not record.valid_for(self):
            return None
        return record.kl

    def __getstate__(self) -> dict[str, Any]:
        """State for ``copy.deepcopy`` and ``pickle``, without the remembered KL."""
        state = super().__getstate__()
        state.pop("_kl_record", None)
        state.pop("_prior_cache", None)
        return state

    def log_prob(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """One-sample estimate of KL(q || p): ``sum log q(x) - sum log p(x)``.

        Args:
            x: Value to evaluate; a fresh sample is drawn when None.

        Returns:
            A 0-d tensor.
        """
        if x is None:
            x = self.sample()
        log_posterior = _normal_log_density(x, self.mu, _log_softplus(self.rho))
        log_prior = _normal_log_density(x, self.mu_prior, torch.log(self.std_prior))
        return log_posterior.sum() - log_prior.sum()

    def num_params(self) -> int:
        """Return the number of elements of ``mu``."""
        return self.mu.numel()

    def extra_repr(self) -> str:
        """Shape and prior, for ``print(module)``."""
        return f"shape={tuple(self.mu.shape)}"


def _in_transform() -> bool:
    """True under ``torch.compile`` or a functorch transform (vmap, grad)."""
    return (
        torch.compiler.is_compiling()
        or torch._C._functorch.peek_interpreter_stack() is not None
    )


def fusable() -> bool:
    """True where the fused sample-and-KL function may run: eager autograd."""
    return torch.is_grad_enabled() and not _in_transform()


def groupable(distribution: Any) -> bool:
    """Whether the closed-form KL of ``distribution`` is taken in a group.

    Exactly :class:`GaussianDistribution` (a subclass may define its KL
    differently) with ``mu`` and ``rho`` registered parameters and at most
    :data:`SMALL_NUMEL` elements (:mod:`.grouped_kl`).
    """
    if type(distribution) is not GaussianDistribution:
        return False
    params = distribution._parameters
    mu = params.get("mu")
    return (
        mu is not None and params.get("rho") is not None and mu.numel() <= SMALL_NUMEL
    )


def gaussian_kl_backward(
    grad_kl: torch.Tensor,
    scaled: torch.Tensor,
    rho: torch.Tensor,
    sigma: torch.Tensor,
    diff: torch.Tensor,
    grad_value: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the closed-form KL (plus a sample's, if given) for mu, rho.

    With ``c = grad_kl``, ``scaled = c / s_p**2`` (a scalar or per element)
    and ``g = grad_value``: ``d mu = g + scaled (mu - mu_p)`` and
    ``d rho = sigmoid(rho) (g eps + scaled sigma - c / sigma)``; without a
    sample the ``g`` terms are absent. Shared by the fused per-tensor
    function and the grouped KL.
    """
    if grad_value is None:
        grad_mu = diff * scaled
        grad_rho = sigma * scaled
    else:
        grad_mu = torch.addcmul(grad_value, diff, scaled)
        grad_rho = grad_value * eps
        grad_rho.addcmul_(sigma, scaled)
    grad_rho.addcdiv_(grad_kl, sigma, value=-1.0)
    # times d softplus / d rho (= sigmoid(rho)), in one kernel
    return grad_mu, torch.ops.aten.softplus_backward(grad_rho, rho, 1.0, 20.0)


class _PriorTerms:
    """Constants of the Gaussian prior as the fused KL uses them."""

    __slots__ = (
        "constant",
        "half_inv_var",
        "inv_var",
        "key",
        "mu_prior",
        "sources",
        "zero_mean",
    )

    def __init__(
        self,
        key: tuple[Any, ...],
        mu_prior: torch.Tensor,
        std_prior: torch.Tensor,
        count: int,
    ) -> None:
        self.key = key
        # Holding the buffers keeps their ids (in ``key``) from being reused.
        self.sources = (mu_prior, std_prior)
        with torch.no_grad():
            self.mu_prior = mu_prior.detach().clone()
            # One read-back per prior change (none on the meta device).
            self.zero_mean = mu_prior.device.type != "meta" and bool(
                (mu_prior == 0).all()
            )
            self.inv_var = std_prior.reciprocal().square().reshape(())
            self.half_inv_var = 0.5 * self.inv_var
            # sum over elements of log s_p - 1/2
            self.constant = (count * (torch.log(std_prior) - 0.5)).reshape(())


class _KLRecord:
    """The KL evaluated with a sample, valid while mu and rho are unchanged."""

    __slots__ = (
        "__weakref__",
        "consumed",
        "kl",
        "mu",
        "mu_version",
        "rho",
        "rho_version",
    )

    def __init__(self, mu: torch.Tensor, rho: torch.Tensor) -> None:
        self.mu, self.rho = mu, rho
        self.mu_version, self.rho_version = mu._version, rho._version
        self.kl: torch.Tensor | None = None
        self.consumed = False

    def valid_for(self, distribution: GaussianDistribution) -> bool:
        """Same tensors, not modified in place, graph not yet back-propagated."""
        params = distribution._parameters
        return (
            not self.consumed
            and self.kl is not None
            and params.get("mu") is self.mu
            and params.get("rho") is self.rho
            and self.mu._version == self.mu_version
            and self.rho._version == self.rho_version
        )


class _GaussianSampleKL(torch.autograd.Function):
    """``w = mu + softplus(rho) * eps`` and the closed-form KL, one pass each way.

    Forward: ``randn``, ``softplus``, ``addcmul`` for the sample and three
    reductions for the KL. Backward, with ``g`` the gradient of ``w`` and
    ``c`` that of the KL, ``sigma = softplus(rho)`` and ``v = s_p**2``:
    ``d mu = g + c (mu - mu_p) / v`` and
    ``d rho = sigmoid(rho) (g eps + c sigma / v - c / sigma)``.
    Valid where ``softplus(rho)`` is a normal float (``rho > -87`` in float32).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        mu: torch.Tensor,
        rho: torch.Tensor,
        prior: _PriorTerms,
        record: _KLRecord,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps = torch.randn_like(rho)
        sigma = F.softplus(rho)
        value = torch.addcmul(mu, sigma, eps)
        diff = mu if prior.zero_mean else mu - prior.mu_prior
        flat_sigma, flat_diff = sigma.reshape(-1), diff.reshape(-1)
        quadratic = torch.dot(flat_sigma, flat_sigma) + torch.dot(flat_diff, flat_diff)
        log_sigma = torch.log(sigma).sum()
        kl = torch.addcmul(prior.constant - log_sigma, prior.half_inv_var, quadratic)
        ctx.save_for_backward(rho, eps, sigma, diff)
        ctx.inv_var = prior.inv_var
        # A weak reference: the record holds the KL, whose graph holds ctx.
        ctx.record = weakref.ref(record)
        return value, kl

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_value: torch.Tensor, grad_kl: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        record = ctx.record()
        if record is not None:
            record.consumed = True
        rho, eps, sigma, diff = ctx.saved_tensors
        grad_mu, grad_rho = gaussian_kl_backward(
            grad_kl, grad_kl * ctx.inv_var, rho, sigma, diff, grad_value, eps
        )
        return grad_mu, grad_rho, None, None
