"""The Group-CAM algorithm, vectorised over all images and groups of a batch.

Section 2 of the design notes lists the twelve steps; the comments below refer
to them by number. Everything runs in the array namespace of the adapter's
arrays, so on an accelerator the masks, blurs and merges stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from . import ops
from .config import GroupCAMConfig
from .errors import ConfigError, InputError, TargetLayerError
from .protocol import Backend, Layout
from .result import Explanation
from .targets import TargetSpec, check_outputs, make_target_resolver

__all__ = [
    "GroupMasks",
    "build_group_masks",
    "explain",
    "forward_in_chunks",
    "merge_masks",
    "padded_rows",
    "validate_input",
]


def _channels_first(array: Any, layout: Layout, xp: Any) -> Any:
    """Channels-last 4-D arrays to channels-first; anything else unchanged (checked later)."""
    if layout == "channels_last" and array.ndim == 4:
        return xp.permute_dims(array, (0, 3, 1, 2))
    return array


def _compute_dtype(array: Any, xp: Any) -> Any:
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
    if not xp.isdtype(x.dtype, "real floating"):
        raise InputError(f"expected a floating-point batch, got dtype {x.dtype}")
    if not bool(xp.all(xp.isfinite(x))):
        raise InputError("the input batch contains NaN or inf")


@dataclass(frozen=True)
class GroupMasks:
    """Steps 2 to 8 for a batch: one mask per image and group, flattened to B*G rows.

    Attributes
    ----------
    upsampled
        ``(B*G, H, W)`` group maps after ReLU, denoising and upsampling (step 6).
    masks
        ``(B*G, H, W)`` min-max normalised masks (step 8); zeros for constant maps.
    constant
        ``(B*G,)`` bool: the map was constant at feature resolution (step 7).
    """

    upsampled: Any
    masks: Any
    constant: Any


def build_group_masks(
    activations: Any,
    gradients: Any,
    config: GroupCAMConfig,
    height: int,
    width: int,
    xp: Any,
) -> GroupMasks:
    """Turn channels-first activations and gradients into per-group soft masks.

    Parameters
    ----------
    activations, gradients
        ``(B, K, u, v)`` arrays of the target layer.
    config
        The Group-CAM constants.
    height, width
        Size of the model's input images.
    xp
        Their array namespace.
    """
    batch, channels, rows, cols = activations.shape
    groups = config.groups
    # Steps 2 and 3: alpha_k = spatial mean of the gradient; sum alpha_k * A_k per group.
    alpha = xp.mean(xp.reshape(gradients, (batch, channels, rows * cols)), axis=-1)
    weighted = xp.reshape(activations, (batch, channels, rows * cols)) * alpha[:, :, None]
    summing = ops.to_namespace(ops.group_matrix(groups, channels), xp, weighted)
    group_maps = xp.matmul(summing, weighted)  # (B, G, u*v)
    # Step 4.
    group_maps = xp.maximum(group_maps, xp.zeros_like(group_maps))
    # Step 5: keep values strictly above the percentile (at feature resolution).
    if config.percentile is not None:
        threshold = ops.percentile_last_axis(group_maps, config.percentile, xp)
        group_maps = xp.where(group_maps > threshold, group_maps, 0.0)
    # Step 7 is decided here, before upsampling: a constant u x v map upsamples to a
    # constant map mathematically, but float rounding of the interpolation weights
    # could make it look non-constant and normalisation would then amplify noise.
    constant = xp.reshape(
        xp.max(group_maps, axis=-1) <= xp.min(group_maps, axis=-1), (batch * groups,)
    )
    # Step 6.
    maps = xp.reshape(group_maps, (batch * groups, rows, cols))
    upsampled = ops.resize_bilinear(maps, height, width, xp)
    # Step 8.
    masks, flat = ops.min_max_normalise(upsampled, xp)
    constant = constant | flat
    masks = xp.where(constant[:, None, None], 0.0, masks)
    upsampled = xp.where(constant[:, None, None], 0.0, upsampled)
    return GroupMasks(upsampled=upsampled, masks=masks, constant=constant)


def merge_masks(
    maps: Any, scores: Any, owner: Any, batch: int, final_relu: bool, xp: Any
) -> tuple[Any, Any]:
    """Step 12: weight maps by scores, sum per image, ReLU, min-max normalise.

    Parameters
    ----------
    maps
        ``(N, H, W)`` maps that received a score.
    scores
        ``(N,)`` their scores.
    owner
        ``(N,)`` int index of the image each map belongs to.
    batch
        Number of images.
    final_relu
        Apply a ReLU before normalising.

    Returns
    -------
    saliency, degenerate
        ``(B, H, W)`` maps in [0, 1] and a ``(B,)`` bool array marking constant
        results (returned as zeros).
    """
    count, height, width = maps.shape
    images = xp.arange(batch, device=device(maps))
    weights = xp.where(owner[None, :] == images[:, None], scores[None, :], 0.0)
    merged = xp.matmul(weights, xp.reshape(maps, (count, height * width)))
    if final_relu:
        merged = xp.maximum(merged, xp.zeros_like(merged))
    saliency, degenerate = ops.min_max_normalise(xp.reshape(merged, (batch, height, width)), xp)
    return saliency, degenerate


def _target_probabilities(
    outputs: Any, targets: Any, already_probabilities: bool, dtype: Any, xp: Any
) -> Any:
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
) -> Iterator[tuple[int, int, Any]]:
    """Run ``count`` rows through ``backend.forward``, ``batch_size`` at a time.

    ``make_chunk(start, stop)`` builds the model-ready rows ``start:stop``. For
    backends with a fixed batch shape a short last chunk is padded with copies
    of its first row to :func:`padded_rows`. Yields ``(start, stop, outputs)``
    with the outputs of the real rows only; ``where`` names the inputs in the
    error raised for outputs that are not ``(rows, classes)``.
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
        check_outputs(outputs, sent, where=where)
        yield start, stop, outputs[:rows, ...]


def _score_inputs(
    backend: Backend,
    blurred: Any,
    difference: Any,
    owner: Any,
    masks: Any,
    targets: Any,
    batch_size: int,
    dtype: Any,
    xp: Any,
) -> Any:
    """Steps 10 and 11: probability of the target on ``blur + mask * (x - blur)``.

    The masked inputs are built chunk by chunk, never all at once; for backends
    with compiled forwards, chunk shapes come from a small fixed set.
    """
    mask_axis = 1 if backend.input_layout == "channels_first" else 3

    def masked_inputs(start: int, stop: int) -> Any:
        index = owner[start:stop]
        chunk_masks = xp.expand_dims(
            xp.astype(masks[start:stop, ...], blurred.dtype), axis=mask_axis
        )
        return xp.take(blurred, index, axis=0) + chunk_masks * xp.take(difference, index, axis=0)

    probabilities = [
        _target_probabilities(
            outputs,
            xp.take(targets, owner[start:stop], axis=0),
            backend.outputs_probabilities,
            dtype,
            xp,
        )
        for start, stop, outputs in forward_in_chunks(
            backend, owner.shape[0], batch_size, masked_inputs, "the model (on masked inputs)"
        )
    ]
    return xp.concat(probabilities, axis=0)


def explain(
    backend: Backend,
    x: Any,
    targets: TargetSpec = None,
    config: GroupCAMConfig | None = None,
    batch_size: int | None = None,
    layer: str | None = None,
) -> Explanation:
    """Explain a batch with Group-CAM through a framework adapter.

    Parameters
    ----------
    backend
        An object implementing :class:`~groupcam_core.protocol.Backend`.
    x
        The batch the model consumes, in the adapter's input layout.
    targets
        ``None`` (each image's top class), one int, or one int per image.
    config
        Group-CAM constants; defaults to the "paper" preset.
    batch_size
        Rows per forward pass for the masked inputs; defaults to the adapter's.
    layer
        Name of the target layer, recorded in the result.

    Returns
    -------
    Explanation
    """
    config = config or GroupCAMConfig()
    if batch_size is None:
        batch_size = backend.default_batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")

    x = backend.prepare_input(x)
    xp = array_namespace(x)
    validate_input(x, backend.input_layout, xp)
    batch = x.shape[0]
    if backend.input_layout == "channels_first":
        height, width = x.shape[2], x.shape[3]
    else:
        height, width = x.shape[1], x.shape[2]

    # Step 1.
    result = backend.gradient_pass(x, make_target_resolver(targets, batch))
    dtype = _compute_dtype(x, xp)
    activations = xp.astype(_channels_first(result.activations, backend.feature_layout, xp), dtype)
    gradients = xp.astype(_channels_first(result.gradients, backend.feature_layout, xp), dtype)
    _check_features(activations, gradients, batch, config.groups, layer)

    # Steps 2-8.
    group_masks = build_group_masks(activations, gradients, config, height, width, xp)
    groups = config.groups
    owner_all = xp.reshape(
        xp.broadcast_to(xp.arange(batch, device=device(x))[:, None], (batch, groups)),
        (batch * groups,),
    )
    if config.skip_constant_masks:
        (kept,) = xp.nonzero(~group_masks.constant)
    else:
        kept = xp.arange(batch * groups, device=device(x))
    kept = xp.astype(kept, owner_all.dtype)
    owner = xp.take(owner_all, kept, axis=0)
    masks = xp.take(group_masks.masks, kept, axis=0)

    # Steps 9-11: the B blurred baselines (an all-zero mask) go first in one stream
    # with the masked inputs, chunked together.
    x_first = _channels_first(x, backend.input_layout, xp)
    blurred = ops.blur_images(x_first, config.blur_kernel_size, config.blur_sigma, xp)
    if backend.input_layout == "channels_last":
        blurred = xp.permute_dims(blurred, (0, 2, 3, 1))
    difference = x - blurred
    image_index = xp.arange(batch, device=device(x), dtype=owner.dtype)
    stream_owner = xp.concat([image_index, owner], axis=0)
    stream_masks = xp.concat(
        [xp.zeros((batch, height, width), dtype=masks.dtype, device=device(x)), masks], axis=0
    )
    probabilities = _score_inputs(
        backend,
        blurred,
        difference,
        stream_owner,
        stream_masks,
        result.targets,
        batch_size,
        dtype,
        xp,
    )
    baseline = probabilities[:batch]
    scores = probabilities[batch:] - xp.take(baseline, owner, axis=0)
    if config.score_relu:
        scores = xp.maximum(scores, xp.zeros_like(scores))

    # Step 12.
    source = (
        masks if config.merge_source == "masks" else xp.take(group_masks.upsampled, kept, axis=0)
    )
    saliency, degenerate = merge_masks(source, scores, owner, batch, config.final_relu, xp)

    clean_probability = _target_probabilities(
        result.outputs, result.targets, backend.outputs_probabilities, dtype, xp
    )
    kept_np = backend.to_numpy(kept).astype(np.int64)
    group_scores = np.zeros(batch * groups, dtype=np.float32)
    group_scores[kept_np] = backend.to_numpy(scores)
    skipped = np.ones(batch * groups, dtype=bool)
    skipped[kept_np] = False
    return Explanation(
        saliency=backend.to_numpy(saliency).astype(np.float32),
        targets=backend.to_numpy(result.targets).astype(np.int64),
        target_probabilities=backend.to_numpy(clean_probability).astype(np.float32),
        baseline_scores=backend.to_numpy(baseline).astype(np.float32),
        group_scores=group_scores.reshape(batch, groups),
        skipped_groups=skipped.reshape(batch, groups),
        degenerate=backend.to_numpy(degenerate).astype(bool),
        config=config,
        layer=layer,
    )


def _check_features(
    activations: Any, gradients: Any, batch: int, groups: int, layer: str | None
) -> None:
    name = f"target layer {layer!r}" if layer else "the target layer"
    shape = tuple(activations.shape)
    if len(shape) != 4 or shape[0] != batch:
        raise TargetLayerError(
            f"{name} gave activations of shape {shape}; Group-CAM needs a 4-D feature map "
            f"with one row per image (batch {batch})"
        )
    if tuple(gradients.shape) != shape:
        raise TargetLayerError(
            f"{name}: gradients of shape {tuple(gradients.shape)} do not match activations {shape}"
        )
    channels, rows, cols = shape[1:]
    if rows * cols < 2:
        raise TargetLayerError(
            f"{name} outputs a {rows}x{cols} map, which has no spatial extent to explain; "
            "choose a layer before global pooling"
        )
    if groups > channels:
        raise ConfigError(
            f"groups={groups} is more than the {channels} channels of {name}; "
            f"use groups between 1 and {channels}"
        )
