"""What Group-CAM, the comparison methods and the metrics share between model and maths.

Input checks and layouts, the arithmetic dtype, the check of a target layer's
feature map, the probability of each target class, and the chunked forward
passes through a :class:`~groupcam_core.protocol.Backend`. Every function that
takes ``xp`` works in any array-API namespace (numpy, torch, jax.numpy), on any
device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device

from .dtypes import is_half_precision, is_real_floating
from .errors import ConfigError, InputError, ModelOutputError, TargetLayerError
from .namespaces import namespace_of
from .protocol import Backend, GradientPass, Layout
from .targets import (
    Objective,
    TargetSpec,
    check_outputs,
    is_target_function,
    make_objective,
    per_image_classes,
)

__all__ = [
    "FeatureMaps",
    "LayerFeatures",
    "PreparedBatch",
    "cast_input",
    "check_groups",
    "compute_dtype",
    "concat_rows",
    "feature_maps",
    "is_half_precision",
    "is_real_floating",
    "forward_in_chunks",
    "padded_rows",
    "positive_int",
    "prepare_batch",
    "real_number",
    "resolve_batch_size",
    "target_probabilities",
    "to_channels_first",
    "validate_input",
]


def positive_int(value: Any, name: str, detail: str = "", minimum: int = 1) -> int:
    """``value`` as an int if it is an integer of at least ``minimum``, else ConfigError.

    Python and numpy integers are accepted; bools, floats and strings are not.
    ``detail`` says in the error what the setting means.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int of at least {minimum}"
        meaning = f" ({detail})" if detail else ""
        raise ConfigError(f"{name} must be {kind}{meaning}, got {value!r}")
    return int(value)


def real_number(
    value: Any,
    name: str,
    detail: str = "",
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a float if it is a finite real number within the bounds, else ConfigError."""
    valid = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (at_most is None or value <= at_most)
    )
    if not valid:
        bounds = [
            f"above {above:g}" if above is not None else "",
            f"at least {at_least:g}" if at_least is not None else "",
            f"at most {at_most:g}" if at_most is not None else "",
        ]
        limits = " and ".join(bound for bound in bounds if bound)
        meaning = f" ({detail})" if detail else ""
        raise ConfigError(
            f"{name} must be a finite number{' ' + limits if limits else ''}{meaning}, "
            f"got {value!r}"
        )
    return float(value)


def to_channels_first(array: Any, layout: Layout, xp: Any) -> Any:
    """Channels-last 4-D arrays to channels-first; anything else unchanged (checked later)."""
    if layout == "channels_last" and array.ndim == 4:
        return xp.permute_dims(array, (0, 3, 1, 2))
    return array


def compute_dtype(array: Any, xp: Any) -> Any:
    """The dtype of the core's arithmetic: float64 for float64 input, else float32.

    Half-precision models and inputs (bfloat16, float16) are computed on in
    float32: masks, blurs and scores never lose precision to the model's dtype.
    """
    return xp.float64 if array.dtype == xp.float64 else xp.float32


def validate_input(x: Any, layout: Layout, xp: Any) -> None:
    """Raise :class:`InputError` unless ``x`` is a non-empty, finite 4-D float batch."""
    if x.ndim != 4:
        expected = "(B, C, H, W)" if layout == "channels_first" else "(B, H, W, C)"
        hint = " (add a batch axis for a single image)" if x.ndim == 3 else ""
        raise InputError(f"expected a 4-D batch {expected}, got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise InputError("the input batch is empty")
    if 0 in tuple(x.shape):
        raise InputError(f"the input batch has an empty axis: shape {tuple(x.shape)}")
    if not is_real_floating(x.dtype, xp):
        raise InputError(f"expected a floating-point batch, got dtype {x.dtype}")
    if not bool(xp.all(xp.isfinite(x))):
        raise InputError("the input batch contains NaN or inf")


def cast_input(x: Any, cast: Callable[[Any], Any]) -> Any:
    """``cast(x)``, with a clear error when finite values overflow the model's dtype.

    Without this check a float64 batch holding 1e6 becomes inf in float16 and
    would be reported as "contains NaN or inf".
    """
    cast_x = cast(x)
    if cast_x is x or getattr(x, "ndim", 0) == 0:
        return cast_x
    xp = array_namespace(x)
    if not is_real_floating(x.dtype, xp):
        return cast_x
    cast_xp = array_namespace(cast_x)
    if bool(xp.all(xp.isfinite(x))) and not bool(cast_xp.all(cast_xp.isfinite(cast_x))):
        largest = float(xp.max(xp.abs(x)))
        raise InputError(
            f"the input holds values up to {largest:g} in magnitude, which overflow the "
            f"model's dtype {cast_x.dtype}; normalize the images the way the model was trained"
        )
    return cast_x


def target_probabilities(
    outputs: Any, targets: Any, already_probabilities: bool, dtype: Any, xp: Any
) -> Any:
    """Softmax probability of each row's target class (log-sum-exp; or the output itself).

    Parameters
    ----------
    outputs
        ``(n, classes)`` model outputs.
    targets
        ``(n,)`` integer class indices.
    already_probabilities
        The outputs are probabilities: pick the target's value as it is.
    dtype
        The dtype to compute in (float32 or float64).
    """
    outputs = xp.astype(outputs, dtype)
    classes = xp.arange(outputs.shape[1], device=device(outputs))
    picked = xp.sum(xp.where(classes[None, :] == targets[:, None], outputs, 0.0), axis=1)
    if already_probabilities:
        return picked
    top = xp.max(outputs, axis=1)
    log_total = top + xp.log(xp.sum(xp.exp(outputs - top[:, None]), axis=1))
    return xp.exp(picked - log_total)


def padded_rows(rows: int, batch_size: int) -> int:
    """Rows a chunk is padded to for backends that compile one function per shape.

    Full chunks have ``batch_size`` rows; a shorter last chunk is padded to the
    next power of two (at most ``batch_size``). A compiled forward thus sees at
    most ``log2(batch_size) + 2`` shapes over its lifetime, each traced once,
    and a short tail wastes less than half its rows.
    """
    if rows >= batch_size:
        return rows
    return min(batch_size, 1 << (rows - 1).bit_length())


def forward_in_chunks(
    backend: Backend,
    count: int,
    batch_size: int,
    make_chunk: Callable[[int, int], Any],
    where: str,
    class_scores: bool = True,
) -> Iterator[tuple[int, int, Any]]:
    """Run ``count`` rows through ``backend.forward``, ``batch_size`` at a time.

    ``make_chunk(start, stop)`` builds the model-ready rows ``start:stop``. For
    backends with a fixed batch shape a short last chunk is padded with copies
    of its first row to :func:`padded_rows`. Yields ``(start, stop, outputs)``
    with the outputs of the real rows only; ``where`` names the inputs in the
    error raised for outputs that are not ``(rows, classes)`` (with
    ``class_scores=False``, outputs of any shape with a first axis of ``rows``,
    for target functions).
    """
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        chunk = make_chunk(start, stop)
        rows = stop - start
        sent = padded_rows(rows, batch_size) if backend.fixed_batch_shape else rows
        if sent > rows:
            xp = array_namespace(chunk)
            filler = xp.broadcast_to(chunk[:1, ...], (sent - rows, *chunk.shape[1:]))
            chunk = xp.concat([chunk, filler], axis=0)
        outputs = backend.forward(chunk)
        if class_scores:
            check_outputs(outputs, sent, where=where)
        elif tuple(getattr(outputs, "shape", ()))[:1] != (sent,):
            raise ModelOutputError(
                f"{where} returned an output of shape {tuple(getattr(outputs, 'shape', ()))} "
                f"for a batch of {sent}; its first axis must be the batch"
            )
        yield start, stop, outputs[:rows, ...]


def resolve_batch_size(batch_size: Any, backend: Backend, preferred: int | None = None) -> int:
    """The chunk size: ``batch_size``, else ``preferred`` (an explainer's), else the backend's."""
    if batch_size is None:
        batch_size = preferred
    if batch_size is None:
        batch_size = backend.default_batch_size
    return positive_int(batch_size, "batch_size")


@dataclass(frozen=True)
class PreparedBatch:
    """A batch converted by a backend and validated, with what the methods need to know.

    Attributes
    ----------
    backend
        The backend that prepared it.
    x
        The batch in the backend's array type, input layout and dtype.
    xp
        Its array namespace.
    dtype
        The dtype of the core's arithmetic (:func:`compute_dtype`).
    size, height, width
        Images in the batch and their spatial size.
    mask_axis
        The channel axis of ``x``, where a ``(n, H, W)`` mask is broadcast.
    layer
        The backend's target layer name, or ``None``.
    """

    backend: Backend
    x: Any
    xp: Any
    dtype: Any
    size: int
    height: int
    width: int
    mask_axis: int
    layer: str | None

    def channels_first(self) -> Any:
        """``x`` as channels-first, in the compute dtype."""
        return self.xp.astype(
            to_channels_first(self.x, self.backend.input_layout, self.xp), self.dtype
        )

    def to_input_layout(self, images: Any) -> Any:
        """Channels-first ``(n, C, H, W)`` images in the backend's layout and input dtype."""
        xp = self.xp
        if self.backend.input_layout == "channels_last":
            images = xp.permute_dims(images, (0, 2, 3, 1))
        return xp.astype(images, self.x.dtype)


def prepare_batch(backend: Backend, x: Any) -> PreparedBatch:
    """Convert ``x`` with the backend and check it (:func:`validate_input`)."""
    x = backend.prepare_input(x)
    xp = array_namespace(x)
    validate_input(x, backend.input_layout, xp)
    if backend.input_layout == "channels_first":
        height, width, mask_axis = x.shape[2], x.shape[3], 1
    else:
        height, width, mask_axis = x.shape[1], x.shape[2], 3
    return PreparedBatch(
        backend=backend,
        x=x,
        xp=xp,
        dtype=compute_dtype(x, xp),
        size=x.shape[0],
        height=height,
        width=width,
        mask_axis=mask_axis,
        layer=backend.layer_name or None,
    )


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


def concat_rows(arrays: Sequence[Any]) -> Any:
    """``arrays`` joined along the first axis, in their own framework (``None`` stays)."""
    if arrays[0] is None:
        return None
    xp = namespace_of(*arrays)
    concat = getattr(xp, "concat", None) or xp.concatenate
    return concat(list(arrays), axis=0)


def check_groups(groups: int, channels: int, layer: str | None) -> None:
    """Raise :class:`ConfigError` when there are more groups than channels."""
    if groups > channels:
        name = f"target layer {layer!r}" if layer else "the target layer"
        raise ConfigError(
            f"groups={groups} is more than the {channels} channels of {name}; "
            f"use groups between 1 and {channels}"
        )
