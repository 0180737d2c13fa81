"""The torch and JAX stochastic heads compute the same numbers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jnp = pytest.importorskip("jax.numpy")
nnx = pytest.importorskip("flax.nnx")

from bnnc.runtime.jax import heads as jax_heads  # noqa: E402
from bnnc.runtime.torch import heads as torch_heads  # noqa: E402
from bnnc.runtime.transfer import state_names  # noqa: E402

_FAST = "jax_disable_most_optimizations"


@pytest.fixture(autouse=True)
def _fast_compilation() -> Iterator[None]:
    """Few XLA optimisations, as in tests/runtime/jax: many tiny kernels, run once."""
    import jax

    previous = bool(jax.config.values.get(_FAST, False))
    jax.config.update(_FAST, True)
    yield
    jax.config.update(_FAST, previous)


TOLERANCE = 1e-5

CASES = [
    ("normal", 1, False),
    ("categorical", 1, False),
    ("categorical", 3, False),
    ("categorical", 3, True),
    ("bernoulli", 1, False),
    ("bernoulli", 3, False),
    ("bernoulli", 3, True),
]


def _input(dist: str, in_dim: int) -> np.ndarray:
    width = 2 * in_dim if dist == "normal" else in_dim
    x = np.random.default_rng(0).standard_normal((2, 5, width)) * 3
    if dist == "normal":
        x[0, 0, -1] = 40.0  # softplus's linear branch (threshold 20)
    return x.astype(np.float32)


def _heads(dist: str, n_groups: int, spherical: bool) -> tuple[object, object]:
    torch_head = torch_heads.Distribution(12, dist, n_groups, spherical)
    jax_head = jax_heads.Distribution(12, dist, n_groups, spherical, rngs=nnx.Rngs(0))
    return torch_head, jax_head


def _max_diff(a: object, b: object) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    assert a.shape == np.asarray(b).shape
    return float(np.max(np.abs(a - np.asarray(b))))


@pytest.mark.parametrize(("dist", "n_groups", "spherical"), CASES)
@pytest.mark.parametrize("inv_tmp", [1.0, 0.7])
def test_heads_agree(dist: str, n_groups: int, spherical: bool, inv_tmp: float) -> None:
    torch_head, jax_head = _heads(dist, n_groups, spherical)
    x = _input(dist, 12)
    t_out = torch_head(torch.from_numpy(x), deterministic=True, inv_tmp=inv_tmp)
    j_out = jax_head(jnp.asarray(x), deterministic=True, inv_tmp=inv_tmp)
    assert type(t_out).__name__ == type(j_out).__name__
    assert t_out.shape._fields == j_out.shape._fields
    for field in t_out.shape._fields:  # mean/std/stoch or logits/probs/stoch
        diff = _max_diff(getattr(t_out, field), getattr(j_out, field))
        assert diff <= TOLERANCE, (field, diff)
    # stochastic mode: same parameters, samples of the same kind
    t_sample = torch_head(torch.from_numpy(x), inv_tmp=inv_tmp)
    j_sample = jax_head(jnp.asarray(x), inv_tmp=inv_tmp)
    for field in t_out.shape._fields[:2]:
        assert (
            _max_diff(getattr(t_sample, field), getattr(j_sample, field)) <= TOLERANCE
        )
    if dist != "normal":
        low, high = (0.0, 1.0) if not spherical else (-1.0, 1.0)
        if dist == "bernoulli" and spherical:
            low, high = -0.5, 0.5  # (2b - 1) / sqrt(4)
        for stoch in (t_sample.stoch.numpy(), np.asarray(j_sample.stoch)):
            assert set(np.unique(stoch).tolist()) <= {low, high}


@pytest.mark.parametrize(("dist", "n_groups", "spherical"), CASES)
def test_head_nll_agrees(dist: str, n_groups: int, spherical: bool) -> None:
    torch_head, jax_head = _heads(dist, n_groups, spherical)
    x = _input(dist, 12)
    rng = np.random.default_rng(1)
    if dist == "normal":
        targets = rng.standard_normal((2, 5, 12)).astype(np.float32)
    elif dist == "categorical":
        targets = rng.integers(0, 12 // n_groups, (2, 5, n_groups))
    else:
        targets = rng.integers(0, 2, (2, 5, 12)).astype(np.float32)
    t_nll = torch_heads.head_nll(
        torch_head(torch.from_numpy(x)), torch.from_numpy(targets)
    )
    j_nll = jax_heads.head_nll(jax_head(jnp.asarray(x)), jnp.asarray(targets))
    assert abs(float(t_nll) - float(j_nll)) <= TOLERANCE * max(1.0, abs(float(t_nll)))


def test_codebooks_and_state_agree() -> None:
    t_book, j_book = torch_heads.BSQCodebook(6), jax_heads.BSQCodebook(6)
    assert _max_diff(t_book.codebook, j_book.codebook) == 0.0
    codes = t_book.codebook.numpy()
    assert np.array_equal(
        t_book.codes_to_indices(torch.from_numpy(codes)).numpy(),
        np.asarray(j_book.codes_to_indices(jnp.asarray(codes))),
    )
    # heads and codebooks hold no transferable tensors on either side
    for pair in (_heads("bernoulli", 3, True), (t_book, j_book)):
        assert state_names(pair[0]) == state_names(pair[1]) == {}
