"""Compile ``examples/digits.bnn`` and train the Bayesian CNN on scikit-learn's digits.

Uses scikit-learn's bundled 8x8 digits (no download). The spec is compiled for
the chosen backend (PyTorch or JAX/Flax NNX) into ``build/``, imported, trained
with the ELBO, and evaluated: test accuracy, negative log-likelihood, expected
calibration error, and the predictive entropy on test digits versus noise
images (a Bayesian model should be less sure about inputs unlike anything it
was trained on).

Usage::

    python examples/train_digits.py [--backend torch|jax] [--epochs 30]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bnnc.compiler.diagnostics import CompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import ROOT, batches, compile_model, run_epochs


def digits_data(seed: int) -> tuple[np.ndarray, ...]:
    """Train/test split of the digits, scaled to [0, 1], shaped [N, 1, 8, 8]."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return tuple(
        train_test_split(
            images,
            digits.target.astype(np.int64),
            test_size=0.25,
            random_state=seed,
            stratify=digits.target,
        )
    )


def train_torch(module: ModuleType, args: argparse.Namespace, data: tuple) -> dict:
    """Train with torch; returns test/noise probabilities and labels."""
    import torch

    from bnnc.runtime import torch as bnn

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x_train, x_test, y_train, y_test = (torch.from_numpy(a) for a in data)
    model = getattr(module, args.network)()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    elbo = bnn.ELBOLoss(torch.nn.functional.cross_entropy, kl_weight=args.kl_weight)

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
    noise = torch.from_numpy(noise_images(len(x_test)))
    return {
        "probs": bnn.predictive_probs(model, x_test, num_samples=args.samples).numpy(),
        "noise": bnn.predictive_probs(model, noise, num_samples=args.samples).numpy(),
        "labels": y_test.numpy(),
    }


def train_jax(module: ModuleType, args: argparse.Namespace, data: tuple) -> dict:
    """Train with JAX/Flax NNX and optax; same outputs as :func:`train_torch`."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from bnnc.runtime import jax as bnn

    x_train, x_test, y_train, y_test = (jnp.asarray(a) for a in data)
    model = getattr(module, args.network)(rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

    def cross_entropy(logits: Any, labels: Any) -> Any:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    elbo = bnn.ELBOLoss(cross_entropy, kl_weight=args.kl_weight)

    @nnx.jit
    def step(model: Any, optimizer: Any, x: Any, y: Any) -> Any:
        def loss_fn(model: Any) -> Any:
            return elbo(model(x), y, model)

        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param))(
            model
        )
        optimizer.update(model, grads)
        return loss

    def epoch(rng: np.random.Generator) -> float:
        model.train()
        for index in batches(len(x_train), args.batch_size, rng):
            loss = step(model, optimizer, x_train[index], y_train[index])
        return float(loss)

    run_epochs(epoch, args.epochs, args.seed)
    model.eval()
    noise = jnp.asarray(noise_images(len(x_test)))
    return {
        "probs": np.asarray(
            bnn.predictive_probs(model, x_test, num_samples=args.samples)
        ),
        "noise": np.asarray(
            bnn.predictive_probs(model, noise, num_samples=args.samples)
        ),
        "labels": np.asarray(y_test),
    }


def noise_images(n: int) -> np.ndarray:
    """Uniform noise 'images': out-of-distribution inputs."""
    return np.random.default_rng(1).random((n, 1, 8, 8), dtype=np.float32)


def report(result: dict, seconds: float, args: argparse.Namespace) -> None:
    """Print accuracy, NLL, ECE and entropies (numpy maths, same for both backends)."""
    probs, noise, labels = result["probs"], result["noise"], result["labels"]
    accuracy = float((probs.argmax(-1) == labels).mean())
    nll = float(
        -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean()
    )
    ece = expected_calibration_error(probs, labels)
    entropy_in = float(entropy(probs).mean())
    entropy_out = float(entropy(noise).mean())
    title = f"DigitsCNN (Bayesian, {args.backend})"
    print(f"\n{title}, {args.epochs} epochs in {seconds:.1f} s")
    print(f"  test accuracy              {accuracy:.4f}")
    print(f"  test NLL                   {nll:.4f}")
    print(f"  expected calibration error {ece:.4f}")
    print(f"  predictive entropy, digits {entropy_in:.4f} nats")
    print(f"  predictive entropy, noise  {entropy_out:.4f} nats (max {np.log(10):.4f})")
    verdict = "less" if entropy_out > entropy_in else "NOT less"
    print(f"  the model is {verdict} sure about noise than about digits")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy in nats."""
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(-1)


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """Equal-width confidence bins, weighted |accuracy - confidence|."""
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(
                correct[inside].mean() - confidence[inside].mean()
            )
    return float(error)


def main(argv: list[str] | None = None) -> int:
    """Compile, train, evaluate and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["torch", "jax"], default="torch")
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "digits.bnn")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--network", default="DigitsCNN")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-2)
    parser.add_argument("--samples", type=int, default=32, help="MC samples at test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.samples < 1:
        parser.error("--epochs, --batch-size and --samples must be positive")
    try:
        module = compile_model(args.spec, args.backend, args.out_dir)
    except CompileError as error:
        print(error.render(), file=sys.stderr)
        return 1
    data = digits_data(args.seed)
    started = time.perf_counter()
    train = train_torch if args.backend == "torch" else train_jax
    result = train(module, args, data)
    report(result, time.perf_counter() - started, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
