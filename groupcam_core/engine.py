"""The Group-CAM algorithm, vectorized over all images, groups and target layers of a batch.

docs/algorithm.md lists the twelve steps; the comments below refer to them by
number. Everything runs in the array namespace of the adapter's arrays, so on an
accelerator the masks, blurs and merges stay on the device. Full-resolution
masks exist only for one chunk of ``batch_size`` rows at a time, and the gradient
pass runs on at most ``batch_size`` images at a time: memory does not grow with
the number of images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import device

from . import ops
from .batches import PreparedBatch, prepare_batch
from .config import GroupCAMConfig
from .features import LayerFeatures, check_groups, feature_maps
from .forward import forward_in_chunks, resolve_batch_size
from .per_image import explain_by_target, groups_of, merge_explanations
from .protocol import Backend
from .result import Explanation
from .targets import Objective, TargetSpec

__all__ = [
    "GroupMaps",
    "explain_group_cam",
    "fuse_layers",
    "group_maps",
    "merge_masks",
    "normalized_masks",
]


@dataclass(frozen=True)
class GroupMaps:
    """Steps 2 to 5 and 7 for a batch: one feature-resolution map per image and group.

    Attributes
    ----------
    maps
        ``(B*G, *feature_spatial)`` group maps after ReLU and denoising,
        image-major; zeros where ``constant``.
    constant
        ``(B*G,)`` bool: the map was constant (or not finite) at feature
        resolution (step 7).
    """

    maps: Any
    constant: Any


def group_assignment(weighted: Any, config: GroupCAMConfig, xp: Any) -> Any:
    """Step 3's grouping: a ``(G, K)`` 0/1 matrix, or ``(B, G, K)`` for k-means."""
    channels = weighted.shape[1]
    if config.grouping == "kmeans":
        from .grouping import kmeans_group_matrices

        # The engine runs eagerly, so testing convergence every few iterations (one
        # host read each) is allowed; it gives the same groups as running all of them.
        return kmeans_group_matrices(weighted, config.groups, xp, check_every=5)
    return ops.to_namespace(ops.group_matrix(config.groups, channels), xp, weighted)


def group_maps(activations: Any, gradients: Any, config: GroupCAMConfig, xp: Any) -> GroupMaps:
    """Steps 2-5 and the test of step 7 on channels-first ``(B, K, *feature_spatial)`` arrays
    (``(B, K, u)``, ``(B, K, u, v)`` or ``(B, K, t, u, v)``).

    The constancy test runs here, before upsampling: a constant ``u x v`` map
    upsamples to a constant map mathematically, but float rounding of the
    interpolation weights could make it look non-constant, and normalization
    would then amplify noise.
    """
    batch, channels, *where = activations.shape
    positions = math.prod(where)
    groups = config.groups
    # Steps 2 and 3: alpha_k = spatial mean of the gradient; sum alpha_k * A_k per group.
    alpha = xp.mean(xp.reshape(gradients, (batch, channels, positions)), axis=-1)
    weighted = xp.reshape(activations, (batch, channels, positions)) * alpha[:, :, None]
    maps = ops.matmul(group_assignment(weighted, config, xp), weighted, xp)  # (B, G, u*v)
    # Step 4.
    maps = xp.maximum(maps, xp.zeros_like(maps))
    # Step 5: keep values strictly above the percentile (at feature resolution).
    if config.percentile is not None:
        threshold = ops.percentile_last_axis(maps, config.percentile, xp)
        maps = xp.where(maps > threshold, maps, 0.0)
    high, low = xp.max(maps, axis=-1), xp.min(maps, axis=-1)
    constant = xp.reshape((high <= low) | ~xp.isfinite(high - low), (batch * groups,))
    maps = xp.reshape(maps, (batch * groups, *where))
    maps = xp.where(xp.reshape(constant, (batch * groups, *(1,) * len(where))), 0.0, maps)
    return GroupMaps(maps=maps, constant=constant)


def normalized_masks(maps: Any, spatial: Sequence[int], xp: Any) -> tuple[Any, Any]:
    """Steps 6 and 8 for some group maps: upsample to the input's ``spatial`` size
    (linear on each axis), then min-max normalize.

    Returns
    -------
    upsampled, masks
        ``(n, *spatial)`` each; a map that is constant after upsampling gets an
        all-zero mask.
    """
    upsampled = ops.resize_linear(maps, spatial, xp)
    masks, _ = ops.min_max_normalize(upsampled, xp, len(spatial))
    return upsampled, masks


def merge_masks(merged: Any, final_relu: bool, xp: Any) -> tuple[Any, Any]:
    """Step 12's ending: ReLU (if asked) and min-max normalize ``(B, *spatial)`` sums.

    Returns
    -------
    saliency, degenerate
        ``(B, *spatial)`` maps in [0, 1] and a ``(B,)`` bool array marking
        constant results (returned as zeros).
    """
    if final_relu:
        merged = xp.maximum(merged, xp.zeros_like(merged))
    return ops.min_max_normalize(merged, xp, merged.ndim - 1)


def fuse_layers(maps: Sequence[Any], how: str, xp: Any) -> tuple[Any, Any]:
    """One map from several layers' ``(B, *spatial)`` maps in [0, 1]: mean or max, normalized."""
    stacked = xp.stack(list(maps), axis=0)
    combined = xp.mean(stacked, axis=0) if how == "mean" else xp.max(stacked, axis=0)
    return ops.min_max_normalize(combined, xp, combined.ndim - 1)


@dataclass
class _Layer:
    """One target layer's part of the masked-input stream."""

    features: LayerFeatures
    grouped: GroupMaps
    kept: Any  # indices into the layer's B*G rows that get a pass
    owner: Any  # the image of each kept row
    first: int  # where the layer's rows start in the stream
    merged: Any  # (B, positions) running weighted sum (step 12)

    @property
    def stop(self) -> int:
        return self.first + int(self.kept.shape[0])


def _layer_stream(
    batch: PreparedBatch, layers: Sequence[LayerFeatures], config: GroupCAMConfig
) -> list[_Layer]:
    xp, size, where = batch.xp, batch.size, device(batch.x)
    groups = config.groups
    owner_all = xp.reshape(
        xp.broadcast_to(xp.arange(size, device=where)[:, None], (size, groups)), (size * groups,)
    )
    stream: list[_Layer] = []
    first = size  # the B blurred baselines come first
    for features in layers:
        check_groups(groups, features.activations.shape[1], features.name)
        grouped = group_maps(features.activations, features.gradients, config, xp)
        if config.skip_constant_masks:
            (kept,) = xp.nonzero(~grouped.constant)
        else:
            kept = xp.arange(size * groups, device=where)
        kept = xp.astype(kept, owner_all.dtype)
        merged = xp.zeros((size, batch.positions), dtype=batch.dtype, device=where)
        layer = _Layer(features, grouped, kept, xp.take(owner_all, kept, axis=0), first, merged)
        stream.append(layer)
        first = layer.stop
    return stream


def explain_group_cam(
    backend: Backend,
    x: Any,
    targets: TargetSpec = None,
    config: GroupCAMConfig | None = None,
    batch_size: int | None = None,
) -> Explanation:
    """Explain a batch with Group-CAM through a framework adapter.

    Parameters
    ----------
    backend
        An object implementing :class:`~groupcam_core.protocol.Backend`.
    x
        The batch the model consumes, in the adapter's input layout.
    targets
        ``None`` (each image's top class), one int, one int per image, a
        target function ``f(outputs) -> (B,)`` (see :mod:`groupcam_core.targets`),
        or one int or target function per image (see :mod:`groupcam_core.per_image`).
    config
        Group-CAM constants; defaults to the "paper" preset.
    batch_size
        Rows per forward pass for the masked inputs; defaults to the adapter's.

    Returns
    -------
    Explanation
    """
    config = config or GroupCAMConfig()
    groups = groups_of(targets, x)
    if groups is not None:
        return explain_by_target(
            lambda images, shared: explain_group_cam(backend, images, shared, config, batch_size),
            x,
            groups,
            merge_explanations,
        )
    batch_size = resolve_batch_size(batch_size, backend)
    batch = prepare_batch(backend, x)
    xp, size, spatial, positions = batch.xp, batch.size, batch.spatial, batch.positions
    where = device(batch.x)

    # Step 1 (one gradient pass for every target layer).
    features = feature_maps(batch, targets, "Group-CAM", rows=batch_size)
    objective: Objective = features.objective
    chosen = features.result.targets

    # Steps 2-5 and 7, per layer.
    layers = _layer_stream(batch, features.layers, config)

    # Step 9. The blur and the masked inputs are computed in the compute dtype and
    # cast to the model's input dtype only when a chunk is handed to the model.
    images = batch.channels_first()
    blurred = ops.blur_images(
        images, config.blur_kernel_size, config.blur_sigma, xp, batch.spatial_axes
    )
    difference = images - blurred

    # Steps 10 and 11: the B blurred baselines (an all-zero mask) go first in one
    # stream with every layer's masked inputs, chunked together. Steps 6 and 8 run
    # chunk by chunk, and each chunk's share of step 12's weighted sum is added as
    # soon as its scores are known (the baselines always come before any masked row).
    stream_owner = xp.concat(
        [xp.arange(size, device=where, dtype=layers[0].owner.dtype)]
        + [layer.owner for layer in layers],
        axis=0,
    )
    total = layers[-1].stop
    chunk_maps: dict[tuple[int, int], Any] = {}

    def masked_inputs(start: int, stop: int) -> Any:
        index = stream_owner[start:stop]
        rows = xp.take(blurred, index, axis=0)
        masks = [
            xp.zeros((max(min(stop, size) - start, 0), *spatial), dtype=batch.dtype, device=where)
        ]
        for number, layer in enumerate(layers):
            low, high = max(start, layer.first), min(stop, layer.stop)
            if high <= low:
                continue
            chosen_maps = xp.take(
                layer.grouped.maps, layer.kept[low - layer.first : high - layer.first], axis=0
            )
            upsampled, layer_masks = normalized_masks(chosen_maps, spatial, xp)
            chunk_maps[(start, number)] = (
                layer_masks if config.merge_source == "masks" else upsampled
            )
            masks.append(layer_masks)
        stacked = xp.concat(masks, axis=0)
        return batch.to_input_layout(
            rows + stacked[:, None, ...] * xp.take(difference, index, axis=0)
        )

    class_outputs = objective.kind == "class"
    probabilities: list[Any] = []
    baseline: Any = None
    image_index = xp.arange(size, device=where)
    for start, stop, outputs in forward_in_chunks(
        backend, total, batch_size, masked_inputs, "the model (on masked inputs)", class_outputs
    ):
        row_targets = None if chosen is None else xp.take(chosen, stream_owner[start:stop], axis=0)
        probability = objective.pass_scores(outputs, row_targets, batch.dtype, xp)
        probabilities.append(probability)
        if stop <= size:
            continue
        if baseline is None:
            baseline = xp.concat(probabilities, axis=0)[:size]
        for number, layer in enumerate(layers):
            low, high = max(start, layer.first), min(stop, layer.stop)
            if high <= low:
                continue
            score = probability[low - start : high - start] - xp.take(
                baseline, stream_owner[low:high], axis=0
            )
            if config.score_relu:
                score = xp.maximum(score, xp.zeros_like(score))
            maps = chunk_maps.pop((start, number))
            weights = xp.where(
                stream_owner[low:high][None, :] == image_index[:, None], score[None, :], 0.0
            )
            layer.merged = layer.merged + ops.matmul(
                weights, xp.reshape(maps, (high - low, positions)), xp
            )

    all_scores = xp.concat(probabilities, axis=0)
    baseline = all_scores[:size]

    # Step 12, per layer; then the layers' maps are fused.
    layer_maps = [
        merge_masks(xp.reshape(layer.merged, (size, *spatial)), config.final_relu, xp)
        for layer in layers
    ]
    if len(layers) == 1:
        saliency, degenerate = layer_maps[0]
    else:
        saliency, degenerate = fuse_layers(
            [maps for maps, _ in layer_maps], config.layer_fusion, xp
        )

    clean = objective.pass_scores(features.result.outputs, chosen, batch.dtype, xp)
    groups = config.groups
    group_scores, skipped = [], []
    for layer in layers:
        kept_np = backend.to_numpy(layer.kept).astype(np.int64)
        scores = all_scores[layer.first : layer.stop] - xp.take(baseline, layer.owner, axis=0)
        if config.score_relu:
            scores = xp.maximum(scores, xp.zeros_like(scores))
        layer_scores = np.zeros(size * groups, dtype=np.float32)
        layer_scores[kept_np] = backend.to_numpy(scores)
        layer_skipped = np.ones(size * groups, dtype=bool)
        layer_skipped[kept_np] = False
        group_scores.append(layer_scores.reshape(size, groups))
        skipped.append(layer_skipped.reshape(size, groups))
    names = tuple(layer.features.name or "" for layer in layers)
    class_targets = objective.kind == "class"
    return Explanation(
        saliency=backend.to_numpy(saliency).astype(np.float32),
        targets=(
            backend.to_numpy(chosen).astype(np.int64)
            if class_targets
            else np.full(size, -1, dtype=np.int64)
        ),
        target_probabilities=(
            backend.to_numpy(clean).astype(np.float32)
            if class_targets
            else np.full(size, np.nan, dtype=np.float32)
        ),
        baseline_scores=backend.to_numpy(baseline).astype(np.float32),
        group_scores=np.concatenate(group_scores, axis=1),
        skipped_groups=np.concatenate(skipped, axis=1),
        degenerate=backend.to_numpy(degenerate).astype(bool),
        config=config,
        layer=", ".join(name for name in names if name) or batch.layer,
        target_scores=backend.to_numpy(clean).astype(np.float32),
        objective="class" if class_targets else objective.name,
        layer_saliency=(
            {
                name: backend.to_numpy(maps).astype(np.float32)
                for name, (maps, _) in zip(names, layer_maps, strict=True)
            }
            if len(layers) > 1
            else None
        ),
    )
