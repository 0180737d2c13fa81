"""bnnc's PyTorch runtime: Bayesian layers, distributions, losses and helpers.

The layer, distribution and loss classes mirror the reference API (same class
names, constructor parameters, methods and attributes), so code written against
it runs unchanged. Each Bayesian layer has a deterministic ``Fixed*`` twin with
the same attribute names. Beyond the reference: Monte Carlo prediction helpers
(:mod:`.predict`) and calibration metrics (:mod:`.metrics`).
"""

from .base import BayesianModule, FixedModule
from .conv import Conv1d, Conv2d, FixedConv1d, FixedConv2d
from .distributions import DistributionModule, GaussianDistribution
from .embedding import Embedding, FixedEmbedding
from .functional import batch_norm, layer_norm, reshape_batch
from .linear import FixedLinear, Linear
from .losses import ELBOLoss, KLDivergenceLoss
from .lstm import LSTM, FixedLSTM
from .metrics import accuracy, expected_calibration_error, negative_log_likelihood
from .predict import (
    ClassificationUncertainty,
    classification_uncertainty,
    expected_entropy,
    freeze_all,
    mc_samples,
    mutual_information,
    predictive_entropy,
    predictive_mean_std,
    predictive_probs,
    total_kl,
    unfreeze_all,
)

__all__ = [
    "LSTM",
    "BayesianModule",
    "ClassificationUncertainty",
    "Conv1d",
    "Conv2d",
    "DistributionModule",
    "ELBOLoss",
    "Embedding",
    "FixedConv1d",
    "FixedConv2d",
    "FixedEmbedding",
    "FixedLSTM",
    "FixedLinear",
    "FixedModule",
    "GaussianDistribution",
    "KLDivergenceLoss",
    "Linear",
    "accuracy",
    "batch_norm",
    "classification_uncertainty",
    "expected_calibration_error",
    "expected_entropy",
    "freeze_all",
    "layer_norm",
    "mc_samples",
    "mutual_information",
    "negative_log_likelihood",
    "predictive_entropy",
    "predictive_mean_std",
    "predictive_probs",
    "reshape_batch",
    "total_kl",
    "unfreeze_all",
]
