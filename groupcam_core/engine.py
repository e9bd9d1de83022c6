"""The Group-CAM algorithm, vectorised over all images and groups of a batch.

docs/algorithm.md lists the twelve steps; the comments below refer to them by
number. Everything runs in the array namespace of the adapter's arrays, so on an
accelerator the masks, blurs and merges stay on the device. Full-resolution
masks exist only for one chunk of ``batch_size`` rows at a time: memory does not
grow with the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import device

from . import ops
from .config import GroupCAMConfig
from .plumbing import (
    check_groups,
    feature_maps,
    forward_in_chunks,
    prepare_batch,
    resolve_batch_size,
    target_probabilities,
)
from .protocol import Backend
from .result import Explanation
from .targets import TargetSpec

__all__ = ["GroupMaps", "explain_group_cam", "group_maps", "merge_masks", "normalized_masks"]


@dataclass(frozen=True)
class GroupMaps:
    """Steps 2 to 5 and 7 for a batch: one feature-resolution map per image and group.

    Attributes
    ----------
    maps
        ``(B*G, u, v)`` group maps after ReLU and denoising, image-major; zeros
        where ``constant``.
    constant
        ``(B*G,)`` bool: the map was constant (or not finite) at feature
        resolution (step 7).
    """

    maps: Any
    constant: Any


def group_maps(activations: Any, gradients: Any, config: GroupCAMConfig, xp: Any) -> GroupMaps:
    """Steps 2-5 and the test of step 7 on channels-first ``(B, K, u, v)`` arrays.

    The constancy test runs here, before upsampling: a constant ``u x v`` map
    upsamples to a constant map mathematically, but float rounding of the
    interpolation weights could make it look non-constant, and normalisation
    would then amplify noise.
    """
    batch, channels, rows, cols = activations.shape
    groups = config.groups
    # Steps 2 and 3: alpha_k = spatial mean of the gradient; sum alpha_k * A_k per group.
    alpha = xp.mean(xp.reshape(gradients, (batch, channels, rows * cols)), axis=-1)
    weighted = xp.reshape(activations, (batch, channels, rows * cols)) * alpha[:, :, None]
    summing = ops.to_namespace(ops.group_matrix(groups, channels), xp, weighted)
    maps = xp.matmul(summing, weighted)  # (B, G, u*v)
    # Step 4.
    maps = xp.maximum(maps, xp.zeros_like(maps))
    # Step 5: keep values strictly above the percentile (at feature resolution).
    if config.percentile is not None:
        threshold = ops.percentile_last_axis(maps, config.percentile, xp)
        maps = xp.where(maps > threshold, maps, 0.0)
    high, low = xp.max(maps, axis=-1), xp.min(maps, axis=-1)
    constant = xp.reshape((high <= low) | ~xp.isfinite(high - low), (batch * groups,))
    maps = xp.reshape(maps, (batch * groups, rows, cols))
    maps = xp.where(constant[:, None, None], 0.0, maps)
    return GroupMaps(maps=maps, constant=constant)


def normalized_masks(maps: Any, height: int, width: int, xp: Any) -> tuple[Any, Any]:
    """Steps 6 and 8 for some group maps: upsample, then min-max normalise.

    Returns
    -------
    upsampled, masks
        ``(n, H, W)`` each; a map that is constant after upsampling gets an
        all-zero mask.
    """
    upsampled = ops.resize_bilinear(maps, height, width, xp)
    masks, _ = ops.min_max_normalize(upsampled, xp)
    return upsampled, masks


def merge_masks(merged: Any, final_relu: bool, xp: Any) -> tuple[Any, Any]:
    """Step 12's ending: ReLU (if asked) and min-max normalise ``(B, H, W)`` sums.

    Returns
    -------
    saliency, degenerate
        ``(B, H, W)`` maps in [0, 1] and a ``(B,)`` bool array marking constant
        results (returned as zeros).
    """
    if final_relu:
        merged = xp.maximum(merged, xp.zeros_like(merged))
    return ops.min_max_normalize(merged, xp)


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
        ``None`` (each image's top class), one int, or one int per image.
    config
        Group-CAM constants; defaults to the "paper" preset.
    batch_size
        Rows per forward pass for the masked inputs; defaults to the adapter's.

    Returns
    -------
    Explanation
    """
    config = config or GroupCAMConfig()
    batch_size = resolve_batch_size(batch_size, backend)
    batch = prepare_batch(backend, x)
    xp, size, height, width = batch.xp, batch.size, batch.height, batch.width
    where = device(batch.x)

    # Step 1.
    features = feature_maps(batch, targets, "Group-CAM")
    check_groups(config.groups, features.activations.shape[1], batch.layer)
    chosen = features.result.targets

    # Steps 2-5 and 7.
    grouped = group_maps(features.activations, features.gradients, config, xp)
    groups = config.groups
    owner_all = xp.reshape(
        xp.broadcast_to(xp.arange(size, device=where)[:, None], (size, groups)), (size * groups,)
    )
    if config.skip_constant_masks:
        (kept,) = xp.nonzero(~grouped.constant)
    else:
        kept = xp.arange(size * groups, device=where)
    kept = xp.astype(kept, owner_all.dtype)
    owner = xp.take(owner_all, kept, axis=0)

    # Step 9. The blur and the masked inputs are computed in the compute dtype and
    # cast to the model's input dtype only when a chunk is handed to the model.
    images = batch.channels_first()
    blurred = ops.blur_images(images, config.blur_kernel_size, config.blur_sigma, xp)
    difference = images - blurred

    # Steps 10 and 11: the B blurred baselines (an all-zero mask) go first in one
    # stream with the masked inputs, chunked together. Steps 6 and 8 run chunk by
    # chunk, and each chunk's share of step 12's weighted sum is added as soon as
    # its scores are known (the baselines always come before any masked row).
    stream_owner = xp.concat([xp.arange(size, device=where, dtype=owner.dtype), owner], axis=0)
    merged = xp.zeros((size, height * width), dtype=batch.dtype, device=where)
    probabilities: list[Any] = []
    images_index = xp.arange(size, device=where)
    chunk_maps: dict[int, Any] = {}

    def masked_inputs(start: int, stop: int) -> Any:
        index = stream_owner[start:stop]
        rows = xp.take(blurred, index, axis=0)
        first_group = max(start - size, 0)
        last_group = max(stop - size, 0)
        if last_group > first_group:
            chosen_maps = xp.take(grouped.maps, kept[first_group:last_group], axis=0)
            upsampled, masks = normalized_masks(chosen_maps, height, width, xp)
            chunk_maps[start] = masks if config.merge_source == "masks" else upsampled
            masks = xp.concat(
                [
                    xp.zeros(
                        (stop - start - (last_group - first_group), height, width),
                        dtype=masks.dtype,
                        device=where,
                    ),
                    masks,
                ],
                axis=0,
            )
            rows = rows + masks[:, None, :, :] * xp.take(difference, index, axis=0)
        return batch.to_input_layout(rows)

    baseline: Any = None
    for start, stop, outputs in forward_in_chunks(
        backend,
        size + int(kept.shape[0]),
        batch_size,
        masked_inputs,
        "the model (on masked inputs)",
    ):
        row_targets = xp.take(chosen, stream_owner[start:stop], axis=0)
        probability = target_probabilities(
            outputs, row_targets, backend.outputs_probabilities, batch.dtype, xp
        )
        probabilities.append(probability)
        if stop <= size:
            continue
        if baseline is None:
            baseline = xp.concat(probabilities, axis=0)[:size]
        # Rows of this chunk that are masked inputs (not baselines).
        first = max(start, size)
        score = probability[first - start :] - xp.take(baseline, stream_owner[first:stop], axis=0)
        if config.score_relu:
            score = xp.maximum(score, xp.zeros_like(score))
        maps = chunk_maps.pop(start)
        weights = xp.where(
            stream_owner[first:stop][None, :] == images_index[:, None], score[None, :], 0.0
        )
        merged = merged + xp.matmul(weights, xp.reshape(maps, (stop - first, height * width)))

    all_probabilities = xp.concat(probabilities, axis=0)
    baseline = all_probabilities[:size]
    scores = all_probabilities[size:] - xp.take(baseline, owner, axis=0)
    if config.score_relu:
        scores = xp.maximum(scores, xp.zeros_like(scores))

    # Step 12.
    saliency, degenerate = merge_masks(
        xp.reshape(merged, (size, height, width)), config.final_relu, xp
    )

    clean_probability = target_probabilities(
        features.result.outputs, chosen, backend.outputs_probabilities, batch.dtype, xp
    )
    kept_np = backend.to_numpy(kept).astype(np.int64)
    group_scores = np.zeros(size * groups, dtype=np.float32)
    group_scores[kept_np] = backend.to_numpy(scores)
    skipped = np.ones(size * groups, dtype=bool)
    skipped[kept_np] = False
    return Explanation(
        saliency=backend.to_numpy(saliency).astype(np.float32),
        targets=backend.to_numpy(chosen).astype(np.int64),
        target_probabilities=backend.to_numpy(clean_probability).astype(np.float32),
        baseline_scores=backend.to_numpy(baseline).astype(np.float32),
        group_scores=group_scores.reshape(size, groups),
        skipped_groups=skipped.reshape(size, groups),
        degenerate=backend.to_numpy(degenerate).astype(bool),
        config=config,
        layer=batch.layer,
    )
