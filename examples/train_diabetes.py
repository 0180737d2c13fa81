"""Compile ``examples/diabetes.bnn`` and fit it to scikit-learn's diabetes data.

A heteroscedastic Bayesian regression: the spec's ``Normal`` head predicts a
mean and a standard deviation per patient, and ``ELBOLoss(None, ...)`` trains
it on the head's negative log-likelihood. The runner prints test RMSE, the
predictive negative log-likelihood and the empirical coverage of the central
90% predictive interval (Monte Carlo over weights, then over the head's noise),
which should be close to 0.90.

Usage::

    python examples/train_diabetes.py [--backend torch|jax] [--epochs 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from bnnc.compiler.diagnostics import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import ROOT, batches, compile_model, run_epochs


def diabetes_data(seed: int) -> tuple[np.ndarray, ...]:
    """Standardised train/test split (statistics from the training part)."""
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed
    )
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()
    return (
        ((x_train - x_mean) / x_std).astype(np.float32),
        ((x_test - x_mean) / x_std).astype(np.float32),
        ((y_train - y_mean) / y_std).astype(np.float32)[:, None],
        ((y_test - y_mean) / y_std).astype(np.float32)[:, None],
        np.float32(y_std),
    )


def train_torch(module: ModuleType, args: argparse.Namespace, data: tuple) -> Any:
    """Train with torch; returns a function giving (means, stds) for S samples."""
    import torch

    from bnnc.runtime import torch as bnn

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x_train, x_test, y_train, _, _ = (torch.as_tensor(a) for a in data)
    model = getattr(module, args.network)()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    elbo = bnn.ELBOLoss(None, kl_weight=kl_weight(model, len(x_train), bnn))

    def epoch(rng: np.random.Generator) -> float:
        model.train()
        for index in batches(len(x_train), args.batch_size, rng):
            idx = torch.from_numpy(index)
            loss = elbo(model(x_train[idx]), y_train[idx], model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    run_epochs(epoch, args.epochs, args.seed)
    model.eval()

    def predict(samples: int) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            outputs = [model(x_test) for _ in range(samples)]
        means = np.stack([o.mean.numpy() for o in outputs])
        stds = np.stack([o.std.numpy() for o in outputs])
        return means, stds

    return predict


def train_jax(module: ModuleType, args: argparse.Namespace, data: tuple) -> Any:
    """Train with JAX/Flax NNX and optax; same result as :func:`train_torch`."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from bnnc.runtime import jax as bnn

    x_train, x_test, y_train, _, _ = (jnp.asarray(a) for a in data)
    model = getattr(module, args.network)(rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    elbo = bnn.ELBOLoss(None, kl_weight=kl_weight(model, len(x_train), bnn))

    @nnx.jit
    def step(model: Any, optimizer: Any, x: Any, y: Any) -> Any:
        def loss_fn(model: Any) -> Any:
            return elbo(model(x), y, model)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))
        loss, grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss

    def epoch(rng: np.random.Generator) -> float:
        model.train()
        for index in batches(len(x_train), args.batch_size, rng):
            loss = step(model, optimizer, x_train[index], y_train[index])
        return float(loss)

    run_epochs(epoch, args.epochs, args.seed)
    model.eval()

    def predict(samples: int) -> tuple[np.ndarray, np.ndarray]:
        outputs = [model(x_test) for _ in range(samples)]
        means = np.stack([np.asarray(o.mean) for o in outputs])
        stds = np.stack([np.asarray(o.std) for o in outputs])
        return means, stds

    return predict


def kl_weight(model: Any, examples: int, bnn: Any) -> float:
    """The per-example ELBO scale: KL is normalised by the parameter count, so
    weighting it by (parameters / examples) recovers KL / N."""
    _, count = bnn.total_kl(model)
    return count / examples


def evaluate(
    means: np.ndarray, stds: np.ndarray, y: np.ndarray, scale: float, seed: int
) -> dict[str, float]:
    """RMSE, NLL and 90% interval coverage of the predictive mixture.

    ``means``/``stds`` are ``[S, N, 1]``: one Normal per weight sample; the
    predictive distribution is their equal-weight mixture.
    """
    mixture_mean = means.mean(0)
    rmse = float(np.sqrt(((mixture_mean - y) ** 2).mean()) * scale)
    log_pdf = (
        -0.5 * np.log(2 * np.pi) - np.log(stds) - 0.5 * ((y[None] - means) / stds) ** 2
    )
    nll = float(
        -(logsumexp(log_pdf, axis=0) - np.log(len(means))).mean() + np.log(scale)
    )
    rng = np.random.default_rng(seed)
    draws = means[:, None] + stds[:, None] * rng.standard_normal(
        (means.shape[0], 64, *means.shape[1:])
    )
    draws = draws.reshape(-1, *means.shape[1:])
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    coverage = float(((y >= low) & (y <= high)).mean())
    return {"rmse": rmse, "nll": nll, "coverage": coverage}


def main(argv: list[str] | None = None) -> int:
    """Compile, train, evaluate and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["torch", "jax"], default="torch")
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "diabetes.bnn")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--network", default="DiabetesRegressor")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=64, help="MC samples at test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.samples < 1:
        parser.error("--epochs, --batch-size and --samples must be positive")
    try:
        module = compile_model(args.spec, args.backend, args.out_dir)
    except CompileError as error:
        print(error.render(), file=sys.stderr)
        return 1
    data = diabetes_data(args.seed)
    started = time.perf_counter()
    train = train_torch if args.backend == "torch" else train_jax
    predict = train(module, args, data)
    seconds = time.perf_counter() - started
    means, stds = predict(args.samples)
    y_test, scale = data[3], float(data[4])
    result = evaluate(means, stds, y_test, scale, args.seed)
    baseline = float(np.sqrt(((y_test - data[2].mean()) ** 2).mean()) * scale)
    print(f"\nDiabetesRegressor (Bayesian, Normal head, {args.backend})")
    print(f"  trained {args.epochs} epochs in {seconds:.1f} s")
    rmse = f"{result['rmse']:.2f} (mean predictor {baseline:.2f})"
    print(f"  test RMSE                  {rmse}")
    print(f"  test NLL                   {result['nll']:.3f} nats per patient")
    print(f"  90% interval coverage      {result['coverage']:.3f} (target 0.85-0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
