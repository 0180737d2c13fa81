"""PyTorch contenders: bnnc's model, its ``torch.nn`` twin, bayesian-torch's, the floor.

- :func:`bnnc_model`: the spec built by ``bnnc.build`` (public API only).
- :func:`deterministic_model`: the same architecture in plain ``torch.nn``.
  The LSTM is written out step by step (embedding, one input projection, one
  recurrent matmul per step, read-out): the maths of bnnc's LSTM layer, with
  the same parameter count. ``torch.nn.LSTM`` would add a second bias and
  use a fused kernel, which would compare a kernel rather than Bayesian
  overhead.
- :func:`bayesian_torch_model`: the same architecture from bayesian-torch's
  reparameterisation layers, matching bnnc's Bayesian/fixed choices;
  ``None`` when bayesian-torch is not installed.
- :class:`Floor`: the sampling floor. A deterministic twin whose Bayesian
  weight tensors are replaced, on every call, by one draw
  ``mu + softplus(rho) * randn_like(rho)`` per tensor (``mu`` being the twin's
  own parameter, ``rho`` an extra same-shaped parameter), fed to the twin's
  functional forward. Its optimiser updates ``mu`` and ``rho``.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import bnnc
from bench.workloads import DROPOUT, EMBED, HIDDEN, SEQ_CLASSES, VOCAB, Workload

#: Weight of the (normalised) KL term in bnnc's ELBO and of bayesian-torch's
#: KL; it changes no timing.
KL_WEIGHT = 1e-3

#: Prior std of the bayesian-torch layers (their ``prior_variance`` is used as
#: a standard deviation).
BT_PRIOR_STD = 0.1


def bnnc_model(workload: Workload) -> nn.Module:
    """The workload's spec built for torch with bnnc's public API."""
    return bnnc.build(workload.spec, network=workload.network, **workload.params)


def data_loss(workload: Workload, outputs: torch.Tensor, labels: torch.Tensor):
    """Cross-entropy of logits, or NLL of log-probabilities, per the workload."""
    if workload.loss == "ce":
        return F.cross_entropy(outputs, labels)
    return F.nll_loss(outputs, labels)


# -- deterministic twins -----------------------------------------------------


class DetMLP(nn.Module):
    """784-400-400-10 with ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc2 = nn.Linear(400, 400)
        self.fc3 = nn.Linear(400, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def functional(self, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the weights ``w`` (named as parameters)."""
        h = F.relu(F.linear(x, w["fc1.weight"], w["fc1.bias"]))
        h = F.relu(F.linear(h, w["fc2.weight"], w["fc2.bias"]))
        return F.linear(h, w["fc3.weight"], w["fc3.bias"])


class DetCNN(nn.Module):
    """examples/digits.bnn: two conv blocks and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(torch.flatten(x, 1))

    def functional(self, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the weights ``w`` (named as parameters)."""
        x = F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=1)
        x = F.max_pool2d(F.relu(x), 2)
        x = F.conv2d(x, w["conv2.weight"], w["conv2.bias"], padding=1)
        x = F.max_pool2d(F.relu(x), 2)
        return F.linear(torch.flatten(x, 1), w["head.weight"], w["head.bias"])


def lstm_loop(
    gates_x: torch.Tensor, w_h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the recurrence over precomputed input gates ``[B, T, 4H]``.

    ``w_h`` is the recurrent weight ``[4H, H]``; gates in bnnc's order
    (forget, input, candidate, output). Returns the last ``(h, c)``.
    """
    batch, _, four_h = gates_x.shape
    h = gates_x.new_zeros(batch, four_h // 4)
    c = gates_x.new_zeros(batch, four_h // 4)
    w_h_t = w_h.t()
    # unbind as bnnc's recurrence does (one stack in backward, not a
    # zero-filled [B, T, 4H] gradient per step)
    for step_gates in gates_x.unbind(1):
        gates = torch.addmm(step_gates, h, w_h_t)
        forget, inp, candidate, out = gates.chunk(4, dim=-1)
        c = c * torch.sigmoid(forget) + torch.tanh(candidate) * torch.sigmoid(inp)
        h = torch.sigmoid(out) * torch.tanh(c)
    return h, c


class DetSequence(nn.Module):
    """examples/sequence.bnn: embedding, LSTM, read-out, tanh, dropout, head."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED, padding_idx=0)
        self.gates_x = nn.Linear(EMBED, 4 * HIDDEN)
        self.gates_h = nn.Linear(HIDDEN, 4 * HIDDEN, bias=False)
        self.readout = nn.Linear(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, SEQ_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = lstm_loop(self.gates_x(self.embedding(tokens)), self.gates_h.weight)
        y = F.dropout(torch.tanh(self.readout(h)), DROPOUT, self.training)
        return F.log_softmax(self.head(y), dim=-1)

    def functional(
        self, w: dict[str, torch.Tensor], tokens: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` with the weights ``w`` (named as parameters)."""
        embedded = F.embedding(tokens, w["embedding.weight"], padding_idx=0)
        gates_x = F.linear(embedded, w["gates_x.weight"], w["gates_x.bias"])
        h, _ = lstm_loop(gates_x, w["gates_h.weight"])
        y = torch.tanh(F.linear(h, w["readout.weight"], w["readout.bias"]))
        y = F.dropout(y, DROPOUT, self.training)
        return F.log_softmax(F.linear(y, w["head.weight"], w["head.bias"]), dim=-1)


def deterministic_model(workload: Workload) -> nn.Module:
    """The workload's architecture in plain ``torch.nn``."""
    return {"mlp": DetMLP, "cnn": DetCNN, "lstm": DetSequence}[workload.name]()


def bayesian_names(workload: Workload, model: nn.Module) -> list[str]:
    """Parameter names of ``model`` (a twin) that are Bayesian in the spec."""
    return [
        name
        for name, _ in model.named_parameters()
        if workload.is_bayesian(name.split(".")[0])
    ]


# -- the sampling floor --------------------------------------------------------


class Floor(nn.Module):
    """A deterministic twin plus one reparameterised draw per Bayesian tensor.

    Parameters: the twin's own (``mu`` of each Bayesian tensor, and the fixed
    layers) and ``rho``, one same-shaped tensor per Bayesian tensor. The drawn
    weights go through the twin's ``functional`` forward (the same ``F.*``
    calls as its modules make), which costs nothing beyond the maths, unlike
    ``torch.func.functional_call`` (about 0.1-0.2 ms per call here).
    """

    def __init__(self, twin: nn.Module, names: list[str], rho_init: float) -> None:
        super().__init__()
        self.twin = twin
        self.names = list(names)
        parameters = dict(twin.named_parameters())
        self.rho = nn.ParameterList(
            nn.Parameter(torch.full_like(parameters[name], rho_init))
            for name in self.names
        )
        self.fixed = [name for name in parameters if name not in self.names]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        mu = self.twin.get_parameter
        weights = {name: mu(name) for name in self.fixed}
        for name, rho in zip(self.names, self.rho, strict=True):
            weights[name] = mu(name) + F.softplus(rho) * torch.randn_like(rho)
        return self.twin.functional(weights, *inputs)


def floor_model(workload: Workload) -> Floor:
    """A fresh deterministic twin wrapped as :class:`Floor`."""
    twin = deterministic_model(workload)
    return Floor(twin, bayesian_names(workload, twin), workload.rho_init)


# -- bayesian-torch ----------------------------------------------------------


def bayesian_torch_available() -> bool:
    """Whether bayesian-torch is importable."""
    return importlib.util.find_spec("bayesian_torch") is not None


@functools.cache
def _bt() -> dict[str, Any]:
    """bayesian-torch's layers and KL helper, plus a Bayesian embedding."""
    from bayesian_torch.layers import (
        Conv2dReparameterization,
        LinearReparameterization,
        LSTMReparameterization,
    )
    from bayesian_torch.layers.base_variational_layer import BaseVariationalLayer_
    from bayesian_torch.models.dnn_to_bnn import get_kl_loss

    class EmbeddingReparameterization(BaseVariationalLayer_):
        """A Bayesian embedding in bayesian-torch's style (it ships none).

        Same parameterisation as its ``LinearReparameterization``: ``mu``,
        ``rho``, an ``eps`` buffer refilled on every call, ``log1p(exp(rho))``
        and its ``kl_div``.
        """

        def __init__(self, num, dim, padding_idx, prior_std, rho_init):
            super().__init__()
            self.padding_idx = padding_idx
            self.mu_weight = nn.Parameter(torch.empty(num, dim).normal_(0.0, 0.1))
            self.rho_weight = nn.Parameter(torch.empty(num, dim).normal_(rho_init, 0.1))
            self.register_buffer("eps_weight", torch.empty(num, dim), persistent=False)
            self.register_buffer(
                "prior_weight_mu", torch.zeros(num, dim), persistent=False
            )
            self.register_buffer(
                "prior_weight_sigma",
                torch.full((num, dim), prior_std),
                persistent=False,
            )

        def kl_loss(self):
            sigma = torch.log1p(torch.exp(self.rho_weight))
            return self.kl_div(
                self.mu_weight, sigma, self.prior_weight_mu, self.prior_weight_sigma
            )

        def forward(self, tokens, return_kl=True):
            if self.dnn_to_bnn_flag:
                return_kl = False
            sigma = torch.log1p(torch.exp(self.rho_weight))
            weight = self.mu_weight + sigma * self.eps_weight.data.normal_()
            out = F.embedding(tokens, weight, self.padding_idx)
            if return_kl:
                return out, self.kl_div(
                    self.mu_weight, sigma, self.prior_weight_mu, self.prior_weight_sigma
                )
            return out

    return {
        "Linear": LinearReparameterization,
        "Conv2d": Conv2dReparameterization,
        "LSTM": LSTMReparameterization,
        "Embedding": EmbeddingReparameterization,
        "Base": BaseVariationalLayer_,
        "get_kl_loss": get_kl_loss,
    }


class BTMLP(nn.Module):
    """The MLP from ``LinearReparameterization`` layers."""

    def __init__(self, rho_init: float) -> None:
        super().__init__()
        bt = _bt()
        kw = _bt_kwargs(rho_init)
        self.fc1 = bt["Linear"](784, 400, **kw)
        self.fc2 = bt["Linear"](400, 400, **kw)
        self.fc3 = bt["Linear"](400, 10, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BTCNN(nn.Module):
    """The digits CNN: fixed ``nn.Conv2d``, then reparameterisation layers."""

    def __init__(self, rho_init: float) -> None:
        super().__init__()
        bt = _bt()
        kw = _bt_kwargs(rho_init)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = bt["Conv2d"](16, 32, 3, padding=1, **kw)
        self.head = bt["Linear"](128, 10, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(torch.flatten(x, 1))


class BTSequence(nn.Module):
    """The sequence classifier: Bayesian embedding, ``LSTMReparameterization``,
    read-out and head.

    bayesian-torch's LSTM draws its weights again at every time step and has
    two biases; that is its design, kept as is.
    """

    def __init__(self, rho_init: float) -> None:
        super().__init__()
        bt = _bt()
        kw = _bt_kwargs(rho_init)
        self.embedding = bt["Embedding"](VOCAB, EMBED, 0, BT_PRIOR_STD, rho_init)
        self.lstm = bt["LSTM"](EMBED, HIDDEN, **kw)
        self.readout = bt["Linear"](HIDDEN, HIDDEN, **kw)
        self.head = bt["Linear"](HIDDEN, SEQ_CLASSES, **kw)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.lstm(self.embedding(tokens))
        y = torch.tanh(self.readout(sequence[:, -1]))
        y = F.dropout(y, DROPOUT, self.training)
        return F.log_softmax(self.head(y), dim=-1)


def _bt_kwargs(rho_init: float) -> dict[str, float]:
    return {
        "prior_mean": 0.0,
        "prior_variance": BT_PRIOR_STD,
        "posterior_mu_init": 0.0,
        "posterior_rho_init": rho_init,
    }


def bayesian_torch_model(workload: Workload) -> nn.Module | None:
    """The workload from bayesian-torch's layers, or None without bayesian-torch.

    Top-level layers return only their output (bayesian-torch's
    ``dnn_to_bnn_flag``, as its ``dnn_to_bnn`` sets it); the KL is taken with
    its ``get_kl_loss``. The LSTM's inner ``ih``/``hh`` layers keep the flag
    off, because ``LSTMReparameterization`` unpacks their ``(out, kl)``.
    """
    if not bayesian_torch_available():
        return None
    cls = {"mlp": BTMLP, "cnn": BTCNN, "lstm": BTSequence}[workload.name]
    model = cls(workload.rho_init)
    for child in model.children():
        if isinstance(child, _bt()["Base"]):
            child.dnn_to_bnn_flag = True
    return model


def bayesian_torch_kl() -> Any:
    """bayesian-torch's ``get_kl_loss(model)``."""
    return _bt()["get_kl_loss"]
