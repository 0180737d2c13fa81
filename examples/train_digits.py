"""Train the Bayesian digits CNN generated from ``examples/digits.bnn``.

Uses scikit-learn's bundled 8x8 digits (no download). Prints test accuracy,
negative log-likelihood, expected calibration error, and the predictive entropy
on test digits versus noise images: a Bayesian model should be less sure about
inputs unlike anything it was trained on.

Usage::

    bnnc compile examples/digits.bnn -o build/digits_torch.py
    python examples/train_digits.py --model build/digits_torch.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from bnnc.runtime import torch as bnn


def load_model_class(path: Path, name: str) -> type[torch.nn.Module]:
    """Import the generated module at ``path`` and return class ``name``."""
    spec = importlib.util.spec_from_file_location("digits_generated", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


def digits_data(seed: int) -> tuple[torch.Tensor, ...]:
    """Train/test split of the digits, scaled to [0, 1], shaped [N, 1, 8, 8]."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_train).long(),
        torch.from_numpy(y_test).long(),
    )


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("build/digits_torch.py"))
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

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x_train, x_test, y_train, y_test = digits_data(args.seed)
    model = load_model_class(args.model, args.network)()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    elbo = bnn.ELBOLoss(torch.nn.functional.cross_entropy, kl_weight=args.kl_weight)

    started = time.perf_counter()
    with tqdm(
        total=args.epochs, desc="training", unit="epoch", file=sys.stdout, ncols=80
    ) as bar:
        for _ in range(args.epochs):
            model.train()
            order = torch.randperm(len(x_train))
            for start in range(0, len(order), args.batch_size):
                index = order[start : start + args.batch_size]
                loss = elbo(model(x_train[index]), y_train[index], model)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update()
    seconds = time.perf_counter() - started

    model.eval()
    probs = bnn.predictive_probs(model, x_test, num_samples=args.samples)
    noise = torch.rand(len(x_test), 1, 8, 8, generator=torch.Generator().manual_seed(1))
    noise_probs = bnn.predictive_probs(model, noise, num_samples=args.samples)
    entropy_in = bnn.predictive_entropy(probs).mean().item()
    entropy_out = bnn.predictive_entropy(noise_probs).mean().item()

    print(f"\nDigitsCNN (Bayesian), {args.epochs} epochs in {seconds:.1f} s")
    accuracy = bnn.accuracy(probs, y_test).item()
    nll = bnn.negative_log_likelihood(probs, y_test).item()
    ece = bnn.expected_calibration_error(probs, y_test).item()
    print(f"  test accuracy              {accuracy:.4f}")
    print(f"  test NLL                   {nll:.4f}")
    print(f"  expected calibration error {ece:.4f}")
    print(f"  predictive entropy, digits {entropy_in:.4f} nats")
    print(f"  predictive entropy, noise  {entropy_out:.4f} nats (max {np.log(10):.4f})")
    verdict = "less" if entropy_out > entropy_in else "NOT less"
    print(f"  the model is {verdict} sure about noise than about digits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
