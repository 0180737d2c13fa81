"""Stochastic output heads (JAX): Distribution, containers, BSQ, NLL, ELBO, MC."""

from __future__ import annotations

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import bnnc.runtime.jax as bnn
from bnnc.runtime.jax import heads
from bnnc.runtime.jax.heads import (
    BernoulliStoch,
    BSQCodebook,
    CategoricalStoch,
    Distribution,
    IndependentBernoulli,
    IndependentNormal,
    IndependentOneHotCategorical,
    NormalStoch,
    cat_dist,
    get_dist,
    head_nll,
    predictive_interval,
    predictive_normal,
    stack_dist,
)
from bnnc.runtime.transfer import state_names


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


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
    head = Distribution(4, "normal", rngs=nnx.Rngs(0))
    out = head(_randn(*batch, 8), deterministic)
    assert isinstance(out, NormalStoch)
    assert out.shape == bnn.NormalShape(*[(*batch, 4)] * 3)


@pytest.mark.parametrize("dist", ["categorical", "bernoulli"])
@pytest.mark.parametrize("batch", [(2, 3)])  # one-axis batches: the ST tests
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
    head = Distribution(12, dist, n_groups, spherical, rngs=nnx.Rngs(0))
    out = head(_randn(*batch, 12), deterministic=deterministic)
    assert isinstance(
        out, CategoricalStoch if dist == "categorical" else BernoulliStoch
    )
    grouped = (*batch, n_groups, 12 // n_groups)
    assert tuple(out.shape) == (grouped, grouped, (*batch, 12))


# -- straight-through estimator --------------------------------------------------------


def _st_gradients(
    head: Distribution, x: np.ndarray, deterministic: bool = False
) -> tuple[jax.Array, jax.Array, object]:
    """Gradients wrt x of a linear loss on ``stoch`` and on the flattened probs.

    Both passes use clones of ``head`` (same random state): the same sample.
    """
    weights = _randn(*x.shape, seed=1)

    def on_stoch(head: Distribution, x: jax.Array) -> jax.Array:
        return jnp.sum(weights * head(x, deterministic=deterministic).stoch)

    def on_probs(head: Distribution, x: jax.Array) -> jax.Array:
        probs = head(x, deterministic=deterministic).probs
        return jnp.sum(weights * probs.reshape(x.shape))

    out = nnx.clone(head)(x, deterministic=deterministic)
    grad_stoch = nnx.grad(on_stoch, argnums=1)(nnx.clone(head), jnp.asarray(x))
    grad_probs = nnx.grad(on_probs, argnums=1)(nnx.clone(head), jnp.asarray(x))
    return grad_stoch, grad_probs, out


@pytest.mark.parametrize("deterministic", [False, True])
def test_categorical_straight_through(deterministic: bool) -> None:
    head = Distribution(12, "categorical", n_groups=3, rngs=nnx.Rngs(0))
    grad_stoch, grad_probs, out = _st_gradients(head, _randn(5, 12), deterministic)
    stoch = np.asarray(out.stoch)
    assert set(np.unique(stoch).tolist()) <= {0.0, 1.0}  # exactly one-hot
    assert np.array_equal(stoch.reshape(5, 3, 4).sum(-1), np.ones((5, 3)))
    assert float(jnp.abs(grad_stoch).sum()) > 0
    np.testing.assert_allclose(grad_stoch, grad_probs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("deterministic", [False, True])
def test_bernoulli_straight_through(deterministic: bool) -> None:
    head = Distribution(12, "bernoulli", n_groups=3, rngs=nnx.Rngs(0))
    grad_stoch, grad_probs, out = _st_gradients(head, _randn(5, 12), deterministic)
    assert set(np.unique(np.asarray(out.stoch)).tolist()) <= {0.0, 1.0}
    assert float(jnp.abs(grad_stoch).sum()) > 0
    np.testing.assert_allclose(grad_stoch, grad_probs, rtol=1e-6, atol=1e-7)


def test_spherical_straight_through_scales_the_gradient() -> None:
    x = _randn(5, 12)
    for dist, factor in (("categorical", 2.0), ("bernoulli", 2 / math.sqrt(4))):
        plain = _st_gradients(Distribution(12, dist, 3, rngs=nnx.Rngs(0)), x)[1]
        head = Distribution(12, dist, 3, spherical=True, rngs=nnx.Rngs(0))
        sphere = _st_gradients(head, x)[0]
        np.testing.assert_allclose(sphere, factor * plain, rtol=1e-5, atol=1e-7)


def test_categorical_and_bernoulli_sample_frequencies_match_probs() -> None:
    n = 20_000
    logits = np.array([0.5, -1.0, 1.5, 0.0], np.float32)
    x = np.broadcast_to(logits, (n, 4))
    for dist, probs in (
        ("categorical", _softmax(logits)),
        ("bernoulli", _sigmoid(logits)),
    ):
        out = Distribution(4, dist, rngs=nnx.Rngs(1))(x)
        se = np.sqrt(probs * (1 - probs) / n)
        assert np.all(np.abs(np.asarray(out.stoch).mean(0) - probs) < 4 * se)


def test_normal_samples_are_reparameterised_draws() -> None:
    n = 200_000
    raw = np.array([[1.5, -2.0, 0.3, -1.0]], np.float32)
    out = Distribution(2, "normal", rngs=nnx.Rngs(2))(np.broadcast_to(raw, (n, 4)))
    std = np.log1p(np.exp([0.3, -1.0])) + 1e-6
    np.testing.assert_allclose(out.std[0], std, rtol=1e-6)
    stoch = np.asarray(out.stoch, np.float64)
    assert np.all(np.abs(stoch.mean(0) - [1.5, -2.0]) < 4 * std / math.sqrt(n))
    assert np.all(np.abs(stoch.std(0) - std) < 4 * std / math.sqrt(2 * n))
    head = Distribution(2, "normal", rngs=nnx.Rngs(0))
    grad = nnx.grad(lambda h, x: jnp.sum(h(x).stoch), argnums=1)(head, jnp.asarray(raw))
    assert np.all(np.asarray(grad) != 0)


def test_normal_std_is_softplus_plus_epsilon() -> None:
    x = np.array([[0.0, 1.0, -200.0, 3.0]], np.float32)
    out = Distribution(2, "normal", rngs=nnx.Rngs(0))(x)
    np.testing.assert_array_equal(out.mean, x[:, :2])
    assert float(out.std[0, 0]) == np.float32(1e-6)
    np.testing.assert_allclose(out.std[0, 1], np.log1p(np.exp(3.0)) + 1e-6, rtol=1e-6)


# -- random streams, transforms --------------------------------------------------------


def test_samples_come_from_the_sample_stream() -> None:
    x = _randn(4, 6)
    a = Distribution(6, "categorical", rngs=nnx.Rngs(params=0, sample=7))
    b = Distribution(6, "categorical", rngs=nnx.Rngs(params=1, sample=7))
    first = a(x).stoch
    np.testing.assert_array_equal(first, b(x).stoch)  # same sample stream
    later = [a(x).stoch for _ in range(3)]
    assert any(not np.array_equal(s, first) for s in later)  # the stream advances
    rngs = nnx.Rngs(0)
    head = Distribution(3, "normal", rngs=rngs)
    count = int(rngs.default.count[...])
    head(x, deterministic=True)
    assert int(rngs.default.count[...]) == count  # no key drawn
    head(x)
    assert int(rngs.default.count[...]) == count + 1


def test_containers_are_pytrees() -> None:
    out = Distribution(6, "bernoulli", n_groups=2, rngs=nnx.Rngs(0))(_randn(4, 6))
    same = jax.jit(lambda s: s)(out)
    assert type(same) is BernoulliStoch
    np.testing.assert_array_equal(same.stoch, out.stoch)
    paths = [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(out)
    ]
    assert paths == [".logits", ".probs", ".stoch"]
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, out)
    np.testing.assert_allclose(doubled.logits, 2 * out.logits)
    # a head inside nnx.jit, returning a container
    head = Distribution(3, "normal", rngs=nnx.Rngs(0))
    result = nnx.jit(lambda h, x: h(x))(head, _randn(2, 6))
    assert type(result) is NormalStoch and result.shape.stoch == (2, 3)
    stacked = jax.vmap(lambda x: head.normal(x, deterministic=True))(_randn(5, 2, 6))
    assert stacked.shape.mean == (5, 2, 3)


# -- deterministic modes, temperature, sphere ------------------------------------------


def test_deterministic_modes() -> None:
    x = _randn(6, 12)
    normal = Distribution(6, "normal", rngs=nnx.Rngs(0))(x, deterministic=True)
    np.testing.assert_array_equal(normal.stoch, normal.mean)
    cat = Distribution(12, "categorical", 3, rngs=nnx.Rngs(0))(x, deterministic=True)
    expected = np.eye(4, dtype=np.float32)[x.reshape(6, 3, 4).argmax(-1)].reshape(6, 12)
    np.testing.assert_array_equal(cat.stoch, expected)
    bern = Distribution(12, "bernoulli", 3, rngs=nnx.Rngs(0))(x, deterministic=True)
    np.testing.assert_array_equal(bern.stoch, (x > 0).astype(np.float32))


class _Holder(nnx.Module):
    def __init__(self) -> None:
        self.head = Distribution(3, "normal", rngs=nnx.Rngs(0))

    def __call__(self, x: jax.Array) -> NormalStoch:
        return self.head(x)


def test_eval_and_train_switch_the_deterministic_attribute() -> None:
    model = _Holder()
    x = _randn(4, 6)
    assert model.head.deterministic is False
    out = model(x)
    assert not np.array_equal(out.stoch, out.mean)
    model.eval()
    assert model.head.deterministic is True
    out = model(x)
    np.testing.assert_array_equal(out.stoch, out.mean)
    model.train()
    assert model.head.deterministic is False


def test_inverse_temperature_scales_the_logits() -> None:
    x = _randn(3, 6)
    logits = 2.5 * x.reshape(3, 2, 3)
    cat = Distribution(6, "categorical", 2, rngs=nnx.Rngs(0))(x, inv_tmp=2.5)
    np.testing.assert_allclose(cat.logits, logits, rtol=1e-6)
    np.testing.assert_allclose(cat.probs, _softmax(logits), rtol=1e-5)
    bern = Distribution(6, "bernoulli", 2, rngs=nnx.Rngs(0))(x, inv_tmp=2.5)
    np.testing.assert_allclose(bern.probs, _sigmoid(logits), rtol=1e-5)
    cold = Distribution(6, "categorical", rngs=nnx.Rngs(0))(x, inv_tmp=1e3)
    np.testing.assert_array_equal(cold.stoch, np.eye(6)[x.argmax(-1)])
    normal = Distribution(3, "normal", rngs=nnx.Rngs(0))(x, True, inv_tmp=5.0)
    np.testing.assert_array_equal(normal.mean, x[:, :3])


@pytest.mark.parametrize("deterministic", [False, True])
def test_spherical_projections(deterministic: bool) -> None:
    x = _randn(7, 12)
    head = Distribution(12, "bernoulli", 3, spherical=True, rngs=nnx.Rngs(0))
    groups = np.asarray(head(x, deterministic).stoch).reshape(7, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(groups, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.abs(groups), 0.5)
    head = Distribution(12, "categorical", 3, spherical=True, rngs=nnx.Rngs(0))
    stoch = np.asarray(head(x, deterministic).stoch)
    assert set(np.unique(stoch).tolist()) == {-1.0, 1.0}
    np.testing.assert_array_equal((stoch.reshape(7, 3, 4) > 0).sum(-1), 1)


def test_deterministic_onehot() -> None:
    head = Distribution(3, "categorical", rngs=nnx.Rngs(0))
    onehot = head.deterministic_onehot(jnp.array([[0.1, 0.9, 0.3], [2.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(onehot, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_head_argument_validation() -> None:
    with pytest.raises(ValueError, match="dist must be one of"):
        Distribution(4, "poisson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divisible by n_groups"):
        Distribution(10, "categorical", n_groups=3)
    with pytest.raises(ValueError, match="in_dim must be a positive int"):
        Distribution(0, "normal")
    with pytest.raises(ValueError, match="n_groups must be a positive int"):
        Distribution(4, "bernoulli", n_groups=0)
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 8\]"):
        Distribution(4, "normal", rngs=rngs)(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 6\]"):
        Distribution(6, "categorical", 2, rngs=rngs)(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="expects inputs"):
        Distribution(6, "bernoulli", rngs=rngs)(jnp.float32(1.0))


# -- containers ------------------------------------------------------------------------


def _normal(
    batch: tuple[int, ...] = (4, 3), dim: int = 2, seed: int = 0
) -> NormalStoch:
    shape = (*batch, dim)
    rng = np.random.default_rng(seed)
    return NormalStoch(
        rng.standard_normal(shape).astype(np.float32),
        (rng.random(shape) + 0.1).astype(np.float32),
        rng.standard_normal(shape).astype(np.float32),
    )


def _categorical(batch: tuple[int, ...] = (4, 3), seed: int = 0) -> CategoricalStoch:
    head = Distribution(6, "categorical", n_groups=2, rngs=nnx.Rngs(seed))
    return head(_randn(*batch, 6, seed=seed))


def test_array_methods_apply_to_every_field() -> None:
    normal = _normal()
    assert isinstance(normal.mean, jax.Array)  # numpy fields are converted
    flat = normal.flatten()
    assert isinstance(flat, NormalStoch)
    assert tuple(flat.shape) == ((24,),) * 3
    np.testing.assert_array_equal(flat.std, np.asarray(normal.std).ravel())
    assert normal.reshape(12, 2).shape.mean == (12, 2)
    assert normal.astype(jnp.bfloat16).mean.dtype == jnp.bfloat16
    cat = _categorical()
    assert cat.swapaxes(0, 1).shape.stoch == (3, 4, 6)
    assert cat.reshape(12, -1).shape.stoch == (12, 6)
    with pytest.raises(AttributeError, match="no attribute 'foo'"):
        normal.foo  # noqa: B018
    with pytest.raises(AttributeError):
        normal.detach  # noqa: B018  (not a jax.Array method)


def test_indexing_len_iteration_squeeze_unsqueeze() -> None:
    normal = _normal()
    assert len(normal) == 4
    assert normal[1].shape.mean == (3, 2)
    assert normal[1:3, 0].shape.stoch == (2, 2)
    np.testing.assert_array_equal(normal[2].std, normal.std[2])
    assert [item.shape.mean for item in normal] == [(3, 2)] * 4
    cat = _categorical()
    assert len(cat) == 4
    assert tuple(cat[0].shape) == ((3, 2, 3), (3, 2, 3), (3, 6))
    assert tuple(cat[:, 1].shape) == ((4, 2, 3), (4, 2, 3), (4, 6))
    np.testing.assert_array_equal(
        cat[jnp.array([0, 2])].logits, cat.logits[jnp.array([0, 2])]
    )
    with pytest.raises(IndexError, match="event axes"):
        cat[0, 0, 0]
    with pytest.raises(IndexError, match=r"'\.\.\.'"):
        cat[..., 0]
    assert tuple(cat[:1].squeeze(0).shape) == ((3, 2, 3), (3, 2, 3), (3, 6))
    assert tuple(cat.unsqueeze(-1).shape) == (
        (4, 3, 1, 2, 3),
        (4, 3, 1, 2, 3),
        (4, 3, 1, 6),
    )
    assert cat[:, :1].squeeze(-1).shape.logits == (4, 2, 3)
    with pytest.raises(IndexError, match="out of range"):
        cat.squeeze(2)
    assert normal[:, :1].squeeze(1).shape.mean == (4, 2)
    assert normal.unsqueeze(0).shape.mean == (1, 4, 3, 2)
    with pytest.raises(TypeError, match="len"):
        len(cat[0, 0])


def test_save_and_load_round_trip(tmp_path) -> None:
    for original in (_normal(), _categorical()):
        path = tmp_path / type(original).__name__  # numpy appends .npz
        original.save(path)
        with np.load(f"{path}.npz") as data:
            assert sorted(data.files) == sorted(original.shape._fields)
        loaded = type(original).load(path)
        assert type(loaded) is type(original)
        for a, b in zip(loaded._values(), original._values(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_get_distribution_matches_hand_computation() -> None:
    normal = _normal((5,), 3)
    value = _randn(5, 3, seed=3)
    dist = normal.get_distribution()
    assert isinstance(dist, IndependentNormal)
    mean, std = np.asarray(normal.mean), np.asarray(normal.std)
    hand = (
        -0.5 * np.log(2 * np.pi) - np.log(std) - (value - mean) ** 2 / (2 * std**2)
    ).sum(-1)
    np.testing.assert_allclose(dist.log_prob(value), hand, rtol=1e-5)
    np.testing.assert_allclose(
        dist.entropy(), (0.5 + 0.5 * np.log(2 * np.pi) + np.log(std)).sum(-1), rtol=1e-5
    )
    np.testing.assert_array_equal(dist.mean, mean)
    assert (dist.batch_shape, dist.event_shape) == ((5,), (3,))
    draws = np.asarray(dist.sample(jax.random.key(0), (20_000,)))
    assert draws.shape == (20_000, 5, 3)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * std / math.sqrt(20_000))
    assert dist.sample(nnx.Rngs(0)).shape == (5, 3)

    cat = _categorical((5,))
    dist = get_dist(cat)
    assert isinstance(dist, IndependentOneHotCategorical)
    onehot = np.asarray(cat.stoch).reshape(5, 2, 3)
    log_p = np.log(_softmax(np.asarray(cat.logits)))
    np.testing.assert_allclose(
        dist.log_prob(onehot), (onehot * log_p).sum((-2, -1)), rtol=1e-5
    )
    probs = np.asarray(cat.probs)
    np.testing.assert_allclose(dist.mean, probs, rtol=1e-5)
    np.testing.assert_allclose(
        dist.entropy(), -(probs * log_p).sum((-2, -1)), rtol=1e-5
    )
    sample = np.asarray(dist.sample(jax.random.key(0), (4,)))
    assert sample.shape == (4, 5, 2, 3)
    np.testing.assert_array_equal(sample.sum(-1), 1.0)

    bern = Distribution(6, "bernoulli", 2, rngs=nnx.Rngs(0))(_randn(5, 6))
    dist = get_dist(bern)
    assert isinstance(dist, IndependentBernoulli)
    bits = np.asarray(bern.stoch).reshape(5, 2, 3)
    p = _sigmoid(np.asarray(bern.logits, np.float64))
    hand = (bits * np.log(p) + (1 - bits) * np.log(1 - p)).sum((-2, -1))
    np.testing.assert_allclose(dist.log_prob(bits), hand, rtol=1e-5)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum((-2, -1))
    np.testing.assert_allclose(dist.entropy(), entropy, rtol=1e-5)
    assert dist.sample(jax.random.key(0)).shape == (5, 2, 3)
    with pytest.raises(TypeError, match="Stoch container"):
        get_dist(jnp.zeros(2))  # type: ignore[arg-type]


def test_container_validation() -> None:
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        NormalStoch(a, np.ones((2, 4)), a)
    with pytest.raises(ValueError, match="non-negative"):
        NormalStoch(a, -np.ones((2, 3)), a)
    with pytest.raises(TypeError, match="must be an array"):
        NormalStoch(a, object(), a)  # type: ignore[arg-type]
    logits = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="probs must have the shape of logits"):
        CategoricalStoch(logits, np.zeros((2, 6)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="does not match logits"):
        BernoulliStoch(logits, logits, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="does not match logits"):
        BernoulliStoch(logits, logits, np.zeros((3, 4)))
    BernoulliStoch(logits, logits, np.zeros((2, 6)))  # valid
    # traced values are not checked (no concrete value under jit)
    jax.jit(lambda s: NormalStoch(s, -s, s).std)(jnp.ones(3))


def test_stack_and_cat() -> None:
    normals = (_normal(), _normal(seed=1))
    assert stack_dist(normals).shape.mean == (2, 4, 3, 2)
    assert stack_dist(normals, dim=-1).shape.mean == (4, 3, 2, 2)
    assert cat_dist(normals).shape.std == (4, 3, 4)
    assert cat_dist(normals, dim=0).shape.std == (8, 3, 2)
    cats = (_categorical(), _categorical(seed=1))
    assert tuple(stack_dist(cats).shape) == ((2, 4, 3, 2, 3),) * 2 + ((2, 4, 3, 6),)
    assert stack_dist(cats, dim=-1).shape.logits == (4, 3, 2, 2, 3)
    joined = cat_dist(cats)  # events: the groups are concatenated
    assert tuple(joined.shape) == ((4, 3, 4, 3), (4, 3, 4, 3), (4, 3, 12))
    np.testing.assert_array_equal(
        np.asarray(joined.stoch).reshape(4, 3, 4, 3)[:, :, 2:],
        np.asarray(cats[1].stoch).reshape(4, 3, 2, 3),
    )
    assert cat_dist(cats, dim=1).shape.stoch == (4, 6, 6)
    with pytest.raises(TypeError, match="one Stoch type"):
        cat_dist((normals[0], cats[0]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        stack_dist(())


# -- BSQ codebook ----------------------------------------------------------------------


def test_bsq_codebook() -> None:
    book = BSQCodebook(4)
    assert book.codebook_size == 16
    assert book.codebook.shape == (16, 4)
    np.testing.assert_allclose(np.linalg.norm(book.codebook, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(book.codes_to_indices(book.codebook), np.arange(16))
    np.testing.assert_array_equal(book.indices_to_codes(jnp.arange(16)), book.codebook)
    signs = np.sign(BSQCodebook(5).indices_to_codes(jnp.array(19)))
    assert signs.tolist() == [1.0, -1.0, -1.0, 1.0, 1.0]  # MSB first
    assert state_names(book) == {}  # a constant, not a variable: never transferred
    with pytest.raises(ValueError, match="codebook_dim"):
        BSQCodebook(0)
    with pytest.raises(ValueError, match="end with codebook_dim"):
        book.codes_to_indices(jnp.ones(3))


# -- likelihood, ELBO ------------------------------------------------------------------


def test_head_nll_normal() -> None:
    out = _normal((5,), 3)
    targets = _randn(5, 3, seed=4)
    mean, std = np.asarray(out.mean, np.float64), np.asarray(out.std, np.float64)
    hand = np.mean(
        (
            0.5 * np.log(2 * np.pi) + np.log(std) + (targets - mean) ** 2 / (2 * std**2)
        ).sum(-1)
    )
    np.testing.assert_allclose(head_nll(out, targets), hand, rtol=1e-5)
    with pytest.raises(ValueError, match="shape of the mean"):
        head_nll(out, np.zeros(5, np.float32))


def test_head_nll_categorical() -> None:
    out = _categorical((5,))
    labels = np.random.default_rng(0).integers(0, 3, (5, 2))
    log_p = np.log(_softmax(np.asarray(out.logits, np.float64)))
    hand = -sum(log_p[b, g, labels[b, g]] for b in range(5) for g in range(2)) / 5
    np.testing.assert_allclose(head_nll(out, labels), hand, rtol=1e-5)
    onehot = np.eye(3, dtype=np.float32)[labels].reshape(5, 6)
    np.testing.assert_allclose(head_nll(out, onehot), hand, rtol=1e-5)
    single = Distribution(4, "categorical", rngs=nnx.Rngs(0))(_randn(5, 4))
    plain = np.array([0, 3, 1, 2, 2])
    expected = optax.softmax_cross_entropy_with_integer_labels(
        single.logits[:, 0], plain
    ).mean()
    np.testing.assert_allclose(head_nll(single, plain), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="class indices"):
        head_nll(out, np.zeros((5, 3), np.int32))


def test_head_nll_bernoulli_and_errors() -> None:
    head = Distribution(6, "bernoulli", n_groups=2, rngs=nnx.Rngs(0))
    out = head(_randn(5, 6), inv_tmp=0.5)
    bits = np.random.default_rng(0).integers(0, 2, (5, 6)).astype(np.float32)
    p = _sigmoid(np.asarray(out.logits, np.float64).reshape(5, 6))
    hand = -(bits * np.log(p) + (1 - bits) * np.log(1 - p)).sum(-1).mean()
    np.testing.assert_allclose(head_nll(out, bits), hand, rtol=1e-5)
    with pytest.raises(ValueError, match="bernoulli targets"):
        head_nll(out, bits[:, :5])
    with pytest.raises(TypeError, match="head_nll needs"):
        head_nll(jnp.zeros(3), jnp.zeros(3))  # type: ignore[arg-type]


class _HeteroNet(nnx.Module):
    """x -> Bayesian MLP -> (mean, raw std) -> normal head."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.body = bnn.Linear(1, 32, rngs=rngs, rho_init=-6.0)
        self.out = bnn.Linear(32, 2, rngs=rngs, rho_init=-6.0)
        self.head = Distribution(1, "normal", rngs=rngs)

    def __call__(self, x: jax.Array) -> NormalStoch:
        return self.head(self.out(jnp.tanh(self.body(x))))


def _noise_std(x: np.ndarray) -> np.ndarray:
    return 0.05 + 0.225 * (x + 1)  # 0.05 at x = -1, 0.5 at x = 1


def test_elbo_without_loss_function_uses_head_nll() -> None:
    model = _HeteroNet(nnx.Rngs(0))
    x, y = _randn(8, 1), _randn(8, 1, seed=1)
    elbo = bnn.ELBOLoss(kl_weight=0.1)
    out = model(x)
    expected = head_nll(out, y) + 0.1 * bnn.KLDivergenceLoss()(model)
    np.testing.assert_allclose(elbo(out, y, model), expected, rtol=1e-6)
    with pytest.raises(TypeError, match="without a loss_function"):
        elbo(jnp.zeros((8, 1)), y, model)
    custom = bnn.ELBOLoss(lambda o, t: jnp.mean((o.mean - t) ** 2), kl_weight=0.0)
    np.testing.assert_allclose(custom(out, y, model), jnp.mean((out.mean - y) ** 2))


def test_elbo_trains_a_heteroscedastic_regression() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (512, 1)).astype(np.float32)
    y = (0.5 * x + _noise_std(x) * rng.standard_normal(x.shape)).astype(np.float32)
    model = _HeteroNet(nnx.Rngs(params=0, sample=1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    elbo = bnn.ELBOLoss()  # no loss function: the head's Gaussian NLL

    @nnx.jit
    def train_step(model: _HeteroNet, optimizer: nnx.Optimizer) -> jax.Array:
        def loss_fn(model: _HeteroNet) -> jax.Array:
            return elbo.monte_carlo(model, x, y)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
        loss, grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss

    for _ in range(300):
        train_step(model, optimizer)
    grid = np.linspace(-0.9, 0.9, 50, dtype=np.float32)[:, None]
    mean, std = predictive_normal(model, grid, num_samples=16)
    truth = _noise_std(grid)
    ratio = np.asarray(std) / truth
    assert np.corrcoef(np.asarray(std).ravel(), truth.ravel())[0, 1] > 0.9
    assert 0.8 < np.median(ratio) < 1.25
    assert np.all((ratio > 0.5) & (ratio < 2.0))
    assert np.max(np.abs(np.asarray(mean) - 0.5 * grid)) < 0.15
    low, high = predictive_interval(model, grid, num_samples=16)
    assert np.all((low < 0.5 * grid) & (0.5 * grid < high))


# -- Monte Carlo prediction ------------------------------------------------------------


class _NoisyMean(nnx.Module):
    """A normal output whose mean is redrawn on every call (a toy posterior)."""

    def __init__(self) -> None:
        self.rngs = nnx.Rngs(sample=3)

    def __call__(self, x: jax.Array) -> NormalStoch:
        mean = x + jax.random.normal(self.rngs.sample(), x.shape)
        return NormalStoch(mean, 0.5 + jnp.abs(x), mean)


def test_predictive_normal_is_the_law_of_total_variance() -> None:
    model = _NoisyMean()
    x = _randn(3, 2)
    samples = bnn.mc_samples(nnx.clone(model), x, num_samples=8)
    assert isinstance(samples, NormalStoch) and samples.shape.mean == (8, 3, 2)
    mean, std = predictive_normal(model, x, num_samples=8)
    means = np.asarray(samples.mean, np.float64)
    variances = np.asarray(samples.std, np.float64) ** 2
    np.testing.assert_allclose(mean, means.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        std, np.sqrt(variances.mean(0) + means.var(0)), rtol=1e-5
    )


def test_predictive_interval_of_one_normal() -> None:
    class _Fixed(nnx.Module):
        def __init__(self) -> None:
            self.rngs = nnx.Rngs(0)

        def __call__(self, x: jax.Array) -> NormalStoch:
            return NormalStoch(x, jnp.array([0.5, 2.0]), x)

    model = _Fixed()
    x = jnp.array([1.0, -2.0])
    low, high = predictive_interval(
        model, x, num_samples=16, level=0.9, draws_per_sample=4096
    )
    z = 1.6448536
    np.testing.assert_allclose(low, x - z * np.array([0.5, 2.0]), atol=0.06, rtol=0.03)
    np.testing.assert_allclose(high, x + z * np.array([0.5, 2.0]), atol=0.06, rtol=0.03)
    low2, _ = predictive_interval(model, x, key=jax.random.key(5), draws_per_sample=8)
    assert low2.shape == (2,)
    with pytest.raises(ValueError, match="level"):
        predictive_interval(model, x, level=0.0)
    with pytest.raises(ValueError, match="draws_per_sample"):
        predictive_interval(model, x, draws_per_sample=0)
    cat = Distribution(4, "categorical", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="NormalStoch"):
        predictive_normal(cat, jnp.zeros((2, 4)), num_samples=2)
