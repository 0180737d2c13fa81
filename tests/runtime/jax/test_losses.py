"""KLDivergenceLoss and ELBOLoss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnc.runtime.jax import (
    LSTM,
    DistributionModule,
    ELBOLoss,
    FixedLinear,
    KLDivergenceLoss,
    Linear,
    freeze_all,
    total_kl,
)


class _TwoLayer(nnx.Module):
    """Linear(4, 3) -> relu -> Linear(3, 1): 15 + 4 = 19 random values."""

    def __init__(self, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.first = Linear(4, 3, rngs=rngs, rho_init=-2.0)
        self.second = Linear(3, 1, rngs=rngs, rho_init=-2.0)
        self.calls = 0

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls += 1
        return self.second(jax.nn.relu(self.first(x)))


def _layer_kls(
    model: _TwoLayer, estimator: str = "closed_form"
) -> tuple[jax.Array, jax.Array]:
    return model.first.kl_cost(estimator)[0], model.second.kl_cost(estimator)[0]


def _mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(outputs - targets))


# numpy data: JAX compiles nothing to build it.
X = np.linspace(-1.0, 1.0, 20, dtype=np.float32).reshape(5, 4)
TARGETS = np.linspace(0.0, 1.0, 5, dtype=np.float32).reshape(5, 1)


def test_kl_loss_divides_by_the_total_parameter_count() -> None:
    model = _TwoLayer()
    model(X)
    first, second = _layer_kls(model)
    loss = KLDivergenceLoss()(model)
    assert loss.shape == ()
    assert float(loss) == pytest.approx(float(first + second) / 19, rel=1e-6)
    # The reference divided by the last layer's count (4): a different number.
    assert float(loss) != pytest.approx(float(first + second) / 4, rel=1e-3)


def test_kl_loss_weight_and_sum_reduction() -> None:
    model = _TwoLayer()
    total = float(sum(_layer_kls(model)))
    weighted = KLDivergenceLoss(weight=0.25)(model)
    assert float(weighted) == pytest.approx(0.25 * total / 19, rel=1e-6)
    assert float(KLDivergenceLoss(reduction="sum")(model)) == pytest.approx(
        total, rel=1e-6
    )
    with pytest.raises(ValueError, match="reduction"):
        KLDivergenceLoss(reduction="max")  # type: ignore[arg-type]


def test_kl_loss_ignores_fixed_layers_and_counts_lstm_embedding() -> None:
    model = nnx.Sequential(FixedLinear(4, 3, rngs=nnx.Rngs(0)), Linear(3, 2))
    assert float(KLDivergenceLoss()(model)) == pytest.approx(
        float(model.layers[1].kl_cost()[0]) / 8, rel=1e-6
    )
    lstm = LSTM(10, 4, 5, 3, rngs=nnx.Rngs(0))
    lstm_kl, lstm_count = lstm.kl_cost()
    emb_kl, emb_count = lstm.embedding.kl_cost()
    assert lstm_count + emb_count == 218 + 40
    assert float(KLDivergenceLoss()(lstm)) == pytest.approx(
        float(lstm_kl + emb_kl) / 258, rel=1e-6
    )


def test_kl_loss_without_bayesian_layers_is_zero() -> None:
    loss = KLDivergenceLoss()(FixedLinear(4, 3, rngs=nnx.Rngs(0)))
    assert float(loss) == 0.0 and loss.shape == () and loss.dtype == jnp.float32


def test_elbo_call_keeps_reference_signature() -> None:
    model = _TwoLayer()
    outputs = model(X)
    elbo = ELBOLoss(_mse, num_samples=3, kl_weight=0.5)
    expected = _mse(outputs, TARGETS) + 0.5 * sum(_layer_kls(model)) / 19
    value = elbo(outputs, TARGETS, model)
    assert float(value) == pytest.approx(float(expected), rel=1e-6)
    assert model.calls == 1  # __call__ scores the given outputs only


def test_elbo_monte_carlo_draws_num_samples_forward_passes() -> None:
    model = _TwoLayer()
    elbo = ELBOLoss(_mse, num_samples=4, kl_weight=0.1)
    loss = elbo.monte_carlo(model, X, TARGETS)
    assert model.calls == 4

    replay = _TwoLayer()  # same seed: the same four draws, by hand
    per_sample = []
    for _ in range(4):
        outputs = replay(X)
        kl = sum(_layer_kls(replay)) / 19
        per_sample.append(float(_mse(outputs, TARGETS) + 0.1 * kl))
    assert float(loss) == pytest.approx(np.mean(per_sample), rel=1e-5)
    assert len({round(v, 6) for v in per_sample}) == 4  # four distinct draws

    grads = nnx.grad(lambda m: elbo.monte_carlo(m, X, TARGETS))(_TwoLayer())
    flat = nnx.to_flat_state(grads)
    assert len(flat) == 8  # mu and rho of four distributions, nothing else
    for path, value in flat:
        assert path[-1] in ("mu", "rho")
        assert np.any(np.asarray(value[...]) != 0), path


def test_elbo_monte_carlo_with_several_inputs() -> None:
    class _Pair(nnx.Module):
        def __init__(self) -> None:
            self.layer = Linear(2, 1, rngs=nnx.Rngs(0))

        def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
            return self.layer(a + b)

    elbo = ELBOLoss(_mse, num_samples=2)
    loss = elbo.monte_carlo(
        _Pair(), (np.ones((3, 2), np.float32),) * 2, np.zeros((3, 1), np.float32)
    )
    assert loss.shape == () and np.isfinite(loss)
    with pytest.raises(ValueError, match="num_samples"):
        ELBOLoss(_mse, num_samples=0)


# -- KL estimators --------------------------------------------------------------


def _closed_form_total(model: nnx.Module) -> float:
    return float(
        sum(
            dist.kl_divergence()
            for layer in (model.first, model.second)
            for _, dist, _ in layer.random_tensors()
        )
    )


def test_closed_form_is_the_default_and_sample_is_the_reference_estimate() -> None:
    model = _TwoLayer()
    model(X)
    closed = _closed_form_total(model)
    kl, count = total_kl(model)
    assert count == 19 and float(kl) == pytest.approx(closed, rel=1e-6)
    assert float(total_kl(model, "closed_form")[0]) == float(kl)
    sample = float(sum(_layer_kls(model, "sample")))
    assert float(total_kl(model, estimator="sample")[0]) == pytest.approx(
        sample, rel=1e-6
    )
    assert sample != pytest.approx(closed, rel=1e-3)
    assert float(KLDivergenceLoss()(model)) == pytest.approx(closed / 19, rel=1e-6)
    assert float(KLDivergenceLoss(estimator="sample")(model)) == pytest.approx(
        sample / 19, rel=1e-6
    )
    outputs = model(X)
    for estimator, expected_kl in (("closed_form", closed), ("sample", None)):
        elbo = ELBOLoss(_mse, kl_weight=0.5, kl_estimator=estimator)
        assert elbo.kl_estimator == estimator
        assert elbo.kl_loss.estimator == estimator
        if expected_kl is None:  # the samples of the call just made
            expected_kl = float(sum(_layer_kls(model, "sample")))
        expected = float(_mse(outputs, TARGETS)) + 0.5 * expected_kl / 19
        assert float(elbo(outputs, TARGETS, model)) == pytest.approx(expected, rel=1e-6)


def test_closed_form_does_not_depend_on_the_samples() -> None:
    model = _TwoLayer()
    before = float(total_kl(model)[0])
    sample_before = float(total_kl(model, "sample")[0])
    model(X)  # new samples
    assert float(total_kl(model)[0]) == before
    assert float(total_kl(model, "sample")[0]) != sample_before


def test_frozen_modules_get_the_closed_form_from_mu_and_rho() -> None:
    model = _TwoLayer()
    model(X)
    expected = _closed_form_total(model)
    freeze_all(model)
    kl, count = total_kl(model)
    assert count == 19 and float(kl) == pytest.approx(expected, rel=1e-6)
    grads = nnx.grad(lambda m: total_kl(m)[0], argnums=nnx.DiffState(0, nnx.Param))(
        model
    )
    flat = nnx.to_flat_state(grads)
    assert len(flat) == 8
    for path, value in flat:  # gradients reach mu and rho although frozen
        assert path[-1] in ("mu", "rho")
        assert np.all(np.isfinite(value[...])) and np.any(value[...] != 0), path


class _NoClosedForm(DistributionModule):
    """A distribution with a one-sample estimate only (log_prob = sum of x)."""

    def __init__(self) -> None:
        self.rngs = nnx.Rngs(0)

    def sample(self, rngs: nnx.Rngs | None = None) -> jax.Array:
        return jax.random.normal((rngs or self.rngs).sample(), (3,))

    def log_prob(self, x: jax.Array | None = None) -> jax.Array:
        return jnp.sum(self.sample() if x is None else x)

    @property
    def num_params(self) -> int:
        return 3


def test_distributions_without_closed_form_fall_back_to_the_sample_estimate() -> None:
    layer = Linear(3, 1, bias_distribution=_NoClosedForm(), rngs=nnx.Rngs(0))
    layer(np.ones((2, 3), np.float32))
    weights_kl = float(layer.weights_distribution.kl_divergence())
    bias_sample = float(jnp.sum(layer.bias[...]))
    kl, count = layer.kl_cost()
    assert count == 6
    assert float(kl) == pytest.approx(weights_kl + bias_sample, rel=1e-6)
    sample_kl, _ = layer.kl_cost("sample")
    weights_sample = float(layer.weights_distribution.log_prob(layer.weights[...]))
    assert float(sample_kl) == pytest.approx(weights_sample + bias_sample, rel=1e-6)


def test_unknown_estimators_are_rejected() -> None:
    with pytest.raises(ValueError, match="estimator must be"):
        KLDivergenceLoss(estimator="exact")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kl_estimator must be"):
        ELBOLoss(_mse, kl_estimator="mc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="estimator must be"):
        total_kl(_TwoLayer(), "analytic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="estimator must be"):
        FixedLinear(2, 2, rngs=nnx.Rngs(0)).kl_cost("analytic")  # type: ignore[arg-type]
