"""How much work one benchmark run does: rounds, steps, batch sizes, sizes.

``FULL`` is what ``bench/RESULTS.md`` reports, ``QUICK`` a short run for a
first look (same workloads, fewer rounds and steps), ``TINY`` the smoke
test's sizes (tiny batches: only the harness is exercised, the numbers mean
nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODELS = ("mlp", "cnn", "lstm")
BACKENDS = ("torch", "compile", "jax")
FIGURES = ("train", "predict", "memory", "params", "compile")


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one run (the workloads themselves are fixed)."""

    models: tuple[str, ...] = MODELS
    backends: tuple[str, ...] = BACKENDS
    figures: tuple[str, ...] = FIGURES
    threads: int = 2
    """Torch intra-op threads; the process is also pinned to this many CPUs."""
    rounds: int = 15
    """Timed rounds; each round times every contender once, interleaved."""
    warmup: int = 5
    """Untimed calls of every contender before the first round."""
    train_steps: int = 10
    """Training steps per contender per round."""
    predict_calls: int = 2
    """MC predictions (of ``mc_samples`` passes each) per contender per round."""
    batch: int = 128
    predict_batch: int = 512
    mc_samples: int = 32
    seq_len: int = 32
    """Tokens per sequence of the LSTM workload."""
    memory_steps: int = 300
    """Training steps of each peak-memory child process."""
    compile_sizes: tuple[int, ...] = (10, 100, 1000)
    """Layers of the generated specs timed through ``bnnc compile``."""
    compile_runs: int = 5
    """Interleaved CLI runs per spec (the median is reported)."""
    seed: int = 0

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


FULL = Config()
QUICK = FULL.replace(
    rounds=5,
    warmup=2,
    train_steps=3,
    predict_calls=1,
    memory_steps=60,
    compile_runs=3,
)
TINY = FULL.replace(
    rounds=2,
    warmup=2,
    train_steps=1,
    predict_calls=1,
    batch=8,
    predict_batch=8,
    mc_samples=2,
    seq_len=3,
    memory_steps=2,
    compile_sizes=(2, 4, 8),
    compile_runs=1,
)
