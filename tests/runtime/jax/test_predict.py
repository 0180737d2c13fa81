"""Monte Carlo prediction helpers against hand-computed values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnc.runtime.jax import (
    LSTM,
    ClassificationUncertainty,
    FixedLinear,
    Linear,
    classification_uncertainty,
    expected_entropy,
    freeze_all,
    mc_samples,
    mutual_information,
    predictive_entropy,
    predictive_mean_std,
    predictive_probs,
    total_kl,
    unfreeze_all,
)


def _full(shape: tuple[int, ...], value: float) -> jax.Array:
    """``jnp.full`` without compiling a kernel per shape."""
    return jnp.asarray(np.full(shape, value, np.float32))


class _Scripted(nnx.Module):
    """Returns the given outputs in turn, ignoring its input (Python loop only)."""

    def __init__(self, outputs: list[list[float]]) -> None:
        self.outputs = nnx.data([jnp.array(o) for o in outputs])
        self.calls = 0

    def __call__(self, x: jax.Array) -> jax.Array:
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return out + 0 * x.sum()


class _Net(nnx.Module):
    def __init__(self, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.fixed = FixedLinear(4, 8, rngs=rngs)
        self.head = Linear(8, 4, rho_init=-1.0, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(jax.nn.relu(self.fixed(x)))


X = np.linspace(-2.0, 2.0, 20, dtype=np.float32).reshape(5, 4)


def _patch_mc_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the helpers call scripted models in a loop (they are not vmappable)."""
    import bnnc.runtime.jax.predict as predict

    original = predict.mc_samples

    def looped(model: nnx.Module, *inputs: jax.Array, num_samples: int) -> jax.Array:
        return original(model, *inputs, num_samples=num_samples, vectorize=False)

    monkeypatch.setattr(predict, "mc_samples", looped)


def test_mc_samples_are_fresh_draws_and_leave_the_model_alone() -> None:
    model = _Net()
    weights_before = np.asarray(model.head.weights[...])
    samples = mc_samples(model, X, num_samples=6)
    assert samples.shape == (6, 5, 4)
    assert len({float(s[0, 0]) for s in samples}) == 6  # six distinct draws
    # The vmapped copies' samples are discarded; the model's streams advanced.
    np.testing.assert_array_equal(model.head.weights[...], weights_before)
    assert not np.array_equal(mc_samples(model, X, num_samples=6), samples)
    # Reproducible: the same seed gives the same samples.
    np.testing.assert_array_equal(mc_samples(_Net(), X, num_samples=6), samples)
    freeze_all(model)
    frozen = mc_samples(model, X, num_samples=3)
    assert np.array_equal(frozen[0], frozen[1]) and np.array_equal(frozen[1], frozen[2])
    with pytest.raises(ValueError, match="num_samples"):
        mc_samples(model, X, num_samples=0)


def test_vectorised_mc_samples_match_a_python_loop_in_distribution() -> None:
    layer = Linear(1, 1, rngs=nnx.Rngs(0))
    layer.weights_distribution.mu.set_value(_full((1, 1), 0.5))
    layer.weights_distribution.rho.set_value(_full((1, 1), math.log(math.expm1(0.2))))
    layer.bias_distribution.mu.set_value(_full((1,), -1.0))
    layer.bias_distribution.rho.set_value(_full((1,), math.log(math.expm1(0.1))))
    x = _full((1, 1), 2.0)
    # Output ~ N(2 * 0.5 - 1, (2 * 0.2)^2 + 0.1^2) = N(0, 0.17).
    vectorised = np.asarray(mc_samples(layer, x, num_samples=4000)).ravel()
    looped = np.asarray(mc_samples(layer, x, num_samples=300, vectorize=False)).ravel()
    assert len(np.unique(vectorised)) > 3950  # distinct (up to float32 ties)
    std = math.sqrt(0.17)
    # Standard errors: mean 0.0065 and 0.024, std 0.0046 and 0.017.
    assert vectorised.mean() == pytest.approx(0.0, abs=0.03)
    assert vectorised.std() == pytest.approx(std, abs=0.025)
    assert looped.mean() == pytest.approx(0.0, abs=0.1)
    assert looped.std() == pytest.approx(std, abs=0.07)


def test_mc_samples_takes_first_element_of_tuple_outputs() -> None:
    lstm = LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
    ids = np.ones((2, 4, 1), np.int32)
    assert mc_samples(lstm, ids, num_samples=3).shape == (3, 2, 3)


def test_predictive_mean_std_hand_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_mc_samples(monkeypatch)
    model = _Scripted([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0], [7.0, 10.0]])
    mean, std = predictive_mean_std(model, np.zeros(1, np.float32), num_samples=4)
    assert model.calls == 4
    np.testing.assert_allclose(mean, [4.0, 10.0])
    # Population std of 1, 3, 5, 7: sqrt(5).
    np.testing.assert_allclose(std, [math.sqrt(5.0), 0.0], rtol=1e-6)


def test_predictive_probs_is_the_mean_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_mc_samples(monkeypatch)
    logits = [[0.0, 0.0], [math.log(3.0), 0.0]]  # softmax: [.5, .5] and [.75, .25]
    probs = predictive_probs(_Scripted(logits), np.zeros(1, np.float32), num_samples=2)
    np.testing.assert_allclose(probs, [0.625, 0.375], rtol=1e-6)


def test_entropies_and_mutual_information_hand_computed() -> None:
    assert float(predictive_entropy(_full((4,), 0.25))) == pytest.approx(math.log(4))
    assert float(predictive_entropy(jnp.array([1.0, 0.0, 0.0]))) == 0.0
    samples = jnp.array([[0.5, 0.5], [1.0, 0.0]])
    assert float(expected_entropy(samples)) == pytest.approx(math.log(2) / 2)
    same = jnp.array([[0.7, 0.3]] * 5)
    assert float(mutual_information(same)) == pytest.approx(0.0, abs=1e-6)
    disagree = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    assert float(mutual_information(disagree)) == pytest.approx(math.log(2))


def test_classification_uncertainty_decomposes_entropy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _patch_mc_samples(monkeypatch)
    logits = [[10.0, -10.0], [-10.0, 10.0]]  # two confident, opposite samples
    result = classification_uncertainty(
        _Scripted(logits), np.zeros(1, np.float32), num_samples=2
    )
    assert isinstance(result, ClassificationUncertainty)
    np.testing.assert_allclose(result.probs, [0.5, 0.5], rtol=1e-6)
    assert float(result.predictive_entropy) == pytest.approx(math.log(2))
    assert float(result.aleatoric) == pytest.approx(0.0, abs=1e-6)
    assert float(result.mutual_information) == pytest.approx(math.log(2), abs=1e-6)


def test_classification_uncertainty_on_a_real_model() -> None:
    result = classification_uncertainty(_Net(), X, num_samples=5)
    assert result.probs.shape == (5, 4)
    np.testing.assert_allclose(result.probs.sum(-1), np.ones(5), rtol=1e-6)
    np.testing.assert_allclose(
        result.predictive_entropy,
        result.aleatoric + result.mutual_information,
        rtol=1e-5,
    )


def test_freeze_all_unfreeze_all_and_total_kl() -> None:
    model = nnx.Sequential(
        Linear(3, 4, rngs=nnx.Rngs(0)),
        nnx.Sequential(LSTM(10, 4, 5, 3, rngs=nnx.Rngs(1))),
    )
    freeze_all(model)
    lstm = model.layers[1].layers[0]
    assert model.layers[0].frozen and lstm.frozen and lstm.embedding.frozen
    unfreeze_all(model)
    assert not (model.layers[0].frozen or lstm.frozen or lstm.embedding.frozen)
    kl, count = total_kl(model)
    parts = [model.layers[0].kl_cost(), lstm.kl_cost(), lstm.embedding.kl_cost()]
    assert float(kl) == pytest.approx(float(sum(p[0] for p in parts)), rel=1e-6)
    assert count == sum(p[1] for p in parts) == 16 + 218 + 40


def test_vectorised_mc_samples_draw_independent_weights() -> None:
    # Without a bias and with the identity as input, each output is the
    # transposed weight matrix of that copy: mc_samples exposes its S draws.
    layer = Linear(3, 2, use_bias=False, rngs=nnx.Rngs(0))
    mu = np.array([[0.5, -1.0, 0.0], [2.0, 0.3, -0.4]], np.float32)
    sigma = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.05]], np.float32)
    layer.weights_distribution.mu.set_value(jnp.asarray(mu))
    layer.weights_distribution.rho.set_value(jnp.asarray(np.log(np.expm1(sigma))))
    draws = 4000
    identity = np.eye(3, dtype=np.float32)
    outputs = np.asarray(mc_samples(layer, identity, num_samples=draws))
    weights = outputs.transpose(0, 2, 1).reshape(draws, 6)  # [S, out * in]
    z = (weights - mu.ravel()) / sigma.ravel()
    # Standard errors for 4000 draws: mean 0.016, std 0.011, correlation 0.016.
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.07)
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.05)
    # Independent across elements of one draw and across successive draws.
    within = np.corrcoef(z, rowvar=False)[np.triu_indices(6, 1)]
    assert np.abs(within).max() < 0.07
    lagged = [np.corrcoef(z[1:, k], z[:-1, k])[0, 1] for k in range(6)]
    assert np.abs(lagged).max() < 0.07
    assert len(np.unique(weights, axis=0)) == draws  # S distinct draws
    # The layer's own sample is untouched; a frozen layer gives S equal outputs.
    layer.freeze()
    frozen = np.asarray(mc_samples(layer, identity, num_samples=5))
    np.testing.assert_array_equal(frozen, np.broadcast_to(frozen[0], frozen.shape))
    np.testing.assert_array_equal(frozen[0], np.asarray(layer.weights[...]).T)


def test_mc_samples_copy_s_is_one_call_keyed_by_fold_in() -> None:
    # The copies run one after another (jax.lax.map); copy s must still be
    # exactly a call of the model with every stream keyed fold_in(key, s),
    # key being the one mc_samples draws from that stream.
    from bnnc.runtime.jax.predict import _rng_streams

    tokens = np.array([[3, 1, 4, 1], [5, 9, 2, 6]], np.int32)
    for make, inputs in (
        (_Net, X),
        (lambda: LSTM(10, 3, 5, 2, rho_init=-2.0, rngs=nnx.Rngs(1)), tokens),
    ):
        samples = np.asarray(mc_samples(make(), inputs, num_samples=4))
        keys = [stream() for stream in _rng_streams(make())]
        for s in range(4):
            model = make()
            for stream, key in zip(_rng_streams(model), keys, strict=True):
                stream.key.set_value(jax.random.fold_in(key, s))
                stream.count.set_value(jnp.zeros((), stream.count.get_value().dtype))
            out = model(inputs)
            out = out[0] if isinstance(out, tuple) else out
            np.testing.assert_allclose(samples[s], out, rtol=1e-5, atol=1e-6)
        assert len({float(s.ravel()[0]) for s in samples}) == 4


def test_side_by_side_copies_equal_the_sequential_map() -> None:
    # Accelerators run the copies under jax.vmap, CPUs one by one in
    # jax.lax.map; both must give the same samples for the same keys.
    from bnnc.runtime.jax.predict import _mapped_samples, _rng_streams

    model = _Net()
    keys = [stream() for stream in _rng_streams(model)]
    graphdef, state = nnx.split(model)
    one_by_one = _mapped_samples(graphdef, state, keys, (X,), 6, False)
    side_by_side = _mapped_samples(graphdef, state, keys, (X,), 6, True)
    np.testing.assert_allclose(
        np.asarray(side_by_side), np.asarray(one_by_one), rtol=1e-6, atol=1e-6
    )
    assert len({float(sample.sum()) for sample in np.asarray(one_by_one)}) == 6
