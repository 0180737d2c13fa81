"""Embedding + LSTM + linear read-out: Bayesian :class:`LSTM` and :class:`FixedLSTM`."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .base import DEFAULT_RNGS, BayesianModule, FixedModule, init_like_torch, uniform
from .embedding import Embedding, FixedEmbedding

__all__ = ["LSTM", "FixedLSTM", "lstm_recurrence"]

#: Gate tensors in the order their rows are stacked: forget, input, candidate,
#: output.
_GATES = ("f", "i", "c", "o")

LSTMState = tuple[jax.Array, jax.Array]


@jax.jit
def lstm_recurrence(
    inputs: jax.Array,
    init_states: LSTMState | None,
    gate_weights: jax.Array,
    gate_bias: jax.Array,
    wv: jax.Array,
    bv: jax.Array,
) -> tuple[jax.Array, LSTMState]:
    """Run the LSTM over embedded ``inputs`` and read out the last hidden state.

    The maths of the reference and of the torch runtime, with the four gates
    stacked: for ``z_t = [x_t, h_{t-1}]``, ``f, i, o = sigmoid(z_t W_{f,i,o}^T +
    b)``, ``g = tanh(z_t W_c^T + b_c)``, ``c_t = f c_{t-1} + i g``,
    ``h_t = o tanh(c_t)``, and ``y = h_T W_v^T + b_v``. The input projection of
    every step is computed at once; the steps run in ``jax.lax.scan`` (one
    matmul each), so compile time does not grow with the sequence length.
    Jitted (cached per shape) for eager use.

    Args:
        inputs: Embedded sequence ``[B, T, E]``.
        init_states: ``(h_0, c_0)``, each ``[B, H]``; zeros when None.
        gate_weights: ``[wf; wi; wc; wo]`` stacked, ``[4H, E + H]``.
        gate_bias: ``[bf; bi; bc; bo]`` stacked, ``[4H]``.
        wv: Read-out weights ``[output_size, H]``.
        bv: Read-out bias ``[output_size]``.

    Returns:
        ``(y [B, output_size], (h_T, c_T))``.
    """
    batch_size, _, input_dim = inputs.shape
    hidden_size = gate_weights.shape[0] // 4
    if init_states is None:
        h_0 = jnp.zeros((batch_size, hidden_size), inputs.dtype)
        c_0 = jnp.zeros((batch_size, hidden_size), inputs.dtype)
    else:
        h_0, c_0 = (jnp.asarray(s) for s in init_states)
    # The bias is added inside the step, in the same order as before
    # ((x W + b) + h W), not to all the input gates at once: XLA fuses a
    # sampled bias's normal transform into whichever op adds it, and in the
    # [T, B, 4H] add-and-transpose it ran once per element, through a select
    # over the four stacked gate biases (an MC prediction of the sequence
    # example took about 1.6x as long). Each gate's slice of the step adds
    # one bias, vectorised.
    input_gates = inputs @ gate_weights[:, :input_dim].T
    recurrent_weights_t = gate_weights[:, input_dim:].T

    def step(carry: LSTMState, gates_in: jax.Array) -> tuple[LSTMState, None]:
        h_t, c_t = carry
        gates = (gates_in + gate_bias) + h_t @ recurrent_weights_t
        forget, inp, candidate, out = jnp.split(gates, 4, axis=-1)
        c_t = c_t * jax.nn.sigmoid(forget) + jnp.tanh(candidate) * jax.nn.sigmoid(inp)
        h_t = jax.nn.sigmoid(out) * jnp.tanh(c_t)
        return (h_t, c_t), None

    (h_t, c_t), _ = jax.lax.scan(step, (h_0, c_0), jnp.swapaxes(input_gates, 0, 1))
    return h_t @ wv.T + bv, (h_t, c_t)


@jax.jit
def _stacked_recurrence(
    embedded: jax.Array,
    init_states: LSTMState | None,
    gate_weights: tuple[jax.Array, ...],
    gate_biases: tuple[jax.Array, ...],
    wv: jax.Array,
    bv: jax.Array,
) -> tuple[jax.Array, LSTMState]:
    """Stack the per-gate tensors and run :func:`lstm_recurrence` (one kernel)."""
    return lstm_recurrence(
        embedded,
        init_states,
        jnp.concatenate(gate_weights),
        jnp.concatenate(gate_biases),
        wv,
        bv,
    )


def _lstm_forward(
    module: LSTM | FixedLSTM,
    inputs: jax.Array,
    init_states: LSTMState | None,
) -> tuple[jax.Array, LSTMState]:
    """Embed token ids ``[B, T, 1]`` or ``[B, T]`` and run :func:`lstm_recurrence`."""
    inputs = jnp.asarray(inputs)
    if inputs.ndim == 3:
        inputs = inputs[..., 0]
    return _stacked_recurrence(
        module.embedding(inputs),
        init_states,
        tuple(module._current(f"w{g}") for g in _GATES),
        tuple(module._current(f"b{g}") for g in _GATES),
        module._current("wv"),
        module._current("bv"),
    )


class LSTM(BayesianModule):
    """Bayesian LSTM classifier/regressor over token ids, as in the reference.

    Submodule ``embedding`` (a Bayesian :class:`Embedding`); random gate tensors
    ``wf, wi, wc, wo`` ``[H, E + H]`` and ``bf, bi, bc, bo`` ``[H]``; read-out
    ``wv`` ``[output_size, H]`` and ``bv`` ``[output_size]``; each with its
    ``<name>_distribution``. As in the reference, :meth:`kl_cost` covers the
    LSTM's own tensors; the embedding reports its own cost (the KL loss visits
    both), while :meth:`freeze`/:meth:`unfreeze` also act on the embedding.
    """

    def __init__(
        self,
        num_embeddings: int,
        embeddings_dim: int,
        hidden_size: int,
        output_size: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        rngs: nnx.Rngs = DEFAULT_RNGS,
        *,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        **kwargs: Any,
    ) -> None:
        """Create the layer and draw initial weights.

        Args:
            num_embeddings: Size of the vocabulary.
            embeddings_dim: Size of each token vector (E).
            hidden_size: Size of the hidden and cell states (H).
            output_size: Size of the read-out.
            padding_idx: Token whose embedding is zero.
            max_norm: Largest norm of an embedding vector, or None.
            norm_type: The p of the p-norm used with ``max_norm``.
            scale_grad_by_freq: Scale embedding gradients by token frequency.
            rngs: Random streams for initialisation and sampling (shared with
                the embedding).
            mu_prior: Prior mean of every distribution (embedding included).
            std_prior: Prior standard deviation of every distribution.
            mu_init: Initial posterior mean of every distribution.
            rho_init: Initial posterior rho of every distribution.
            **kwargs: Passed to ``nnx.Module``.
        """
        super().__init__(**kwargs)
        self.num_embeddings = num_embeddings
        self.embeddings_dim = embeddings_dim
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.rngs = rngs
        priors = {
            "mu_prior": mu_prior,
            "std_prior": std_prior,
            "mu_init": mu_init,
            "rho_init": rho_init,
        }
        self.embedding = Embedding(
            num_embeddings=num_embeddings,
            embeddings_dim=embeddings_dim,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            rngs=rngs,
            **priors,
        )
        gate_shape = (hidden_size, embeddings_dim + hidden_size)
        for gate in _GATES:
            self._register_random(f"w{gate}", None, gate_shape, rngs=rngs, **priors)
            self._register_random(f"b{gate}", None, (hidden_size,), rngs=rngs, **priors)
        self._register_random(
            "wv", None, (output_size, hidden_size), rngs=rngs, **priors
        )
        self._register_random("bv", None, (output_size,), rngs=rngs, **priors)

    def __call__(
        self, inputs: jax.Array, init_states: LSTMState | None = None
    ) -> tuple[jax.Array, LSTMState]:
        """Sample (unless frozen) and run over token ids.

        Args:
            inputs: Token ids ``[B, T, 1]`` (as in the reference) or ``[B, T]``.
            init_states: ``(h_0, c_0)``, each ``[B, H]``; zeros when None.

        Returns:
            ``(y [B, output_size], (h_T, c_T))``.
        """
        self._resample()
        return _lstm_forward(self, inputs, init_states)


class FixedLSTM(FixedModule):
    """Deterministic twin of :class:`LSTM` with a :class:`FixedEmbedding`.

    Gate tensors are initialised uniformly in ``[-1/sqrt(H), 1/sqrt(H)]`` as in
    ``torch.nn.LSTM``; the read-out ``wv``, ``bv`` like ``torch.nn.Linear``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embeddings_dim: int,
        hidden_size: int,
        output_size: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        rngs: nnx.Rngs = DEFAULT_RNGS,
    ) -> None:
        """Create the layer (arguments as in :class:`LSTM`)."""
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embeddings_dim = embeddings_dim
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.rngs = rngs
        self.embedding = FixedEmbedding(
            num_embeddings,
            embeddings_dim,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            rngs=rngs,
        )
        bound = 1.0 / math.sqrt(hidden_size)
        gate_shape = (hidden_size, embeddings_dim + hidden_size)
        for gate in _GATES:
            for name, shape in ((f"w{gate}", gate_shape), (f"b{gate}", (hidden_size,))):
                setattr(self, name, nnx.Param(uniform(rngs, shape, bound)))
        wv, bv = init_like_torch((output_size, hidden_size), True, rngs)
        self.wv = nnx.Param(wv)
        self.bv = nnx.Param(bv)

    def __call__(
        self, inputs: jax.Array, init_states: LSTMState | None = None
    ) -> tuple[jax.Array, LSTMState]:
        """Run over token ids ``[B, T, 1]`` or ``[B, T]`` (as :meth:`LSTM.__call__`)."""
        return _lstm_forward(self, inputs, init_states)
