"""Embedding + LSTM + linear read-out: Bayesian :class:`LSTM` and :class:`FixedLSTM`."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .base import BayesianModule, FixedModule
from .embedding import Embedding, FixedEmbedding

__all__ = ["LSTM", "FixedLSTM", "lstm_recurrence"]

#: Gate tensors in the order their rows are stacked: forget, input, candidate,
#: output.
_GATES = ("f", "i", "c", "o")

LSTMState = tuple[torch.Tensor, torch.Tensor]


def lstm_recurrence(
    inputs: torch.Tensor,
    init_states: LSTMState | None,
    gate_weights: torch.Tensor,
    gate_bias: torch.Tensor,
    wv: torch.Tensor,
    bv: torch.Tensor,
) -> tuple[torch.Tensor, LSTMState]:
    """Run the LSTM over embedded ``inputs`` and read out the last hidden state.

    The maths of the reference, with the four gates stacked: for
    ``z_t = [x_t, h_{t-1}]``, ``f, i, o = sigmoid(z_t W_{f,i,o}^T + b)``,
    ``g = tanh(z_t W_c^T + b_c)``, ``c_t = f c_{t-1} + i g``,
    ``h_t = o tanh(c_t)``, and ``y = h_T W_v^T + b_v``. The input projection of
    every step is computed at once, so each step does one matmul.

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
        h_t = inputs.new_zeros(batch_size, hidden_size)
        c_t = inputs.new_zeros(batch_size, hidden_size)
    else:
        h_t, c_t = init_states
    input_gates = F.linear(inputs, gate_weights[:, :input_dim], gate_bias)
    recurrent_weights_t = gate_weights[:, input_dim:].t()
    # unbind, not input_gates[:, t]: the backward of T selects would
    # zero-fill a [B, T, 4H] gradient per step (O(T^2) memory traffic);
    # unbind's is one stack.
    for step_gates in input_gates.unbind(1):
        gates = torch.addmm(step_gates, h_t, recurrent_weights_t)
        forget, inp, candidate, out = gates.chunk(4, dim=-1)
        c_t = c_t * torch.sigmoid(forget) + torch.tanh(candidate) * torch.sigmoid(inp)
        h_t = torch.sigmoid(out) * torch.tanh(c_t)
    return F.linear(h_t, wv, bv), (h_t, c_t)


def _lstm_forward(
    module: LSTM | FixedLSTM,
    inputs: torch.Tensor,
    init_states: LSTMState | None,
    values: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, LSTMState]:
    """Embed token ids ``[B, T, 1]`` or ``[B, T]`` and run :func:`lstm_recurrence`.

    ``values`` maps the tensor names (``wf`` ... ``bv``) to this call's values.
    """
    if inputs.dim() == 3:
        inputs = inputs.squeeze(-1)
    embedded = module.embedding(inputs)
    gate_weights = torch.cat([values[f"w{g}"] for g in _GATES])
    gate_bias = torch.cat([values[f"b{g}"] for g in _GATES])
    return lstm_recurrence(
        embedded, init_states, gate_weights, gate_bias, values["wv"], values["bv"]
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

    #: Monte Carlo prediction loops over samples rather than vmapping: the
    #: per-step matmuls of S samples batch worse on CPU than they loop.
    vectorizes_well = False

    wf: torch.Tensor
    bf: torch.Tensor
    wi: torch.Tensor
    bi: torch.Tensor
    wc: torch.Tensor
    bc: torch.Tensor
    wo: torch.Tensor
    bo: torch.Tensor
    wv: torch.Tensor
    bv: torch.Tensor

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
            mu_prior: Prior mean of every distribution (embedding included).
            std_prior: Prior standard deviation of every distribution.
            mu_init: Initial posterior mean of every distribution.
            rho_init: Initial posterior rho of every distribution.
            **kwargs: Passed to ``torch.nn.Module``.
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
            **priors,
        )
        gate_shape = (hidden_size, embeddings_dim + hidden_size)
        for gate in _GATES:
            self._register_random(f"w{gate}", None, gate_shape, **priors)
            self._register_random(f"b{gate}", None, (hidden_size,), **priors)
        self._register_random("wv", None, (output_size, hidden_size), **priors)
        self._register_random("bv", None, (output_size,), **priors)

    def forward(
        self, inputs: torch.Tensor, init_states: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Sample (unless frozen) and run over token ids.

        Args:
            inputs: Token ids ``[B, T, 1]`` (as in the reference) or ``[B, T]``.
            init_states: ``(h_0, c_0)``, each ``[B, H]``; zeros when None.

        Returns:
            ``(y [B, output_size], (h_T, c_T))``.
        """
        return _lstm_forward(self, inputs, init_states, self._draw())


class FixedLSTM(FixedModule):
    """Deterministic twin of :class:`LSTM` with a :class:`FixedEmbedding`.

    Gate tensors are initialised uniformly in ``[-1/sqrt(H), 1/sqrt(H)]`` as in
    ``torch.nn.LSTM``; the read-out ``wv``, ``bv`` like ``torch.nn.Linear``.
    """

    wf: torch.nn.Parameter
    bf: torch.nn.Parameter
    wi: torch.nn.Parameter
    bi: torch.nn.Parameter
    wc: torch.nn.Parameter
    bc: torch.nn.Parameter
    wo: torch.nn.Parameter
    bo: torch.nn.Parameter
    wv: torch.nn.Parameter
    bv: torch.nn.Parameter

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
        self.embedding = FixedEmbedding(
            num_embeddings,
            embeddings_dim,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
        )
        bound = 1.0 / math.sqrt(hidden_size)
        gate_shape = (hidden_size, embeddings_dim + hidden_size)
        for gate in _GATES:
            for name, shape in ((f"w{gate}", gate_shape), (f"b{gate}", (hidden_size,))):
                value = torch.empty(shape).uniform_(-bound, bound)
                self.register_parameter(name, torch.nn.Parameter(value))
        self.wv = torch.nn.Parameter(torch.empty(output_size, hidden_size))
        self.bv = torch.nn.Parameter(torch.empty(output_size))
        self._init_like_torch(self.wv, self.bv)

    def forward(
        self, inputs: torch.Tensor, init_states: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Run over token ids ``[B, T, 1]`` or ``[B, T]`` (see :meth:`LSTM.forward`)."""
        values = {name: param for name, param in self.named_parameters(recurse=False)}
        return _lstm_forward(self, inputs, init_states, values)
