"""Saving and loading compiled models, ``frozen`` flags included.

torch: ``state_dict()`` holds every Bayesian layer's ``frozen`` flag (as
``<layer>._extra_state``), so ``load_state_dict`` into a fresh model restores a
frozen model frozen, with bitwise identical outputs; ``save_model`` /
``load_model`` do the same through a file read with ``weights_only=True``.
Whole modules pickle (``torch.save(model)``) after a training step.

JAX: ``nnx.state`` / ``nnx.update`` restore every variable but not the flags
(plain Python attributes); ``model_state`` / ``restore_model_state`` and
``save_model`` / ``load_model`` carry the flags and the random streams too.
"""

from __future__ import annotations

import copy
import io
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import bnnc  # noqa: E402
import bnnc.runtime.jax as bj  # noqa: E402
import bnnc.runtime.torch as bt  # noqa: E402
from bnnc.runtime.transfer import frozen_flags, state_names  # noqa: E402

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits.bnn"
IMAGES = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype("f4")
LABELS = np.array([0, 3, 5, 9])
BAYESIAN = {"conv2", "head"}  # conv1 is a fixed layer


@pytest.fixture(autouse=True)
def _setup() -> Iterator[None]:
    """Seed torch on one thread; compile JAX kernels with few optimisations."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    flag = "jax_disable_most_optimizations"
    previous = bool(jax.config.values.get(flag, False))
    jax.config.update(flag, True)
    yield
    jax.config.update(flag, previous)
    torch.set_num_threads(threads)


_CLASSES: dict[str, type] = {}


def _digits_class(backend: str) -> type:
    """The compiled digits model's class, built once per backend.

    ``bnnc.build`` executes the generated code anew on every call and
    re-registers its module under the same name, so a model of an earlier build
    no longer pickles (its class is not the registered one), and ``nnx.jit``
    retraces for every build. The tests instantiate one class instead, rebuilt
    only if another build replaced the registered module.
    """
    cls = _CLASSES.get(backend)
    module = sys.modules.get(cls.__module__) if cls else None
    if cls is None or getattr(module, cls.__name__, None) is not cls:
        rngs = {"rngs": nnx.Rngs(0)} if backend == "jax" else {}
        cls = _CLASSES[backend] = type(bnnc.build(DIGITS, backend=backend, **rngs))
    return cls


def _bayesian_flags(model: Any) -> dict[str, bool]:
    flags = frozen_flags(model)
    return {name: flag for name, flag in flags.items() if name in BAYESIAN}


# -- torch ------------------------------------------------------------------------


def _torch_model(seed: int) -> torch.nn.Module:
    model_class = _digits_class("torch")
    torch.manual_seed(seed)
    return model_class()


def _torch_trained(seed: int = 0) -> torch.nn.Module:
    """A digits model after one training step (samples are non-leaf tensors)."""
    model = _torch_model(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    elbo = bt.ELBOLoss(torch.nn.functional.cross_entropy)
    x, y = torch.from_numpy(IMAGES), torch.from_numpy(LABELS)
    loss = elbo.monte_carlo(model, x, y)
    loss.backward()
    optimizer.step()
    model(x)  # the current samples belong to an autograd graph
    assert model.head.weights.grad_fn is not None
    return model


def _torch_out(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(IMAGES))


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]), key


def test_torch_state_dict_holds_the_frozen_flags() -> None:
    model = _torch_model(0)
    model.head.freeze()
    state = model.state_dict()
    assert {k for k in state if k.endswith("_extra_state")} == {
        "conv2._extra_state",
        "head._extra_state",
    }  # not conv1: a fixed layer is never frozen
    assert state["head._extra_state"].dtype == torch.bool
    assert bool(state["head._extra_state"]) and not bool(state["conv2._extra_state"])
    # Not a buffer: dtype casts and the torch <-> NNX transfer ignore it.
    assert not any("extra_state" in name for name in state_names(model))
    model.double()
    assert model.state_dict()["head._extra_state"].dtype == torch.bool


@pytest.mark.parametrize("frozen", [set(), {"head"}, BAYESIAN], ids=str)
def test_torch_state_dict_round_trip(frozen: set[str]) -> None:
    model = _torch_trained()
    for name in frozen:
        getattr(model, name).freeze()
    before = _torch_out(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    fresh = _torch_model(seed=1)
    fresh.load_state_dict(state)  # strict
    assert _bayesian_flags(fresh) == {name: name in frozen for name in BAYESIAN}
    _assert_same_state(fresh, model)
    if frozen == BAYESIAN:
        # Loaded frozen: bitwise the outputs of the saved model, on every call.
        assert torch.equal(_torch_out(fresh), before)
        assert torch.equal(_torch_out(fresh), before)
        assert not fresh.head.weights.requires_grad
    else:
        # Still sampling: calls differ, and equal the saved model's under a seed.
        assert not torch.equal(_torch_out(fresh), _torch_out(fresh))
        torch.manual_seed(5)
        expected = _torch_out(model)
        torch.manual_seed(5)
        assert torch.equal(_torch_out(fresh), expected)


def test_torch_loaded_frozen_samples_are_detached() -> None:
    source = _torch_trained()
    bt.freeze_all(source)
    target = _torch_trained(seed=3)  # its samples belong to an autograd graph
    target.load_state_dict(source.state_dict())
    assert target.head.frozen and target.conv2.frozen
    assert not target.head.weights.requires_grad
    assert torch.equal(_torch_out(target), _torch_out(source))


def test_torch_state_dict_without_flags_still_loads() -> None:
    """A state saved before the flags were stored: flags stay as they are."""
    source = _torch_model(0)
    bt.freeze_all(source)
    old_style = {
        k: v for k, v in source.state_dict().items() if not k.endswith("_extra_state")
    }
    unfrozen, frozen = _torch_model(1), _torch_model(2)
    bt.freeze_all(frozen)
    result = unfrozen.load_state_dict(old_style)  # strict
    assert not result.missing_keys and not result.unexpected_keys
    frozen.load_state_dict(old_style)
    assert not any(_bayesian_flags(unfrozen).values())
    assert all(_bayesian_flags(frozen).values())
    assert torch.equal(_torch_out(frozen), _torch_out(source))


def test_torch_save_model_and_load_model(tmp_path: Path) -> None:
    model = _torch_trained()
    bt.freeze_all(model)
    before = _torch_out(model)
    path = tmp_path / "digits.pt"
    bt.save_model(model, path)
    fresh = bt.load_model(_torch_model(1), path)
    assert all(_bayesian_flags(fresh).values())
    assert torch.equal(_torch_out(fresh), before)
    with pytest.raises(RuntimeError, match="size mismatch"):
        bt.load_model(_digits_class("torch")(width=8), path)


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "unfrozen"])
def test_torch_whole_module_pickles_after_a_training_step(freeze: bool) -> None:
    model = _torch_trained()
    if freeze:
        bt.freeze_all(model)
    before = _torch_out(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    clone = copy.deepcopy(model)
    for other in (loaded, clone):
        assert _bayesian_flags(other) == _bayesian_flags(model)
        _assert_same_state(other, model)
        if freeze:
            assert torch.equal(_torch_out(other), before)
        else:
            assert not torch.equal(_torch_out(other), _torch_out(other))


# -- JAX --------------------------------------------------------------------------


def _jax_model(seed: int) -> nnx.Module:
    return _digits_class("jax")(rngs=nnx.Rngs(seed))


def _jax_used(seed: int = 0) -> nnx.Module:
    """A digits model with moved posteriors, after a call (samples drawn)."""
    model = _jax_model(seed)
    for _, dist in nnx.iter_modules(model):
        if isinstance(dist, bj.GaussianDistribution):
            dist.mu.set_value(dist.mu[...] + 0.05)
            dist.rho.set_value(dist.rho[...] + 3.0)
    model(jnp.asarray(IMAGES))
    return model


def _jax_out(model: nnx.Module) -> np.ndarray:
    return np.asarray(model(jnp.asarray(IMAGES)))


def _jax_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
    state = bj.model_state(model)
    del state[bj.serialization.META_KEY]
    return state


def _assert_same_arrays(a: nnx.Module, b: nnx.Module) -> None:
    arrays_a, arrays_b = _jax_arrays(a), _jax_arrays(b)
    assert arrays_a.keys() == arrays_b.keys()
    for name, value in arrays_a.items():
        assert value.dtype == arrays_b[name].dtype, name
        np.testing.assert_array_equal(value, arrays_b[name], err_msg=name)


def test_jax_nnx_state_round_trip_restores_variables_but_not_flags() -> None:
    """The plain NNX route: every variable, but ``frozen`` is not state."""
    model = _jax_used()
    bj.freeze_all(model)
    before = _jax_out(model)
    pure = pickle.loads(pickle.dumps(nnx.to_pure_dict(nnx.state(model))))
    fresh = _jax_model(1)
    state = nnx.state(fresh)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(fresh, state)
    _assert_same_arrays(fresh, model)
    assert not any(_bayesian_flags(fresh).values())  # flags are not in the state
    bj.freeze_all(fresh)  # freezing keeps the restored samples
    np.testing.assert_array_equal(_jax_out(fresh), before)


@pytest.mark.parametrize("frozen", [set(), {"head"}, BAYESIAN], ids=str)
def test_jax_save_model_and_load_model(frozen: set[str]) -> None:
    model = _jax_used()
    for name in frozen:
        getattr(model, name).freeze()
    buffer = io.BytesIO()
    bj.save_model(model, buffer)
    buffer.seek(0)
    fresh = bj.load_model(_jax_model(1), buffer)
    assert _bayesian_flags(fresh) == {name: name in frozen for name in BAYESIAN}
    _assert_same_arrays(fresh, model)
    # Frozen or not, the loaded model continues the saved random streams: its
    # next calls are bitwise those of the saved model.
    outputs = [_jax_out(model) for _ in range(2)]
    loaded = [_jax_out(fresh) for _ in range(2)]
    for a, b in zip(outputs, loaded, strict=True):
        np.testing.assert_array_equal(a, b)
    sampling = frozen != BAYESIAN
    assert sampling != np.array_equal(loaded[0], loaded[1])


def test_jax_loaded_frozen_model_under_jit() -> None:
    model = _jax_used()
    bj.freeze_all(model)
    before = _jax_out(model)
    fresh = bj.restore_model_state(_jax_model(1), bj.model_state(model))
    jitted = nnx.jit(lambda m, x: m(x))
    np.testing.assert_array_equal(np.asarray(jitted(fresh, IMAGES)), before)
    np.testing.assert_array_equal(np.asarray(jitted(fresh, IMAGES)), before)


def test_jax_model_state_is_plain_numpy_and_pickles(tmp_path: Path) -> None:
    model = _jax_used()
    bj.freeze_all(model)
    state = bj.model_state(model)
    assert all(isinstance(value, np.ndarray) for value in state.values())
    keys = [name for name in state if name.endswith("rngs.default.key")]
    assert keys and all(state[name].dtype == np.uint32 for name in keys)
    copy_ = pickle.loads(pickle.dumps(state))
    fresh = bj.restore_model_state(_jax_model(1), copy_)
    np.testing.assert_array_equal(_jax_out(fresh), _jax_out(model))
    path = tmp_path / "digits.npz"
    bj.save_model(model, path)
    loaded = bj.load_model(_jax_model(2), path)
    np.testing.assert_array_equal(_jax_out(loaded), _jax_out(model))


def test_jax_load_model_rejects_another_architecture() -> None:
    buffer = io.BytesIO()
    bj.save_model(_jax_model(0), buffer)
    buffer.seek(0)
    other = _digits_class("jax")(width=8, rngs=nnx.Rngs(0))
    untouched = _jax_arrays(other)
    with pytest.raises(ValueError, match=r"mis-shaped conv1\.weights"):
        bj.load_model(other, buffer)
    for name, value in _jax_arrays(other).items():  # nothing was changed
        np.testing.assert_array_equal(value, untouched[name])
    with pytest.raises(ValueError, match="not a bnnc model state"):
        bj.restore_model_state(other, {"conv1.weights": np.zeros(3)})
