"""The three benchmark models and their synthetic data.

Each workload names a spec (compiled by bnnc), the network and constructor
arguments used, the shapes of its random inputs and labels, its data loss,
and which of its layers are Bayesian (the deterministic and bayesian-torch
twins in :mod:`bench.torch_models` / :mod:`bench.jax_models` follow it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Sizes of the sequence workload (examples/sequence.bnn's defaults).
VOCAB, EMBED, HIDDEN, SEQ_CLASSES, DROPOUT = 1000, 32, 64, 4, 0.1


@dataclass(frozen=True)
class Workload:
    """One model of the matrix.

    Attributes:
        name: Short name used on the command line (``mlp``, ``cnn``, ``lstm``).
        title: What the table shows.
        spec: The ``.bnn`` file bnnc compiles.
        network: The network of ``spec`` that is built.
        params: Constructor arguments of the built network.
        loss: ``"ce"``: the model returns logits (cross-entropy);
            ``"nll"``: it returns log-probabilities (negative log-likelihood).
        classes: Number of classes of the labels.
        fixed: Top-level layers that are deterministic in the spec; every
            other layer with weights is Bayesian.
        rho_init: Posterior rho the spec starts from (the floor uses it too).
    """

    name: str
    title: str
    spec: Path
    network: str
    params: dict[str, Any]
    loss: Literal["ce", "nll"]
    classes: int
    fixed: tuple[str, ...] = field(default=())
    rho_init: float = -6.0

    def is_bayesian(self, layer: str) -> bool:
        """Whether the top-level layer ``layer`` is Bayesian in the spec."""
        return layer not in self.fixed

    def inputs(
        self, batch: int, seq_len: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random inputs (float32 images/features or int64 token ids) and labels."""
        labels = rng.integers(0, self.classes, size=batch, dtype=np.int64)
        if self.name == "mlp":
            x = rng.standard_normal((batch, 784), dtype=np.float32)
        elif self.name == "cnn":
            x = rng.random((batch, 1, 8, 8), dtype=np.float32)
        else:
            x = rng.integers(0, VOCAB, size=(batch, seq_len), dtype=np.int64)
        return x, labels


WORKLOADS: dict[str, Workload] = {
    "mlp": Workload(
        name="mlp",
        title="MLP 784-400-400-10",
        spec=ROOT / "bench" / "specs" / "mlp.bnn",
        network="MLP",
        params={},
        loss="ce",
        classes=10,
    ),
    "cnn": Workload(
        name="cnn",
        title="digits CNN",
        spec=ROOT / "examples" / "digits.bnn",
        network="DigitsCNN",
        params={},
        loss="ce",
        classes=10,
        fixed=("conv1",),
        rho_init=-7.0,
    ),
    "lstm": Workload(
        name="lstm",
        title="LSTM sequence classifier",
        spec=ROOT / "examples" / "sequence.bnn",
        network="SequenceClassifier",
        params={},
        loss="nll",
        classes=SEQ_CLASSES,
    ),
}
