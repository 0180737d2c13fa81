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
from .heads import (
    BernoulliShape,
    BernoulliStoch,
    BSQCodebook,
    CategoricalShape,
    CategoricalStoch,
    Distribution,
    NormalShape,
    NormalStoch,
    StochState,
    cat_dist,
    get_dist,
    head_nll,
    predictive_interval,
    predictive_normal,
    stack_dist,
)
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
from .serialization import load_model, save_model

__all__ = [
    "LSTM",
    "BSQCodebook",
    "BayesianModule",
    "BernoulliShape",
    "BernoulliStoch",
    "CategoricalShape",
    "CategoricalStoch",
    "ClassificationUncertainty",
    "Conv1d",
    "Conv2d",
    "Distribution",
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
    "NormalShape",
    "NormalStoch",
    "StochState",
    "accuracy",
    "batch_norm",
    "cat_dist",
    "classification_uncertainty",
    "expected_calibration_error",
    "expected_entropy",
    "freeze_all",
    "get_dist",
    "head_nll",
    "layer_norm",
    "load_model",
    "mc_samples",
    "mutual_information",
    "negative_log_likelihood",
    "predictive_entropy",
    "predictive_interval",
    "predictive_mean_std",
    "predictive_normal",
    "predictive_probs",
    "reshape_batch",
    "save_model",
    "stack_dist",
    "total_kl",
    "unfreeze_all",
]
