"""bnnc's JAX runtime (Flax NNX): Bayesian layers, distributions, losses, helpers.

The layer, distribution and loss classes mirror the reference API (same class
names, constructor parameters, methods and attributes; ``num_params`` is a
property), and the PyTorch runtime (same module split, attribute names,
tensor shapes and layouts, and maths), so a model's state can be copied
between the two with :mod:`bnnc.runtime.transfer`. Each Bayesian layer has a
deterministic ``Fixed*`` twin with the same attribute names.

Beyond the reference: only ``mu``/``rho`` (and fixed weights) are
``nnx.Param``; current samples are :class:`Sample` variables and priors
:class:`Prior` variables, updated in place so ``nnx.jit`` traces once.
Monte Carlo prediction helpers (:mod:`.predict`, the samples in one jitted
``jax.lax.map``), calibration metrics (:mod:`.metrics`) and torch-exact
functional ops in NCHW layout (:mod:`.functional`).
"""

from . import functional
from .base import (
    DEFAULT_RNGS,
    BayesianModule,
    FixedModule,
    bayesian_modules,
)
from .conv import Conv1d, Conv2d, FixedConv1d, FixedConv2d
from .distributions import DistributionModule, GaussianDistribution, Prior, Sample
from .embedding import Embedding, FixedEmbedding
from .functional import (
    avg_pool1d,
    avg_pool2d,
    batch_norm,
    dropout,
    flatten,
    gelu,
    layer_norm,
    max_pool1d,
    max_pool2d,
    reshape_batch,
    softplus,
)
from .heads import (
    BernoulliShape,
    BernoulliStoch,
    BSQCodebook,
    CategoricalShape,
    CategoricalStoch,
    Distribution,
    IndependentBernoulli,
    IndependentNormal,
    IndependentOneHotCategorical,
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
from .serialization import load_model, model_state, restore_model_state, save_model

__all__ = [
    "DEFAULT_RNGS",
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
    "IndependentBernoulli",
    "IndependentNormal",
    "IndependentOneHotCategorical",
    "KLDivergenceLoss",
    "Linear",
    "NormalShape",
    "NormalStoch",
    "Prior",
    "Sample",
    "StochState",
    "accuracy",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "bayesian_modules",
    "cat_dist",
    "classification_uncertainty",
    "dropout",
    "expected_calibration_error",
    "expected_entropy",
    "flatten",
    "freeze_all",
    "functional",
    "gelu",
    "get_dist",
    "head_nll",
    "layer_norm",
    "load_model",
    "max_pool1d",
    "max_pool2d",
    "mc_samples",
    "model_state",
    "mutual_information",
    "negative_log_likelihood",
    "predictive_entropy",
    "predictive_interval",
    "predictive_mean_std",
    "predictive_normal",
    "predictive_probs",
    "reshape_batch",
    "restore_model_state",
    "save_model",
    "softplus",
    "stack_dist",
    "total_kl",
    "unfreeze_all",
]
