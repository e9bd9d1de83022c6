"""Step 1 for a prepared batch: the gradient pass at the target layer(s), checked.

The backend's activations and gradients come back in the core's namespace,
channels-first and in the compute dtype, one :class:`LayerFeatures` per target
layer; a batch larger than the masked-pass chunk goes through in chunks.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device

from .batches import PreparedBatch, concat_rows, to_channels_first
from .errors import ConfigError, TargetLayerError
from .protocol import GradientPass
from .targets import Objective, TargetSpec, is_target_function, make_objective, per_image_classes

__all__ = ["FeatureMaps", "LayerFeatures", "check_groups", "feature_maps"]


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
    if len(shape) != 4 or shape[0] != batch.size:
        hint = (
            "; for a transformer's (B, tokens, channels) output pass "
            "reshape_transform=groupcam_core.tokens_to_grid()"
            if len(shape) == 3
            else ""
        )
        raise TargetLayerError(
            f"{described} gave activations of shape {shape}; {method} needs a 4-D feature map "
            f"with one row per image (batch {batch.size}){hint}"
        )
    if tuple(gradients.shape) != shape:
        raise TargetLayerError(
            f"{described}: gradients of shape {tuple(gradients.shape)} do not match "
            f"activations {shape}"
        )
    if shape[2] * shape[3] < 2:
        raise TargetLayerError(
            f"{described} outputs a {shape[2]}x{shape[3]} map, which has no spatial extent to "
            "explain; choose a layer before global pooling"
        )
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
    objective = make_objective(targets, batch.size, backend.outputs_probabilities)
    if rows is None or batch.size <= rows:
        result = backend.gradient_pass(batch.x, objective)
    else:
        result = _gradient_pass_in_chunks(batch, targets, rows)
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
        objective = make_objective(chunk_targets, stop - start, backend.outputs_probabilities)
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
