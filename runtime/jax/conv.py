"""Convolutions: Bayesian :class:`Conv1d`/:class:`Conv2d` and their fixed twins.

Layouts are PyTorch's: inputs ``[N, C, L]`` / ``[N, C, H, W]`` and kernels
``OIL`` / ``OIHW``, computed with ``jax.lax.conv_general_dilated`` using torch's
stride, zero padding, dilation and groups semantics.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .base import DEFAULT_RNGS, FixedModule
from .distributions import DistributionModule
from .estimators import Estimator, WeightLayer

__all__ = ["Conv1d", "Conv2d", "FixedConv1d", "FixedConv2d", "conv1d", "conv2d"]

IntOrPair = int | tuple[int, int]


def _pair(value: IntOrPair) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def _check_groups(input_channels: int, output_channels: int, groups: int) -> None:
    if groups < 1 or input_channels % groups or output_channels % groups:
        raise ValueError(
            f"groups={groups} must divide input_channels={input_channels} "
            f"and output_channels={output_channels}"
        )


@partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _conv(
    inputs: jax.Array,
    weights: jax.Array,
    bias: jax.Array | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> jax.Array:
    spatial = len(stride)
    # Computed channels-last (NHWC inputs, HWIO kernel), the layout of XLA's
    # CPU convolutions, with torch's layouts in and out as transposes around
    # it. XLA's CPU loops run along an array's last axis: in torch's layout
    # that is a few pixels (8, 4, 2 for an 8x8 image), and the bias, the
    # activation, the pooling (also channels-last, see .functional._pool) and
    # their gradients ran several times slower than along the channels.
    # Neighbouring transposes cancel; the values are the same (XLA computes
    # the convolution channels-last in either case).
    to_last = (0, *range(2, spatial + 2), 1)
    names = ("NHC", "HIO", "NHC") if spatial == 1 else ("NHWC", "HWIO", "NHWC")
    outputs = jax.lax.conv_general_dilated(
        lhs=jnp.transpose(inputs, to_last),
        rhs=jnp.transpose(weights, (*range(2, spatial + 2), 1, 0)),
        window_strides=stride,
        padding=[(p, p) for p in padding],
        lhs_dilation=(1,) * spatial,
        rhs_dilation=dilation,
        dimension_numbers=names,
        feature_group_count=groups,
    )
    if bias is not None:
        outputs = outputs + bias
    return jnp.transpose(outputs, (0, spatial + 1, *range(1, spatial + 1)))


def conv1d(
    inputs: jax.Array,
    weights: jax.Array,
    bias: jax.Array | None,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
) -> jax.Array:
    """1-D convolution of ``[B, C, L]`` inputs with ``OIL`` weights, as ``F.conv1d``."""
    return _conv(
        inputs, weights, bias, (int(stride),), (int(padding),), (int(dilation),), groups
    )


def conv2d(
    inputs: jax.Array,
    weights: jax.Array,
    bias: jax.Array | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> jax.Array:
    """2-D convolution of ``[B, C, H, W]`` with ``OIHW`` weights, as ``F.conv2d``."""
    return _conv(
        inputs,
        weights,
        bias,
        _pair(stride),
        _pair(padding),
        _pair(dilation),
        groups,
    )


class Conv1d(WeightLayer):
    """Bayesian 1-D convolution over ``[batch, channels, length]`` inputs.

    ``weights`` has shape ``(output_channels, input_channels // groups,
    kernel_size)`` and ``bias`` shape ``(output_channels,)`` (or None).
    """

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        weights_distribution: DistributionModule | None = None,
        bias_distribution: DistributionModule | None = None,
        use_bias: bool = True,
        rngs: nnx.Rngs = DEFAULT_RNGS,
        *,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        estimator: Estimator = "reparameterization",
        **kwargs: Any,
    ) -> None:
        """Create the layer and draw initial weights.

        Args:
            input_channels: Number of input channels.
            output_channels: Number of output channels.
            kernel_size: Length of the kernel.
            stride: Stride of the convolution.
            padding: Zero padding added to both ends.
            dilation: Spacing between kernel elements.
            groups: Number of blocked connections from input to output.
            weights_distribution: Distribution of the weights; a
                :class:`GaussianDistribution` built from the prior/posterior
                keywords when None.
            bias_distribution: Distribution of the bias (same default).
            use_bias: Whether to add a bias.
            rngs: Random streams for initialisation and sampling.
            mu_prior: Prior mean of the default distributions.
            std_prior: Prior standard deviation of the default distributions.
            mu_init: Initial posterior mean of the default distributions.
            rho_init: Initial posterior rho of the default distributions.
            estimator: ``"reparameterization"`` (default),
                ``"local_reparameterization"`` or ``"flipout"``
                (:mod:`.estimators`); the last two need Gaussian
                distributions.
            **kwargs: Passed to ``nnx.Module``.

        Raises:
            ValueError: For an unknown estimator, or local reparameterisation
                or flipout with a non-Gaussian distribution; for ``groups``
                that do not divide the channels.
        """
        super().__init__(**kwargs)
        _check_groups(input_channels, output_channels, groups)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.use_bias = use_bias
        self.rngs = rngs
        self._register_weights_and_bias(
            (output_channels, input_channels // groups, kernel_size),
            weights_distribution,
            bias_distribution,
            use_bias,
            rngs=rngs,
            mu_prior=mu_prior,
            std_prior=std_prior,
            mu_init=mu_init,
            rho_init=rho_init,
        )
        self._set_estimator(estimator)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Sample (unless frozen) and convolve ``[B, C_in, L]`` inputs."""
        return self._apply_estimator(inputs, self._convolve, 1)

    def _convolve(
        self, inputs: jax.Array, weights: jax.Array, bias: jax.Array | None
    ) -> jax.Array:
        return conv1d(
            inputs, weights, bias, self.stride, self.padding, self.dilation, self.groups
        )


class Conv2d(WeightLayer):
    """Bayesian 2-D convolution over ``[batch, channels, height, width]`` inputs.

    ``weights`` has shape ``(output_channels, input_channels // groups, kh, kw)``
    and ``bias`` shape ``(output_channels,)`` (or None). ``kernel_size``,
    ``stride``, ``padding`` and ``dilation`` accept an int or a pair and are
    stored as pairs.
    """

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = (1, 1),
        padding: IntOrPair = (0, 0),
        dilation: IntOrPair = (1, 1),
        groups: int = 1,
        weights_distribution: DistributionModule | None = None,
        bias_distribution: DistributionModule | None = None,
        use_bias: bool = True,
        rngs: nnx.Rngs = DEFAULT_RNGS,
        *,
        mu_prior: float = 0.0,
        std_prior: float = 0.1,
        mu_init: float = 0.0,
        rho_init: float = -7.0,
        estimator: Estimator = "reparameterization",
        **kwargs: Any,
    ) -> None:
        """Create the layer and draw initial weights.

        Args:
            input_channels: Number of input channels.
            output_channels: Number of output channels.
            kernel_size: Kernel size (int or ``(kh, kw)``).
            stride: Stride (int or pair).
            padding: Zero padding of height and width (int or pair).
            dilation: Spacing between kernel elements (int or pair).
            groups: Number of blocked connections from input to output.
            weights_distribution: Distribution of the weights; a
                :class:`GaussianDistribution` built from the prior/posterior
                keywords when None.
            bias_distribution: Distribution of the bias (same default).
            use_bias: Whether to add a bias.
            rngs: Random streams for initialisation and sampling.
            mu_prior: Prior mean of the default distributions.
            std_prior: Prior standard deviation of the default distributions.
            mu_init: Initial posterior mean of the default distributions.
            rho_init: Initial posterior rho of the default distributions.
            estimator: ``"reparameterization"`` (default),
                ``"local_reparameterization"`` or ``"flipout"``
                (:mod:`.estimators`); the last two need Gaussian
                distributions.
            **kwargs: Passed to ``nnx.Module``.

        Raises:
            ValueError: For an unknown estimator, or local reparameterisation
                or flipout with a non-Gaussian distribution; for ``groups``
                that do not divide the channels.
        """
        super().__init__(**kwargs)
        _check_groups(input_channels, output_channels, groups)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.use_bias = use_bias
        self.rngs = rngs
        self._register_weights_and_bias(
            (output_channels, input_channels // groups, *self.kernel_size),
            weights_distribution,
            bias_distribution,
            use_bias,
            rngs=rngs,
            mu_prior=mu_prior,
            std_prior=std_prior,
            mu_init=mu_init,
            rho_init=rho_init,
        )
        self._set_estimator(estimator)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Sample (unless frozen) and convolve ``[B, C_in, H, W]`` inputs."""
        return self._apply_estimator(inputs, self._convolve, 2)

    def _convolve(
        self, inputs: jax.Array, weights: jax.Array, bias: jax.Array | None
    ) -> jax.Array:
        return conv2d(
            inputs, weights, bias, self.stride, self.padding, self.dilation, self.groups
        )


class FixedConv1d(FixedModule):
    """Deterministic twin of :class:`Conv1d`, initialised like ``torch.nn.Conv1d``."""

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        use_bias: bool = True,
        rngs: nnx.Rngs = DEFAULT_RNGS,
    ) -> None:
        """Create the layer (arguments as in :class:`Conv1d`)."""
        super().__init__()
        _check_groups(input_channels, output_channels, groups)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.use_bias = use_bias
        self.rngs = rngs
        self._create_weights_and_bias(
            (output_channels, input_channels // groups, kernel_size), use_bias, rngs
        )

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Convolve ``[B, C_in, L]`` inputs."""
        return conv1d(
            inputs,
            self._current("weights"),
            self._current("bias"),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


class FixedConv2d(FixedModule):
    """Deterministic twin of :class:`Conv2d`, initialised like ``torch.nn.Conv2d``."""

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = (1, 1),
        padding: IntOrPair = (0, 0),
        dilation: IntOrPair = (1, 1),
        groups: int = 1,
        use_bias: bool = True,
        rngs: nnx.Rngs = DEFAULT_RNGS,
    ) -> None:
        """Create the layer (arguments as in :class:`Conv2d`)."""
        super().__init__()
        _check_groups(input_channels, output_channels, groups)
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.use_bias = use_bias
        self.rngs = rngs
        self._create_weights_and_bias(
            (output_channels, input_channels // groups, *self.kernel_size),
            use_bias,
            rngs,
        )

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Convolve ``[B, C_in, H, W]`` inputs."""
        return conv2d(
            inputs,
            self._current("weights"),
            self._current("bias"),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
