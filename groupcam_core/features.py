"""Step 1 for a prepared batch: the gradient pass at the target layer(s), checked.

The backend's activations and gradients come back in the core's namespace,
channels-first and in the compute dtype, one :class:`LayerFeatures` per target
layer; a batch larger than the masked-pass chunk goes through in chunks.
"""

from __future__ import annotations

import math
import numbers
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device

from .batches import SPATIAL_LETTERS, PreparedBatch, concat_rows, to_channels_first
from .errors import ConfigError, TargetLayerError, is_out_of_memory, layer_not_connected, warn
from .forward import out_of_memory_warning
from .protocol import GradientPass
from .targets import Objective, TargetSpec, is_target_function, make_objective, per_image_classes

__all__ = [
    "FeatureMaps",
    "LayerFeatures",
    "check_groups",
    "feature_maps",
    "looks_like_other_layout",
]


#: While true, a layer whose gradients are zero for every image and position is
#: refused as not connected (:class:`~groupcam_core.errors.LayerNotConnectedError`):
#: the adapter kit sets it while it tries candidates for the default layer.
refusing_zero_gradients: ContextVar[bool] = ContextVar("refusing_zero_gradients", default=False)


@dataclass(frozen=True)
class LayerFeatures:
    """One target layer's activations and gradients, channels-first, in the compute dtype."""

    name: str | None
    activations: Any
    gradients: Any


@dataclass(frozen=True)
class FeatureMaps:
    """Step 1 for a prepared batch, in the core's terms.

    Attributes
    ----------
    layers
        One :class:`LayerFeatures` per target layer.
    objective
        What the maps explain (:class:`~groupcam_core.targets.ClassObjective` or
        :class:`~groupcam_core.targets.FunctionObjective`).
    result
        The backend's :class:`~groupcam_core.protocol.GradientPass` as it came.
    """

    layers: tuple[LayerFeatures, ...]
    objective: Objective
    result: GradientPass

    @property
    def activations(self) -> Any:
        """The activations of the only target layer."""
        return self._only().activations

    @property
    def gradients(self) -> Any:
        """The gradients of the only target layer."""
        return self._only().gradients

    def _only(self) -> LayerFeatures:
        if len(self.layers) != 1:
            raise ConfigError(
                f"this method explains one target layer; got {len(self.layers)}: "
                f"{', '.join(repr(layer.name) for layer in self.layers)}"
            )
        return self.layers[0]


def _in_core(array: Any, batch: PreparedBatch) -> Any:
    """A backend's array in the batch's namespace (a TensorFlow tensor becomes numpy)."""
    try:
        if array_namespace(array) is batch.xp:
            return array
    except TypeError:
        pass
    return batch.xp.asarray(batch.backend.to_numpy(array), device=device(batch.x))


def _aspect_mismatch(height: int, width: int, image_height: int, image_width: int) -> float:
    """How many times the map's aspect ratio differs from the image's (1.0: the same)."""
    ratio = (height / width) / (image_height / image_width)
    return max(ratio, 1.0 / ratio)


def _other_reading(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the raw array read in the layout other than ``layout``;
    ``shape`` is the map as read in ``layout``, channels-first."""
    _, channels, height, width = shape
    if layout == "channels_first":  # given (B, C, H, W); read as (B, H, W, C)
        return width, channels, height
    return height, width, channels  # given (B, H, W, C); read as (B, C, H, W)


def looks_like_other_layout(
    shape: tuple[int, ...], layout: str, image_height: int, image_width: int
) -> bool:
    """Whether a feature map reads as the other layout: a channels-last tensor inside a
    channels-first model (ConvNeXt's LayerNorm blocks), or the reverse.

    ``shape`` is the map as read in ``layout``, channels-first ``(B, C, H, W)``.
    True when, read so, its aspect ratio is at least 2x off the image's, while
    read in the other layout it keeps the image's aspect ratio (within 1.25x)
    and is no larger than the image.
    """
    _, _, height, width = shape
    _, other_height, other_width = _other_reading(shape, layout)
    return (
        _aspect_mismatch(height, width, image_height, image_width) >= 2.0
        and _aspect_mismatch(other_height, other_width, image_height, image_width) <= 1.25
        and other_height <= image_height
        and other_width <= image_width
    )


def _check_feature_layout(
    described: str, shape: tuple[int, ...], layout: str, image_height: int, image_width: int
) -> None:
    """Refuse a feature map that reads as the other layout (:func:`looks_like_other_layout`)."""
    if not looks_like_other_layout(shape, layout, image_height, image_width):
        return
    batch, channels, height, width = shape
    other_channels, other_height, other_width = _other_reading(shape, layout)
    if layout == "channels_first":
        raw, read, other, axis = (batch, channels, height, width), "(B, C, H, W)", "last", 1
    else:
        raw, read, other, axis = (batch, height, width, channels), "(B, H, W, C)", "first", -1
    other_form = "(B, H, W, C)" if other == "last" else "(B, C, H, W)"
    raise TargetLayerError(
        f"{described} outputs shape {raw}, which looks channels-{other} {other_form}: "
        f"{other_channels} channels of {other_height}x{other_width} for a "
        f"{image_height}x{image_width} image, while the adapter reads {read}, "
        f"{channels} channels of {height}x{width}. Choose a layer where the channels are "
        f"on axis {axis}, or pass a reshape_transform that moves them there"
    )


def _checked_layer(
    name: str | None,
    activations: Any,
    gradients: Any,
    batch: PreparedBatch,
    method: str,
) -> LayerFeatures:
    backend, xp = batch.backend, batch.xp
    activations = xp.astype(
        to_channels_first(_in_core(activations, batch), backend.feature_layout, xp), batch.dtype
    )
    gradients = xp.astype(
        to_channels_first(_in_core(gradients, batch), backend.feature_layout, xp), batch.dtype
    )
    described = f"target layer {name!r}" if name else "the target layer"
    shape = tuple(activations.shape)
    rank = batch.spatial_axes + 2
    if len(shape) != rank or shape[0] != batch.size:
        hint = ""
        if len(shape) == 3 and rank == 4:
            hint = (
                "; for a transformer's (B, tokens, channels) output pass "
                "reshape_transform=groupcam_core.tokens_to_grid()"
            )
        elif len(shape) == rank + 1:
            hint = (
                f"; the input {tuple(batch.x.shape)} reads as {batch.form()}: if it is one "
                "input without a batch axis, add one (x[None])"
            )
        raise TargetLayerError(
            f"{described} gave activations of shape {shape}; the input is a batch "
            f"{batch.form()} with {batch.spatial_axes} spatial "
            f"{'axis' if batch.spatial_axes == 1 else 'axes'}, so {method} needs a {rank}-D "
            f"feature map (B, channels, {SPATIAL_LETTERS[batch.spatial_axes]}) with one row "
            f"per input (batch {batch.size}){hint}"
        )
    if tuple(gradients.shape) != shape:
        raise TargetLayerError(
            f"{described}: gradients of shape {tuple(gradients.shape)} do not match "
            f"activations {shape}"
        )
    if math.prod(shape[2:]) < 2:
        raise TargetLayerError(
            f"{described} outputs a {'x'.join(str(side) for side in shape[2:])} map, which has "
            "no spatial extent to explain; choose a layer before global pooling"
        )
    if batch.spatial_axes == 2:
        _check_feature_layout(described, shape, backend.feature_layout, *batch.spatial)
    if refusing_zero_gradients.get() and not bool(xp.any(gradients != 0)):
        raise layer_not_connected(name or "the target layer")
    return LayerFeatures(name=name, activations=activations, gradients=gradients)


def feature_maps(
    batch: PreparedBatch, targets: TargetSpec, method: str, rows: int | None = None
) -> FeatureMaps:
    """The gradient pass at the target layer(s), checked and converted for the core.

    Parameters
    ----------
    batch
        The prepared batch.
    targets
        The user's targets: classes or a target function (see
        :func:`~groupcam_core.targets.make_objective`).
    method
        The method's name, for error messages ("Group-CAM", "Grad-CAM", ...).
    rows
        At most this many images per gradient pass (``None``: the whole batch in
        one). Images are independent in a model in inference mode, so a batch
        larger than the chunk of masked passes goes through in chunks of that
        size, and memory does not grow with the batch.
    """
    backend = batch.backend
    objective = make_objective(targets, batch.size, backend.model_outputs, backend.input_layout)
    requested = batch.size if rows is None else min(rows, batch.size)
    rows = requested
    while True:
        try:
            if rows >= batch.size:
                result = backend.gradient_pass(batch.x, objective)
            else:
                result = _gradient_pass_in_chunks(batch, targets, rows)
            break
        except Exception as error:
            if rows == 1 or not is_out_of_memory(error):
                raise
            rows = max(1, rows // 2)  # images are independent: the same gradients in halves
    if rows < requested:
        warn(out_of_memory_warning(f"the gradient pass of {method}", requested, rows))
    if isinstance(result.activations, tuple):
        names = result.layer_names or (None,) * len(result.activations)
        pairs = zip(names, result.activations, result.gradients, strict=True)
    else:
        pairs = [(batch.layer, result.activations, result.gradients)]
    layers = tuple(
        _checked_layer(name, activations, gradients, batch, method)
        for name, activations, gradients in pairs
    )
    return FeatureMaps(layers=layers, objective=objective, result=result)


def _gradient_pass_in_chunks(batch: PreparedBatch, targets: TargetSpec, rows: int) -> GradientPass:
    """:meth:`Backend.gradient_pass` on chunks of ``rows`` images, joined into one result."""
    backend = batch.backend
    shared = targets is None or isinstance(targets, numbers.Integral) or is_target_function(targets)
    per_image = None if shared else per_image_classes(targets, batch.size)
    parts = []
    for start in range(0, batch.size, rows):
        stop = min(start + rows, batch.size)
        chunk_targets = targets if per_image is None else per_image[start:stop]
        objective = make_objective(
            chunk_targets, stop - start, backend.model_outputs, backend.input_layout
        )
        parts.append(backend.gradient_pass(batch.x[start:stop], objective))

    def joined_layers(field: str) -> Any:
        values = [getattr(part, field) for part in parts]
        if isinstance(values[0], tuple):
            return tuple(concat_rows([value[i] for value in values]) for i in range(len(values[0])))
        return concat_rows(values)

    return GradientPass(
        activations=joined_layers("activations"),
        gradients=joined_layers("gradients"),
        outputs=concat_rows([part.outputs for part in parts]),
        targets=concat_rows([part.targets for part in parts]),
        layer_names=parts[0].layer_names,
    )


def check_groups(groups: int, channels: int, layer: str | None) -> None:
    """Raise :class:`ConfigError` when there are more groups than channels."""
    if groups > channels:
        name = f"target layer {layer!r}" if layer else "the target layer"
        raise ConfigError(
            f"groups={groups} is more than the {channels} channels of {name}; "
            f"use groups between 1 and {channels}"
        )
