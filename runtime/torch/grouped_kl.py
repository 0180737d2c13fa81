"""The closed-form KL of many small Gaussian tensors in one autograd function.

For a small tensor a training step pays per operation, not per element: its
KL drawn alongside the sample (:class:`~.distributions._GaussianSampleKL`)
costs a dozen operations and a Python backward, as much for a 10-element bias
as for a 5,000-element kernel. Small tensors therefore sample with plain
operations (as cheap as the sampling floor) and :func:`~.base.total_kl`
evaluates all their KLs together: one concatenation of the ``mu`` and of the
``rho``, one pass of elementwise work, and one backward that writes every
gradient. Large tensors keep the fused per-tensor function, which shares
``softplus(rho)`` between the sample and the KL.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .distributions import GaussianDistribution, gaussian_kl_backward


class _Plan:
    """The group's shapes and prior constants as per-element vectors."""

    __slots__ = (
        "constant",
        "half_inv_var",
        "inv_var",
        "key",
        "mu_prior",
        "shapes",
        "sizes",
        "sources",
        "zero_mean",
    )

    def __init__(
        self, key: tuple[Any, ...], members: list[GaussianDistribution]
    ) -> None:
        self.key = key
        terms = [member._prior_terms() for member in members]
        # The per-tensor terms hold the prior buffers whose ids are in the key.
        self.sources = terms
        mus = [member._parameters["mu"] for member in members]
        self.shapes = [mu.shape for mu in mus]
        self.sizes = [mu.numel() for mu in mus]
        with torch.no_grad():
            lengths = torch.tensor(self.sizes, device=mus[0].device)

            def per_element(values: list[torch.Tensor]) -> torch.Tensor:
                flat = torch.stack([v.reshape(()) for v in values])
                return flat.to(mus[0].dtype).repeat_interleave(
                    lengths, output_size=sum(self.sizes)
                )

            self.zero_mean = all(t.zero_mean for t in terms)
            self.mu_prior = per_element([t.mu_prior for t in terms])
            self.inv_var = per_element([t.inv_var for t in terms])
            self.half_inv_var = 0.5 * self.inv_var
            self.constant = torch.stack([t.constant.reshape(()) for t in terms]).sum()


def _plan(
    plans: dict[Any, _Plan], group: Any, members: list[GaussianDistribution]
) -> _Plan:
    """The plan of ``members``, kept in ``plans`` while priors and shapes hold."""
    key = tuple(
        (id(member), member._prior_terms().key, member._parameters["mu"].shape)
        for member in members
    )
    plan = plans.get(group)
    if plan is None or plan.key != key:
        plan = _Plan(key, members)
        plans[group] = plan
    return plan


class _GaussianGroupKL(torch.autograd.Function):
    """Summed closed-form KL of a group of Gaussian tensors.

    Per element, with ``sigma = softplus(rho)``, prior ``(mu_p, s_p)`` and
    ``v = s_p**2``: ``log s_p - log sigma + (sigma**2 + (mu - mu_p)**2) / (2 v)
    - 1/2``. Backward, with ``c`` the incoming gradient:
    ``d mu = c (mu - mu_p) / v`` and
    ``d rho = sigmoid(rho) c (sigma / v - 1 / sigma)``.
    Valid where ``softplus(rho)`` is a normal float (``rho > -87`` in float32),
    as the per-tensor fused function.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, plan: _Plan, *tensors: torch.Tensor
    ) -> torch.Tensor:
        count = len(plan.sizes)
        mu = torch.cat([t.reshape(-1) for t in tensors[:count]])
        rho = torch.cat([t.reshape(-1) for t in tensors[count:]])
        sigma = F.softplus(rho)
        diff = mu if plan.zero_mean else mu - plan.mu_prior
        quadratic = torch.addcmul(sigma * sigma, diff, diff)
        kl = torch.dot(quadratic, plan.half_inv_var)
        kl = kl.sub_(torch.log(sigma).sum()).add_(plan.constant)
        ctx.save_for_backward(rho, sigma, diff)
        ctx.plan = plan
        return kl

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_kl: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        plan: _Plan = ctx.plan
        rho, sigma, diff = ctx.saved_tensors
        grad_mu, grad_rho = gaussian_kl_backward(
            grad_kl, plan.inv_var * grad_kl, rho, sigma, diff
        )
        grads = [
            part.view(shape)
            for flat in (grad_mu, grad_rho)
            for part, shape in zip(flat.split(plan.sizes), plan.shapes, strict=True)
        ]
        return (None, *grads)


def grouped_kl(
    members: list[GaussianDistribution], plans: dict[Any, Any]
) -> list[torch.Tensor]:
    """The summed closed-form KL of :func:`~.distributions.groupable` ones.

    Args:
        members: The distributions, in any number; they are grouped by device
            and dtype, one autograd function per group.
        plans: Where the groups' prior constants are kept between calls
            (:func:`~.base.total_kl` keeps one such dict per model).

    Returns:
        One 0-d KL per device and dtype group (empty without members).
    """
    groups: dict[tuple[torch.dtype, torch.device], list[GaussianDistribution]] = {}
    for member in members:
        mu = member._parameters["mu"]
        groups.setdefault((mu.dtype, mu.device), []).append(member)
    terms = []
    for group, group_members in groups.items():
        plan = _plan(plans, group, group_members)
        mus = [member._parameters["mu"] for member in group_members]
        rhos = [member._parameters["rho"] for member in group_members]
        terms.append(_GaussianGroupKL.apply(plan, *mus, *rhos))
    return terms
