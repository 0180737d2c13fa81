"""Stochastic output heads (torch): Distribution, containers, BSQ, NLL, ELBO, MC."""

from __future__ import annotations

import doctest
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

import bnnc.runtime.torch as bnn
from bnnc.runtime.torch import heads
from bnnc.runtime.torch.heads import (
    BernoulliStoch,
    BSQCodebook,
    CategoricalStoch,
    Distribution,
    NormalStoch,
    cat_dist,
    get_dist,
    head_nll,
    predictive_interval,
    predictive_normal,
    stack_dist,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run single-threaded: the tensors are tiny, and a second intra-op thread
    only adds synchronisation (costly when the machine is busy)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- doctests --------------------------------------------------------------------------


def test_reference_examples_hold_as_doctests() -> None:
    result = doctest.testmod(heads, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0


def test_heads_are_exported() -> None:
    for name in heads.__all__:
        assert getattr(bnn, name) is getattr(heads, name)


# -- the head: shapes ------------------------------------------------------------------

BATCHES = [(3,), (2, 3)]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("deterministic", [False, True])
def test_normal_shapes(batch: tuple[int, ...], deterministic: bool) -> None:
    out = Distribution(4, "normal")(torch.randn(*batch, 8), deterministic)
    assert isinstance(out, NormalStoch)
    assert out.shape == bnn.NormalShape(*[torch.Size([*batch, 4])] * 3)


@pytest.mark.parametrize("dist", ["categorical", "bernoulli"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n_groups", [1, 3])
@pytest.mark.parametrize("spherical", [False, True])
@pytest.mark.parametrize("deterministic", [False, True])
def test_grouped_shapes(
    dist: str,
    batch: tuple[int, ...],
    n_groups: int,
    spherical: bool,
    deterministic: bool,
) -> None:
    head = Distribution(12, dist, n_groups=n_groups, spherical=spherical)
    out = head(torch.randn(*batch, 12), deterministic=deterministic)
    assert isinstance(
        out, CategoricalStoch if dist == "categorical" else BernoulliStoch
    )
    grouped = torch.Size([*batch, n_groups, 12 // n_groups])
    assert tuple(out.shape) == (grouped, grouped, torch.Size([*batch, 12]))


# -- straight-through estimator --------------------------------------------------------


def _st_gradients(
    head: Distribution, x: torch.Tensor, deterministic: bool = False
) -> tuple[torch.Tensor, torch.Tensor, object]:
    """Gradients wrt x of a linear loss on ``stoch`` and on the flattened probs."""
    x = x.clone().requires_grad_(True)
    out = head(x, deterministic=deterministic)
    weights = torch.randn(out.stoch.shape, generator=torch.Generator().manual_seed(1))
    (grad_stoch,) = torch.autograd.grad(
        (weights * out.stoch).sum(), x, retain_graph=True
    )
    (grad_probs,) = torch.autograd.grad((weights * out.probs.flatten(-2)).sum(), x)
    return grad_stoch, grad_probs, out


@pytest.mark.parametrize("deterministic", [False, True])
def test_categorical_straight_through(deterministic: bool) -> None:
    head = Distribution(12, "categorical", n_groups=3)
    grad_stoch, grad_probs, out = _st_gradients(head, torch.randn(5, 12), deterministic)
    groups = out.stoch.reshape(5, 3, 4)
    assert set(out.stoch.unique().tolist()) <= {0.0, 1.0}  # exactly one-hot
    assert torch.equal(groups.sum(-1), torch.ones(5, 3))
    assert grad_stoch.abs().sum() > 0
    torch.testing.assert_close(grad_stoch, grad_probs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("deterministic", [False, True])
def test_bernoulli_straight_through(deterministic: bool) -> None:
    head = Distribution(12, "bernoulli", n_groups=3)
    grad_stoch, grad_probs, out = _st_gradients(head, torch.randn(5, 12), deterministic)
    assert set(out.stoch.unique().tolist()) <= {0.0, 1.0}  # exactly binary
    assert grad_stoch.abs().sum() > 0
    torch.testing.assert_close(grad_stoch, grad_probs, rtol=1e-6, atol=1e-7)


def test_spherical_straight_through_scales_the_gradient() -> None:
    x = torch.randn(5, 12)
    plain = _st_gradients(Distribution(12, "categorical", 3), x)[1]
    sphere = _st_gradients(Distribution(12, "categorical", 3, spherical=True), x)[0]
    torch.testing.assert_close(sphere, 2 * plain)
    plain = _st_gradients(Distribution(12, "bernoulli", 3), x)[1]
    sphere = _st_gradients(Distribution(12, "bernoulli", 3, spherical=True), x)[0]
    torch.testing.assert_close(sphere, 2 / math.sqrt(4) * plain)


def test_categorical_and_bernoulli_sample_frequencies_match_probs() -> None:
    n = 20_000
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0])
    out = Distribution(4, "categorical")(logits.expand(n, 4))
    probs = torch.softmax(logits, -1)
    se = (probs * (1 - probs) / n).sqrt()
    assert ((out.stoch.mean(0) - probs).abs() < 4 * se).all()
    out = Distribution(4, "bernoulli")(logits.expand(n, 4))
    probs = torch.sigmoid(logits)
    se = (probs * (1 - probs) / n).sqrt()
    assert ((out.stoch.mean(0) - probs).abs() < 4 * se).all()


def test_normal_samples_are_reparameterised_draws() -> None:
    n = 200_000
    raw = torch.tensor([[1.5, -2.0, 0.3, -1.0]])  # mean (1.5, -2), raw std (.3, -1)
    out = Distribution(2, "normal")(raw.expand(n, 4))
    std = F.softplus(torch.tensor([0.3, -1.0])) + 1e-6
    torch.testing.assert_close(out.std[0], std)
    mean_se = std / math.sqrt(n)
    std_se = std / math.sqrt(2 * n)
    assert ((out.stoch.mean(0) - torch.tensor([1.5, -2.0])).abs() < 4 * mean_se).all()
    assert ((out.stoch.std(0) - std).abs() < 4 * std_se).all()
    # gradients flow to both halves of the input
    x = raw.clone().requires_grad_(True)
    Distribution(2, "normal")(x).stoch.sum().backward()
    assert (x.grad != 0).all()


def test_normal_std_is_softplus_plus_epsilon() -> None:
    x = torch.tensor([[0.0, 1.0, -200.0, 3.0]])
    out = Distribution(2, "normal")(x)
    torch.testing.assert_close(out.mean, x[:, :2])
    assert out.std[0, 0] == 1e-6  # softplus(-200) underflows: std stays positive
    torch.testing.assert_close(out.std[0, 1], F.softplus(torch.tensor(3.0)) + 1e-6)


# -- deterministic modes, temperature, sphere ------------------------------------------


def test_deterministic_modes() -> None:
    x = torch.randn(6, 12)
    normal = Distribution(6, "normal")(x, deterministic=True)
    assert torch.equal(normal.stoch, normal.mean)
    cat = Distribution(12, "categorical", n_groups=3)(x, deterministic=True)
    expected = F.one_hot(x.reshape(6, 3, 4).argmax(-1), 4).float().reshape(6, 12)
    assert torch.equal(cat.stoch, expected)
    bern = Distribution(12, "bernoulli", n_groups=3)(x, deterministic=True)
    assert torch.equal(bern.stoch, (x > 0).float())


def test_eval_and_train_switch_the_deterministic_attribute() -> None:
    model = torch.nn.Sequential(torch.nn.Identity(), Distribution(3, "normal"))
    head = model[1]
    assert head.deterministic is False
    x = torch.randn(4, 6)
    assert not torch.equal(head(x).stoch, head(x).mean)
    model.eval()
    assert head.deterministic is True
    assert torch.equal(head(x).stoch, head(x).mean)
    model.train()
    assert head.deterministic is False


def test_inverse_temperature_scales_the_logits() -> None:
    x = torch.randn(3, 6)
    for dist, fn in (("categorical", torch.softmax), ("bernoulli", None)):
        out = Distribution(6, dist, n_groups=2)(x, inv_tmp=2.5)
        logits = 2.5 * x.reshape(3, 2, 3)
        torch.testing.assert_close(out.logits, logits)
        probs = fn(logits, -1) if fn else torch.sigmoid(logits)
        torch.testing.assert_close(out.probs, probs)
    cold = Distribution(6, "categorical")(x, inv_tmp=1e3)
    assert torch.equal(cold.stoch, F.one_hot(x.argmax(-1), 6).float())  # ~argmax
    normal = Distribution(3, "normal")(x, deterministic=True, inv_tmp=5.0)
    torch.testing.assert_close(normal.mean, x[:, :3])  # normal ignores inv_tmp


@pytest.mark.parametrize("deterministic", [False, True])
def test_spherical_projections(deterministic: bool) -> None:
    x = torch.randn(7, 12)
    bern = Distribution(12, "bernoulli", n_groups=3, spherical=True)(x, deterministic)
    groups = bern.stoch.reshape(7, 3, 4)
    torch.testing.assert_close(groups.norm(dim=-1), torch.ones(7, 3))
    assert torch.allclose(groups.abs(), torch.full_like(groups, 0.5))
    cat = Distribution(12, "categorical", n_groups=3, spherical=True)(x, deterministic)
    assert set(cat.stoch.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(
        (cat.stoch.reshape(7, 3, 4) > 0).sum(-1), torch.ones(7, 3).long()
    )


def test_deterministic_onehot() -> None:
    head = Distribution(3, "categorical")
    onehot = head.deterministic_onehot(torch.tensor([[0.1, 0.9, 0.3], [2.0, 1.0, 0.0]]))
    assert torch.equal(onehot, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert head.deterministic_onehot(torch.zeros(2, 3, dtype=torch.float64)).dtype == (
        torch.float64
    )


def test_head_argument_validation() -> None:
    with pytest.raises(ValueError, match="dist must be one of"):
        Distribution(4, "poisson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divisible by n_groups"):
        Distribution(10, "categorical", n_groups=3)
    with pytest.raises(ValueError, match="in_dim must be a positive int"):
        Distribution(0, "normal")
    with pytest.raises(ValueError, match="n_groups must be a positive int"):
        Distribution(4, "bernoulli", n_groups=0)
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 8\]"):
        Distribution(4, "normal")(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 6\]"):
        Distribution(6, "categorical", n_groups=2)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="expects inputs"):
        Distribution(6, "bernoulli")(torch.tensor(1.0))
    assert "dist='bernoulli'" in repr(Distribution(6, "bernoulli"))


# -- containers ------------------------------------------------------------------------


def _normal(batch: tuple[int, ...] = (4, 3), dim: int = 2) -> NormalStoch:
    shape = (*batch, dim)
    return NormalStoch(torch.randn(shape), torch.rand(shape) + 0.1, torch.randn(shape))


def _categorical(batch: tuple[int, ...] = (4, 3)) -> CategoricalStoch:
    return Distribution(6, "categorical", n_groups=2)(torch.randn(*batch, 6))


def test_tensor_methods_apply_to_every_field() -> None:
    normal = _normal()
    flat = normal.flatten()
    assert isinstance(flat, NormalStoch)
    assert tuple(flat.shape) == ((24,),) * 3
    assert torch.equal(flat.std, normal.std.flatten())
    assert normal.reshape(12, 2).shape.mean == (12, 2)
    assert normal.to(torch.float64).mean.dtype == torch.float64
    x = torch.randn(4, 3, 6, requires_grad=True)
    cat = Distribution(6, "categorical", n_groups=2)(x)
    detached = cat.detach()
    assert not detached.stoch.requires_grad and not detached.probs.requires_grad
    assert cat.flatten(0, 1).shape.logits == (12, 2, 3)
    assert cat.dim() == bnn.CategoricalShape(4, 4, 3)  # non-tensor results
    with pytest.raises(AttributeError, match="no attribute 'foo'"):
        normal.foo  # noqa: B018
    with pytest.raises(AttributeError):
        normal.device  # noqa: B018  (a property, not a method)


def test_indexing_len_iteration_squeeze_unsqueeze() -> None:
    normal = _normal()
    assert len(normal) == 4
    assert normal[1].shape.mean == (3, 2)
    assert normal[1:3, 0].shape.stoch == (2, 2)
    assert torch.equal(normal[2].std, normal.std[2])
    assert [item.shape.mean for item in normal] == [(3, 2)] * 4
    cat = _categorical()
    assert len(cat) == 4
    assert tuple(cat[0].shape) == ((3, 2, 3), (3, 2, 3), (3, 6))
    assert tuple(cat[:, 1].shape) == ((4, 2, 3), (4, 2, 3), (4, 6))
    assert torch.equal(cat[torch.tensor([0, 2])].logits, cat.logits[[0, 2]])
    with pytest.raises(IndexError, match="event axes"):
        cat[0, 0, 0]
    with pytest.raises(IndexError, match=r"'\.\.\.'"):
        cat[..., 0]
    single = cat[:1]
    assert tuple(single.squeeze(0).shape) == ((3, 2, 3), (3, 2, 3), (3, 6))
    assert tuple(cat.unsqueeze(0).shape)[2] == (1, 4, 3, 6)
    assert tuple(cat.unsqueeze(-1).shape) == (
        (4, 3, 1, 2, 3),
        (4, 3, 1, 2, 3),
        (4, 3, 1, 6),
    )
    assert cat[:, :1].squeeze(-1).shape.logits == (4, 2, 3)
    with pytest.raises(IndexError, match="out of range"):
        cat.squeeze(2)
    assert normal[:, :1].squeeze(1).shape.mean == (4, 2)
    assert normal.unsqueeze(-1).shape.mean == (4, 3, 2, 1)
    with pytest.raises(TypeError, match="len"):
        len(cat[0, 0])


def test_save_and_load_round_trip(tmp_path) -> None:
    for original in (_normal(), _categorical()):
        path = tmp_path / f"{type(original).__name__}.pt"
        original.save(path)
        data = torch.load(path, weights_only=True)
        assert sorted(data) == sorted(original.shape._fields)
        loaded = type(original).load(path)
        assert type(loaded) is type(original)
        for a, b in zip(loaded._values(), original._values(), strict=True):
            assert torch.equal(a, b.detach())


def test_get_distribution_log_prob_matches_hand_computation() -> None:
    normal = _normal((5,), 3)
    value = torch.randn(5, 3)
    dist = normal.get_distribution()
    assert isinstance(dist, torch.distributions.Independent)
    assert isinstance(dist.base_dist, torch.distributions.Normal)
    hand = (
        -0.5 * math.log(2 * math.pi)
        - normal.std.log()
        - (value - normal.mean) ** 2 / (2 * normal.std**2)
    ).sum(-1)
    torch.testing.assert_close(dist.log_prob(value), hand)
    torch.testing.assert_close(dist.mean, normal.mean)
    assert dist.sample().shape == (5, 3)
    assert dist.entropy().shape == (5,)

    cat = Distribution(6, "categorical", n_groups=2)(torch.randn(5, 6))
    dist = get_dist(cat)
    assert isinstance(dist.base_dist, torch.distributions.OneHotCategorical)
    onehot = cat.stoch.detach().reshape(5, 2, 3)
    hand = (onehot * torch.log_softmax(cat.logits, -1)).sum((-2, -1))
    torch.testing.assert_close(dist.log_prob(onehot), hand)
    torch.testing.assert_close(dist.mean, cat.probs)
    assert dist.sample().shape == (5, 2, 3)

    bern = Distribution(6, "bernoulli", n_groups=2)(torch.randn(5, 6))
    dist = get_dist(bern)
    assert isinstance(dist.base_dist, torch.distributions.Bernoulli)
    bits = bern.stoch.detach().reshape(5, 2, 3)
    p = bern.probs
    hand = (bits * p.log() + (1 - bits) * (1 - p).log()).sum((-2, -1))
    torch.testing.assert_close(dist.log_prob(bits), hand)
    torch.testing.assert_close(
        dist.entropy(), -(p * p.log() + (1 - p) * (1 - p).log()).sum((-2, -1))
    )
    with pytest.raises(TypeError, match="Stoch container"):
        get_dist(torch.zeros(2))  # type: ignore[arg-type]


def test_container_validation() -> None:
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="one shape"):
        NormalStoch(a, torch.ones(2, 4), a)
    with pytest.raises(ValueError, match="non-negative"):
        NormalStoch(a, -torch.ones(2, 3), a)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        NormalStoch(a, [1.0], a)  # type: ignore[arg-type]
    logits = torch.zeros(2, 2, 3)
    with pytest.raises(ValueError, match="probs must have the shape of logits"):
        CategoricalStoch(logits, torch.zeros(2, 6), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="does not match logits"):
        BernoulliStoch(logits, logits, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="does not match logits"):
        BernoulliStoch(logits, logits, torch.zeros(3, 4))
    BernoulliStoch(logits, logits, torch.zeros(2, 6))  # valid


def test_stack_and_cat() -> None:
    normals = (_normal(), _normal())
    assert stack_dist(normals).shape.mean == (2, 4, 3, 2)
    assert stack_dist(normals, dim=-1).shape.mean == (4, 3, 2, 2)
    assert cat_dist(normals).shape.std == (4, 3, 4)
    assert cat_dist(normals, dim=0).shape.std == (8, 3, 2)
    cats = (_categorical(), _categorical())
    assert tuple(stack_dist(cats).shape) == ((2, 4, 3, 2, 3),) * 2 + ((2, 4, 3, 6),)
    assert stack_dist(cats, dim=-1).shape.logits == (4, 3, 2, 2, 3)
    joined = cat_dist(cats)  # events: the groups are concatenated
    assert tuple(joined.shape) == ((4, 3, 4, 3), (4, 3, 4, 3), (4, 3, 12))
    assert torch.equal(
        joined.stoch.reshape(4, 3, 4, 3)[:, :, 2:], cats[1].stoch.reshape(4, 3, 2, 3)
    )
    assert tuple(cat_dist(cats, dim=1).shape)[2] == (4, 6, 6)
    with pytest.raises(TypeError, match="one Stoch type"):
        cat_dist((normals[0], cats[0]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        stack_dist(())


# -- BSQ codebook ----------------------------------------------------------------------


def test_bsq_codebook() -> None:
    book = BSQCodebook(4)
    assert book.codebook_size == 16
    assert book.codebook.shape == (16, 4)
    torch.testing.assert_close(book.codebook.norm(dim=-1), torch.ones(16))
    assert torch.equal(book.codes_to_indices(book.codebook), torch.arange(16))
    assert torch.equal(book.indices_to_codes(torch.arange(16)), book.codebook)
    # MSB first: 19 = 0b10011 -> + - - + +
    signs = BSQCodebook(5).indices_to_codes(torch.tensor(19)).sign()
    assert signs.tolist() == [1.0, -1.0, -1.0, 1.0, 1.0]
    assert "codebook" not in book.state_dict()  # a non-persistent buffer
    with pytest.raises(ValueError, match="codebook_dim"):
        BSQCodebook(0)
    with pytest.raises(ValueError, match="end with codebook_dim"):
        book.codes_to_indices(torch.ones(3))


# -- likelihood, ELBO ------------------------------------------------------------------


def test_head_nll_normal() -> None:
    out = _normal((5,), 3)
    targets = torch.randn(5, 3)
    hand = (
        -torch.distributions.Normal(out.mean, out.std).log_prob(targets).sum(-1).mean()
    )
    torch.testing.assert_close(head_nll(out, targets), hand)
    with pytest.raises(ValueError, match="shape of the mean"):
        head_nll(out, torch.randn(5))


def test_head_nll_categorical() -> None:
    out = Distribution(6, "categorical", n_groups=2)(torch.randn(5, 6))
    labels = torch.randint(0, 3, (5, 2))
    log_p = torch.log_softmax(out.logits, -1)
    hand = -sum(log_p[b, g, labels[b, g]] for b in range(5) for g in range(2)) / 5
    torch.testing.assert_close(head_nll(out, labels), hand)
    onehot = F.one_hot(labels, 3).float().reshape(5, 6)
    torch.testing.assert_close(head_nll(out, onehot), hand)
    single = Distribution(4, "categorical")(torch.randn(5, 4))
    plain = torch.randint(0, 4, (5,))
    torch.testing.assert_close(
        head_nll(single, plain), F.cross_entropy(single.logits[:, 0], plain)
    )
    with pytest.raises(ValueError, match="class indices"):
        head_nll(out, torch.randint(0, 3, (5, 3)))


def test_head_nll_bernoulli_and_errors() -> None:
    out = Distribution(6, "bernoulli", n_groups=2)(torch.randn(5, 6), inv_tmp=0.5)
    bits = torch.randint(0, 2, (5, 6)).float()
    p = torch.sigmoid(out.logits.reshape(5, 6))
    hand = -(bits * p.log() + (1 - bits) * (1 - p).log()).sum(-1).mean()
    torch.testing.assert_close(head_nll(out, bits), hand)
    with pytest.raises(ValueError, match="bernoulli targets"):
        head_nll(out, bits[:, :5])
    with pytest.raises(TypeError, match="head_nll needs"):
        head_nll(torch.zeros(3), torch.zeros(3))  # type: ignore[arg-type]


class _HeteroNet(torch.nn.Module):
    """x -> Bayesian MLP -> (mean, raw std) -> normal head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = bnn.Linear(1, 32, rho_init=-6.0)
        self.out = bnn.Linear(32, 2, rho_init=-6.0)
        self.head = Distribution(1, "normal")

    def forward(self, x: torch.Tensor) -> NormalStoch:
        return self.head(self.out(torch.tanh(self.body(x))))


def _noise_std(x: torch.Tensor) -> torch.Tensor:
    return 0.05 + 0.225 * (x + 1)  # 0.05 at x = -1, 0.5 at x = 1


def test_elbo_without_loss_function_uses_head_nll() -> None:
    model = _HeteroNet()
    x, y = torch.randn(8, 1), torch.randn(8, 1)
    elbo = bnn.ELBOLoss(kl_weight=0.1)
    out = model(x)
    expected = head_nll(out, y) + 0.1 * bnn.KLDivergenceLoss()(model)
    torch.testing.assert_close(elbo(out, y, model), expected)
    with pytest.raises(TypeError, match="without a loss_function"):
        elbo(torch.zeros(8, 1), y, model)
    custom = bnn.ELBOLoss(lambda o, t: (o.mean - t).square().mean(), kl_weight=0.0)
    torch.testing.assert_close(custom(out, y, model), (out.mean - y).square().mean())


def test_elbo_trains_a_heteroscedastic_regression() -> None:
    x = torch.rand(512, 1) * 2 - 1
    y = 0.5 * x + _noise_std(x) * torch.randn_like(x)
    model = _HeteroNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    elbo = bnn.ELBOLoss()  # no loss function: the head's Gaussian NLL
    for _ in range(300):
        optimizer.zero_grad()
        elbo.monte_carlo(model, x, y).backward()
        optimizer.step()
    grid = torch.linspace(-0.9, 0.9, 50).unsqueeze(-1)
    mean, std = predictive_normal(model, grid, num_samples=16)
    truth = _noise_std(grid)
    correlation = torch.corrcoef(torch.stack([std.flatten(), truth.flatten()]))[0, 1]
    ratio = std / truth
    assert correlation > 0.9
    assert 0.8 < ratio.median() < 1.25
    assert ((ratio > 0.5) & (ratio < 2.0)).all()
    assert (mean - 0.5 * grid).abs().max() < 0.15
    low, high = predictive_interval(model, grid, num_samples=16)
    assert ((low < 0.5 * grid) & (0.5 * grid < high)).all()


# -- Monte Carlo prediction ------------------------------------------------------------


class _Scripted(torch.nn.Module):
    """Returns the s-th of a list of NormalStoch on its s-th call."""

    def __init__(self, outputs: list[NormalStoch]) -> None:
        super().__init__()
        self.outputs = outputs
        self.calls = 0

    def forward(self, x: torch.Tensor) -> NormalStoch:
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return out


def test_predictive_normal_is_the_law_of_total_variance() -> None:
    outputs = [_normal((3,), 2) for _ in range(5)]
    mean, std = predictive_normal(
        _Scripted(outputs), torch.zeros(1), num_samples=5, vectorize=False
    )
    means = torch.stack([o.mean for o in outputs])
    variances = torch.stack([o.std**2 for o in outputs])
    torch.testing.assert_close(mean, means.mean(0))
    expected = variances.mean(0) + ((means - means.mean(0)) ** 2).mean(0)
    torch.testing.assert_close(std, expected.sqrt())


def test_predictive_interval_of_one_normal() -> None:
    out = NormalStoch(
        torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]), torch.zeros(2)
    )
    model = _Scripted([out])
    low, high = predictive_interval(
        model, torch.zeros(1), num_samples=16, level=0.9, draws_per_sample=4096
    )
    z = 1.6448536
    torch.testing.assert_close(low, out.mean - z * out.std, atol=0.06, rtol=0.03)
    torch.testing.assert_close(high, out.mean + z * out.std, atol=0.06, rtol=0.03)
    with pytest.raises(ValueError, match="level"):
        predictive_interval(model, torch.zeros(1), level=1.0)
    with pytest.raises(ValueError, match="draws_per_sample"):
        predictive_interval(model, torch.zeros(1), draws_per_sample=0)
    cat_model = torch.nn.Sequential(Distribution(4, "categorical"))
    with pytest.raises(TypeError, match="NormalStoch"):
        predictive_normal(cat_model, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="num_samples"):
        predictive_normal(model, torch.zeros(1), num_samples=0)
