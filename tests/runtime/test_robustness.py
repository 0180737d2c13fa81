"""Numerical robustness of both runtimes.

- ``rho`` anywhere in ``[-50, 50]`` gives a finite sigma, log-probability, KL
  cost and gradients (with respect to ``mu`` and ``rho``), in float32 and
  float64, for ``GaussianDistribution`` and every Bayesian layer, and the
  log-probability matches a float64 reference. At ``rho = -50`` sigma is
  ``2e-22`` and its square is subnormal in float32 (zero once flushed, as XLA
  does): the old ``(x - mu)**2 / (2 sigma**2)`` gave NaN gradients in torch and
  a NaN log-probability in JAX.
- Layers and distributions work in float64 (torch ``.double()``; JAX with
  ``jax_enable_x64`` switched on by a fixture and off again afterwards).
- Seeded runs of a compiled model are reproducible: the same seed gives the
  same samples, outputs and training losses; another seed does not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import bnnc  # noqa: E402
import bnnc.runtime.jax as bj  # noqa: E402
import bnnc.runtime.torch as bt  # noqa: E402

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits.bnn"
RHOS = [-50.0, -20.0, 0.0, 20.0, 50.0]
RANDOM = "uniform[-50, 50]"  # rho overwritten with random values in [-50, 50]
RHO_CASES = [*RHOS, RANDOM]
DTYPES = ["float32", "float64"]
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# Relative tolerance of the log-probability against the float64 reference.
RTOL = {"float32": 2e-5, "float64": 1e-11}


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    """Seed torch on one thread; compile JAX kernels with few optimisations.

    The models are tiny: torch's thread pool only costs time, and XLA's compile
    time dominates (many tiny kernels, each run a few times).
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    flag = "jax_disable_most_optimizations"
    previous = bool(jax.config.values.get(flag, False))
    jax.config.update(flag, True)
    yield
    jax.config.update(flag, previous)
    torch.set_num_threads(threads)


@pytest.fixture
def x64() -> Iterator[None]:
    """Switch JAX's float64 mode on for one test, and back off afterwards."""
    previous = bool(jax.config.values["jax_enable_x64"])
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(params=DTYPES)
def dtype(request: pytest.FixtureRequest) -> str:
    """The floating dtype under test (float64 with JAX's x64 mode on)."""
    if request.param == "float64":
        request.getfixturevalue("x64")
    return request.param


# -- float64 reference ------------------------------------------------------------


def _softplus(rho: np.ndarray) -> np.ndarray:
    """torch's softplus, which defines sigma in both runtimes: ``rho`` above 20."""
    return np.where(rho > 20.0, rho, np.log1p(np.exp(np.minimum(rho, 20.0))))


def reference_kl(x: Any, mu: Any, rho: Any, mu_prior: float, std_prior: float) -> float:
    """``sum log N(x; mu, softplus(rho)) - sum log N(x; mu_prior, std_prior)``.

    In float64 with the textbook formulas: for ``|rho| <= 50`` neither
    ``softplus(rho) = log1p(exp(rho))`` nor its log under- or overflows there
    (``softplus`` is torch's, linear above 20, as in both runtimes).
    """
    x, mu, rho = (np.asarray(a, dtype=np.float64) for a in (x, mu, rho))
    sigma = _softplus(rho)
    log_q = -_LOG_SQRT_2PI - np.log(sigma) - 0.5 * ((x - mu) / sigma) ** 2
    log_p = (
        -_LOG_SQRT_2PI - math.log(std_prior) - 0.5 * ((x - mu_prior) / std_prior) ** 2
    )
    return float(log_q.sum() - log_p.sum())


def reference_closed_kl(
    x: Any, mu: Any, rho: Any, mu_prior: float, std_prior: float
) -> float:
    """The closed-form KL(N(mu, softplus(rho)^2) || N(mu_prior, std_prior^2)).

    ``x`` (the sample) is ignored; float64 textbook formula.
    """
    mu, rho = (np.asarray(a, dtype=np.float64) for a in (mu, rho))
    sigma = _softplus(rho)
    terms = (
        math.log(std_prior)
        - np.log(sigma)
        + (sigma**2 + (mu - mu_prior) ** 2) / (2 * std_prior**2)
        - 0.5
    )
    return float(terms.sum())


KL_REFERENCES = {"sample": reference_kl, "closed_form": reference_closed_kl}


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _random_rho(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-50.0, 50.0, shape)


# -- torch ----------------------------------------------------------------------

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _torch_rho(dist: bt.GaussianDistribution, rho: float | str, seed: int) -> None:
    if rho == RANDOM:
        with torch.no_grad():
            dist.rho.copy_(torch.from_numpy(_random_rho(tuple(dist.rho.shape), seed)))


@pytest.mark.parametrize("rho", RHO_CASES)
def test_torch_distribution_extreme_rho(rho: float | str, dtype: str) -> None:
    torch_dtype = TORCH_DTYPES[dtype]
    init = 0.0 if rho == RANDOM else rho
    dist = bt.GaussianDistribution((7, 5), rho_init=init).to(torch_dtype)
    _torch_rho(dist, rho, seed=1)
    assert dist.mu.dtype == dist.rho.dtype == torch_dtype
    sigma = dist.sigma
    assert sigma.dtype == torch_dtype
    assert bool(torch.isfinite(sigma).all()) and bool((sigma > 0).all())

    # A reparameterised sample: gradients flow through x and through sigma.
    x = dist.sample()
    log_prob = dist.log_prob(x)
    assert log_prob.dtype == torch_dtype and bool(torch.isfinite(log_prob))
    prior = float(dist.mu_prior), float(dist.std_prior)  # 0.1 rounded to float32
    expected = reference_kl(_np(x), _np(dist.mu), _np(dist.rho), *prior)
    assert float(log_prob.detach()) == pytest.approx(expected, rel=RTOL[dtype])
    log_prob.backward()
    assert bool(torch.isfinite(dist.mu.grad).all())
    assert bool(torch.isfinite(dist.rho.grad).all())
    assert bool(torch.isfinite(dist.log_prob()))  # a fresh sample


@pytest.mark.parametrize("rho", RHO_CASES)
def test_torch_log_prob_gradient_matches_the_analytic_one(rho: float | str) -> None:
    """Fixed x, float64: d/dmu = z / sigma, d/drho = (z**2 - 1) d(log sigma)/drho."""
    init = 0.0 if rho == RANDOM else rho
    dist = bt.GaussianDistribution((4, 3), rho_init=init).double()
    _torch_rho(dist, rho, seed=2)
    mu, rho_ = _np(dist.mu), _np(dist.rho)
    sigma = _softplus(rho_)
    z = np.random.default_rng(3).standard_normal(mu.shape)
    x = torch.from_numpy(mu + sigma * z)
    dist.log_prob(x).backward()
    z = (x.numpy() - mu) / sigma
    dsigma = np.where(rho_ > 20.0, 1.0, 1.0 / (1.0 + np.exp(-rho_)))
    np.testing.assert_allclose(_np(dist.mu.grad), z / sigma, rtol=1e-9)
    np.testing.assert_allclose(
        _np(dist.rho.grad), (z**2 - 1.0) * dsigma / sigma, rtol=1e-9, atol=1e-12
    )


TorchCase = tuple[Callable[[float], Any], Callable[[], Any]]
TORCH_LAYERS: dict[str, TorchCase] = {
    "Linear": (
        lambda r: bt.Linear(6, 4, rho_init=r),
        lambda: torch.randn(3, 6),
    ),
    "Conv1d": (
        lambda r: bt.Conv1d(2, 3, 3, padding=1, rho_init=r),
        lambda: torch.randn(2, 2, 7),
    ),
    "Conv2d": (
        lambda r: bt.Conv2d(2, 3, 3, padding=1, rho_init=r),
        lambda: torch.randn(2, 2, 5, 5),
    ),
    "Embedding": (
        lambda r: bt.Embedding(10, 4, rho_init=r),
        lambda: torch.randint(0, 10, (2, 5)),
    ),
    "LSTM": (
        lambda r: bt.LSTM(10, 4, 5, 3, rho_init=r),
        lambda: torch.randint(0, 10, (2, 5)),
    ),
}


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _torch_layer_kl_reference(layer: Any, estimator: str) -> float:
    total = 0.0
    for module in layer.modules():
        if isinstance(module, bt.BayesianModule) and module.is_bayesian:
            for _, dist, value in module.random_tensors():
                total += KL_REFERENCES[estimator](
                    _np(value),
                    _np(dist.mu),
                    _np(dist.rho),
                    float(dist.mu_prior),
                    float(dist.std_prior),
                )
    return total


@pytest.mark.parametrize("estimator", ["closed_form", "sample"])
@pytest.mark.parametrize("rho", RHO_CASES)
@pytest.mark.parametrize("name", TORCH_LAYERS)
def test_torch_layer_extreme_rho(
    name: str, rho: float | str, dtype: str, estimator: str
) -> None:
    torch_dtype = TORCH_DTYPES[dtype]
    make_layer, make_input = TORCH_LAYERS[name]
    layer = make_layer(0.0 if rho == RANDOM else rho).to(torch_dtype)
    for seed, module in enumerate(layer.modules()):
        if isinstance(module, bt.GaussianDistribution):
            _torch_rho(module, rho, seed)
    x = make_input()
    if x.is_floating_point():
        x = x.to(torch_dtype)
    output = _first(layer(x))
    assert output.dtype == torch_dtype and bool(torch.isfinite(output).all())
    kl, num_params = bt.total_kl(layer, estimator)
    assert num_params > 0
    assert kl.dtype == torch_dtype and bool(torch.isfinite(kl))
    expected = _torch_layer_kl_reference(layer, estimator)
    assert float(kl.detach()) == pytest.approx(expected, rel=RTOL[dtype])
    (output.sum() + kl).backward()
    grads = [p.grad for p in layer.parameters()]
    assert grads and all(g is not None for g in grads)
    assert all(bool(torch.isfinite(g).all()) for g in grads)


# -- JAX --------------------------------------------------------------------------


def _cast(module: nnx.Module, dtype: str) -> None:
    """Cast every floating variable (not the random streams) of ``module``."""
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable) and not isinstance(node, nnx.RngState):
            value = node.get_value()
            if jnp.issubdtype(value.dtype, jnp.floating):
                node.set_value(value.astype(dtype))


def _jax_rho(module: nnx.Module, rho: float | str) -> None:
    if rho != RANDOM:
        return
    for seed, (_, dist) in enumerate(nnx.iter_modules(module)):
        if isinstance(dist, bj.GaussianDistribution):
            value = dist.rho.get_value()
            dist.rho.set_value(
                jnp.asarray(_random_rho(value.shape, seed), dtype=value.dtype)
            )


def _finite(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)


@pytest.mark.parametrize("rho", RHO_CASES)
def test_jax_distribution_extreme_rho(rho: float | str, dtype: str) -> None:
    init = 0.0 if rho == RANDOM else rho
    # The shape of the Linear layer's weights below: XLA kernels are shared.
    dist = bj.GaussianDistribution((4, 6), rho_init=init, rngs=nnx.Rngs(0))
    _cast(dist, dtype)
    _jax_rho(dist, rho)
    sigma = dist.sigma
    assert sigma.dtype == dtype
    assert bool(jnp.isfinite(sigma).all()) and bool((sigma > 0).all())

    def loss(dist: bj.GaussianDistribution) -> tuple[jax.Array, jax.Array]:
        x = dist.sample(nnx.Rngs(1))  # reparameterised
        return dist.log_prob(x), x

    grad_fn = nnx.value_and_grad(loss, has_aux=True)
    (log_prob, x), grads = grad_fn(dist)
    assert log_prob.dtype == dtype and bool(jnp.isfinite(log_prob))
    prior = float(dist.mu_prior[...][0]), float(dist.std_prior[...][0])
    expected = reference_kl(x, dist.mu[...], dist.rho[...], *prior)
    assert float(log_prob) == pytest.approx(expected, rel=RTOL[dtype])
    assert _finite(grads["mu"][...]) and _finite(grads["rho"][...])
    assert bool(jnp.isfinite(dist.log_prob()))  # a fresh sample


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("rho", RHOS)
def test_jax_and_torch_log_prob_agree_in_float64(rho: float) -> None:
    torch_dist = bt.GaussianDistribution((6,), rho_init=rho).double()
    jax_dist = bj.GaussianDistribution((6,), rho_init=rho, rngs=nnx.Rngs(0))
    _cast(jax_dist, "float64")
    jax_dist.mu.set_value(jnp.asarray(_np(torch_dist.mu)))
    jax_dist.rho.set_value(jnp.asarray(_np(torch_dist.rho)))
    x = torch_dist.sample().detach()
    torch_value = float(torch_dist.log_prob(x).detach())
    jax_value = float(jax_dist.log_prob(jnp.asarray(x.numpy())))
    assert jax_value == pytest.approx(torch_value, rel=1e-12)


JaxCase = tuple[Callable[[float, nnx.Rngs], Any], Callable[[], Any]]
# Small shapes, shared between layers where possible (biases of 4, embeddings
# of 10 x 4): XLA compiles one kernel per shape, which dominates the run time.
_IDS = np.random.default_rng(4).integers(0, 10, (2, 5))
_NP = np.random.default_rng(5)
JAX_LAYERS: dict[str, JaxCase] = {
    "Linear": (
        lambda r, rngs: bj.Linear(6, 4, rngs=rngs, rho_init=r),
        lambda: _NP.standard_normal((3, 6)),
    ),
    "Conv1d": (
        lambda r, rngs: bj.Conv1d(2, 4, 3, padding=1, rngs=rngs, rho_init=r),
        lambda: _NP.standard_normal((2, 2, 7)),
    ),
    "Conv2d": (
        lambda r, rngs: bj.Conv2d(2, 4, 3, padding=1, rngs=rngs, rho_init=r),
        lambda: _NP.standard_normal((2, 2, 5, 5)),
    ),
    "Embedding": (
        lambda r, rngs: bj.Embedding(10, 4, rngs=rngs, rho_init=r),
        lambda: _IDS,
    ),
    "LSTM": (
        lambda r, rngs: bj.LSTM(10, 4, 4, 4, rngs=rngs, rho_init=r),
        lambda: _IDS,
    ),
}


def _jax_layer_kl_reference(layer: nnx.Module, estimator: str) -> float:
    total = 0.0
    for module in bj.bayesian_modules(layer):
        for _, dist, value in module.random_tensors():
            total += KL_REFERENCES[estimator](
                value,
                dist.mu[...],
                dist.rho[...],
                float(dist.mu_prior[...][0]),
                float(dist.std_prior[...][0]),
            )
    return total


@pytest.mark.parametrize("estimator", ["closed_form", "sample"])
@pytest.mark.parametrize("rho", RHO_CASES)
@pytest.mark.parametrize("name", JAX_LAYERS)
def test_jax_layer_extreme_rho(
    name: str, rho: float | str, dtype: str, estimator: str
) -> None:
    make_layer, make_input = JAX_LAYERS[name]
    layer = make_layer(0.0 if rho == RANDOM else rho, nnx.Rngs(0))
    _cast(layer, dtype)
    _jax_rho(layer, rho)
    x = jnp.asarray(make_input())
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(dtype)

    def loss(layer: nnx.Module) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        output = _first(layer(x))
        kl, _ = bj.total_kl(layer, estimator)
        return output.sum() + kl, (output, kl)

    grad_fn = nnx.value_and_grad(
        loss, argnums=nnx.DiffState(0, nnx.Param), has_aux=True
    )
    (_, (output, kl)), grads = grad_fn(layer)
    assert output.dtype == dtype and _finite(output)
    assert kl.dtype == dtype and bool(jnp.isfinite(kl))
    expected = _jax_layer_kl_reference(layer, estimator)  # that call's samples
    assert float(kl) == pytest.approx(expected, rel=RTOL[dtype])
    assert _finite(grads)
    num_params = len(jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert len(jax.tree.leaves(grads)) == num_params


# -- seeded reproducibility of compiled models --------------------------------------

DIGIT_IMAGES = np.random.default_rng(6).standard_normal((8, 1, 8, 8)).astype("f4")
DIGIT_LABELS = np.arange(8) % 10


@functools.cache
def _digits_class(backend: str) -> type:
    """The compiled digits model's class.

    ``bnnc.build`` executes the generated code anew on every call, so each
    model has its own class, and ``nnx.jit`` retraces (and recompiles) for
    every one; the runs below instantiate one class instead.
    """
    rngs = {"rngs": nnx.Rngs(0)} if backend == "jax" else {}
    return type(bnnc.build(DIGITS, backend=backend, **rngs))


def _torch_run(seed: int) -> dict[str, Any]:
    """Build the digits model under ``seed``, sample twice, train three steps."""
    model_class = _digits_class("torch")  # building draws random numbers
    torch.manual_seed(seed)
    model = model_class()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.from_numpy(DIGIT_IMAGES), torch.from_numpy(DIGIT_LABELS)
    outputs = [model(x).detach() for _ in range(2)]
    samples = model.head.weights.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    elbo = bt.ELBOLoss(torch.nn.functional.cross_entropy)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = elbo.monte_carlo(model, x, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return {
        "initial": initial,
        "outputs": outputs,
        "samples": samples,
        "losses": losses,
    }


_JAX_ELBO = bj.ELBOLoss(
    lambda out, t: optax.softmax_cross_entropy_with_integer_labels(out, t).mean(),
)
# One transformation for every run: the optimiser's graph (and so the traced
# step) is then the same, and the step compiles once.
_JAX_ADAM = optax.adam(1e-2)


@nnx.jit
def _jax_step(
    model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
) -> jax.Array:
    """One Adam step on the Monte Carlo ELBO (traced once for every run)."""
    grad_fn = nnx.value_and_grad(
        lambda m: _JAX_ELBO.monte_carlo(m, x, y), argnums=nnx.DiffState(0, nnx.Param)
    )
    loss, grads = grad_fn(model)
    optimizer.update(model, grads)
    return loss


def _jax_run(seed: int) -> dict[str, Any]:
    """As :func:`_torch_run`, with ``rngs=nnx.Rngs(seed)``."""
    model = _digits_class("jax")(rngs=nnx.Rngs(seed))
    initial = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    x, y = jnp.asarray(DIGIT_IMAGES), jnp.asarray(DIGIT_LABELS)
    outputs = [model(x) for _ in range(2)]
    samples = model.head.weights[...]
    optimizer = nnx.Optimizer(model, _JAX_ADAM, wrt=nnx.Param)
    losses = [_jax_step(model, optimizer, x, y) for _ in range(3)]
    return {"init": initial, "outputs": outputs, "samples": samples, "losses": losses}


def _leaves(run: dict[str, Any]) -> list[np.ndarray]:
    flat = jax.tree.leaves(
        run, is_leaf=lambda v: isinstance(v, (torch.Tensor, jax.Array, np.ndarray))
    )
    return [_np(leaf) for leaf in flat]


@pytest.mark.parametrize("runner", [_torch_run, _jax_run], ids=["torch", "jax"])
def test_seeded_runs_are_reproducible(runner: Callable[[int], dict[str, Any]]) -> None:
    first, again, other = runner(0), runner(0), runner(1)
    for a, b in zip(_leaves(first), _leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    losses = [float(v) for v in first["losses"]]
    assert all(math.isfinite(v) for v in losses)
    # Fresh weights on every call; another seed, other values everywhere.
    assert not np.array_equal(_np(first["outputs"][0]), _np(first["outputs"][1]))
    assert not np.array_equal(_np(first["samples"]), _np(other["samples"]))
    assert not np.array_equal(_np(first["outputs"][0]), _np(other["outputs"][0]))
    assert losses != [float(v) for v in other["losses"]]
