"""Layer families the engine knows, and forward passes with substituted parameters.

Rules need to run a layer with modified weights (W⁺, W², ones...). Calling the layer's own
functional form keeps that cheap and never touches the user's module."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
CONVOLUTIONS = CONV_TYPES + CONV_TRANSPOSE_TYPES
LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear,)
WEIGHTED_TYPES = CONVOLUTIONS + LINEAR_TYPES
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAXPOOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
AVGPOOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
POOL_TYPES = MAXPOOL_TYPES + AVGPOOL_TYPES
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
RESHAPE_TYPES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, nn.Identity)
LAYERNORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm,)
# ReLU-like activations LRP is defined for (deep rectifier networks); LeakyReLU has a caveat
# that the model check enforces (GeneralizedGammaRule on the next weighted layer).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
)
# Smooth element-wise activations of today's architectures (transformers, EfficientNet, MobileNetV3):
# accepted as RelevancePropagation.jl accepts gelu, swish and mish, with the identity rule by default
# (relevance passes unchanged, as AttnLRP and LXT do). Not sign-preserving: negative for x < 0.
ELEMENTWISE_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish)
# Gates: a sigmoid whose output only multiplies another activation (squeeze-and-excitation) is held
# constant by GateRule, so the check accepts it there (and refuses it anywhere else).
GATE_TYPES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid)
# Activations the checks refuse: squashing or not rectifier-like, LRP's assumptions break.
REFUSED_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.Softmax,
    nn.LogSoftmax,
    nn.Softmin,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Tanhshrink,
    nn.Softsign,
)
SOFTMAX_TYPES: tuple[type[nn.Module], ...] = (nn.Softmax, nn.LogSoftmax)
PASS_TYPES = DROPOUT_TYPES + RESHAPE_TYPES + BATCHNORM_TYPES + ACTIVATION_TYPES + ELEMENTWISE_ACTIVATION_TYPES
# Layers whose output is non-negative whenever their input is: lets rules skip the a⁻ branch.
SIGN_PRESERVING_TYPES = POOL_TYPES + DROPOUT_TYPES + RESHAPE_TYPES + (nn.ReLU, nn.ReLU6)
NONNEGATIVE_OUTPUT_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

BUILTIN_LAYER_TYPES = (
    WEIGHTED_TYPES + BATCHNORM_TYPES + POOL_TYPES + DROPOUT_TYPES + RESHAPE_TYPES + LAYERNORM_TYPES
)


def has_weight(layer: nn.Module) -> bool:
    """A layer rules can modify parameters of: a weight tensor, optionally a bias."""
    return isinstance(getattr(layer, "weight", None), Tensor)


def forward_with_params(layer: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Run `layer` on `x` with `weight`/`bias` in place of its own parameters."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(layer, CONV_TYPES):
        return layer._conv_forward(x, weight, bias)  # honours padding_mode, stride, groups...
    if isinstance(layer, CONV_TRANSPOSE_TYPES):
        return _conv_transpose_forward(layer, x, weight, bias)
    params = {"weight": weight}
    if bias is not None or getattr(layer, "bias", None) is not None:
        params["bias"] = bias if bias is not None else torch.zeros_like(layer.bias)
    return torch.func.functional_call(layer, params, (x,))


_CONV_TRANSPOSE_FN: dict[type[nn.Module], Callable[..., Tensor]] = {
    nn.ConvTranspose1d: F.conv_transpose1d,
    nn.ConvTranspose2d: F.conv_transpose2d,
    nn.ConvTranspose3d: F.conv_transpose3d,
}


def _conv_transpose_forward(layer: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    fn = _CONV_TRANSPOSE_FN[type(layer)]
    return fn(
        x,
        weight,
        bias,
        layer.stride,
        layer.padding,
        layer.output_padding,
        layer.groups,
        layer.dilation,
    )


def is_instance(layer: object, types: type | tuple[type, ...]) -> bool:
    """isinstance that tolerates functions (registered function layers) in `types`."""
    if isinstance(types, tuple):
        return any(is_instance(layer, t) for t in types)
    if isinstance(types, type):
        return isinstance(layer, types)
    return layer is types
