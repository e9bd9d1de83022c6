"""Score-CAM (Wang et al., CVPR workshops 2020), as its authors' public code computes it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import device

from .. import ops
from ..batches import prepare_batch
from ..features import feature_maps
from ..forward import forward_in_chunks, resolve_batch_size
from ..kit.explainer import as_backend, preferred_batch_size
from ..per_image import explain_by_target, groups_of, merge_method_results
from ..targets import TargetSpec
from .result import MethodResult, finish

__all__ = ["run_score_cam", "score_cam"]


def run_score_cam(
    explainer: Any, x: Any, targets: TargetSpec = None, batch_size: int | None = None
) -> MethodResult:
    """Score-CAM maps with their targets and costs; see :func:`score_cam`."""
    groups = groups_of(targets, x)
    if groups is not None:
        return explain_by_target(
            lambda images, shared: run_score_cam(explainer, images, shared, batch_size),
            x,
            groups,
            merge_method_results,
        )
    with as_backend(explainer, x) as backend:
        size = resolve_batch_size(batch_size, backend, preferred_batch_size(explainer))
        batch = prepare_batch(backend, x)
        xp, count = batch.xp, batch.size
        features = feature_maps(batch, targets, "Score-CAM", rows=size)
        activations, chosen = features.activations, features.result.targets
        _, channels, *where = activations.shape
        maps = xp.reshape(activations, (count * channels, *where))
        flat = xp.reshape(maps, (count * channels, math.prod(where)))
        # Constant channels (decided at feature resolution, like Group-CAM's step 7)
        # get no forward pass and no weight, as in the reference's `continue`.
        constant = xp.max(flat, axis=1) <= xp.min(flat, axis=1)
        (kept,) = xp.nonzero(~constant)
        owner = kept // channels
        kept_count = int(kept.shape[0])
        objective = features.objective
        kept_targets = None if chosen is None else xp.take(chosen, owner, axis=0)
        images = batch.channels_first()

        flat_masks: dict[int, Any] = {}

        def masked_inputs(start: int, stop: int) -> Any:
            upsampled = ops.resize_linear(
                xp.take(maps, kept[start:stop], axis=0), batch.spatial, xp
            )
            masks, flat_masks[start] = ops.min_max_normalize(upsampled, xp, batch.spatial_axes)
            return batch.to_input_layout(
                xp.take(images, owner[start:stop], axis=0) * masks[:, None, ...]
            )

        # A map that rounding made constant after upsampling gets no weight either
        # (the reference checks constancy after upsampling).
        scores = [
            xp.where(
                flat_masks.pop(start),
                0.0,
                objective.pass_scores(
                    outputs,
                    None if kept_targets is None else kept_targets[start:stop],
                    batch.dtype,
                    xp,
                ),
            )
            for start, stop, outputs in forward_in_chunks(
                backend,
                kept_count,
                size,
                masked_inputs,
                "the model (on Score-CAM's masked inputs)",
                objective.kind == "class",
            )
        ]
        scores_all = (
            xp.concat(scores, axis=0)
            if scores
            else xp.zeros((0,), dtype=batch.dtype, device=device(batch.x))
        )
        # sum_k score_k * upsample(A_k) == upsample(sum_k score_k * A_k): bilinear
        # resampling is linear, so the weighted sum is taken at feature resolution.
        image_index = xp.arange(count, device=device(batch.x))
        weights = xp.where(owner[None, :] == image_index[:, None], scores_all[None, :], 0.0)
        merged = xp.matmul(weights, xp.take(flat, kept, axis=0))
        cam = ops.resize_linear(xp.reshape(merged, (count, *where)), batch.spatial, xp)
        cam = xp.maximum(cam, xp.zeros_like(cam))
        kept_per_image = np.bincount(
            backend.to_numpy(owner).astype(np.int64), minlength=count
        ).astype(np.int64)
        return finish(batch, cam, chosen, kept_per_image + 1, "score-cam")


def score_cam(
    explainer: Any, x: Any, targets: TargetSpec = None, batch_size: int | None = None
) -> np.ndarray:
    """Score-CAM saliency maps (Wang et al., CVPR workshops 2020), as the reference code.

    This follows the authors' public implementation (``cam/scorecam.py`` of
    haofanwang/Score-CAM), which differs from the paper's Algorithm 1:

    1. One gradient pass gives the target layer's activations ``A`` (the gradients
       are not used) and the target classes.
    2. Each channel ``A_k`` is upsampled bilinearly to the input size and min-max
       normalized to [0, 1]: the mask ``M_k``. Channels constant at feature
       resolution are skipped (no pass, no weight); the reference tests
       constancy after upsampling, where rounding noise can make a mask of
       noise.
    3. ``s_k`` = softmax probability of the target class on ``x * M_k`` (the mask
       broadcast over the input channels; no baseline is subtracted). For models
       that output probabilities, their output is used as is.
    4. The map is ``ReLU(sum_k s_k * upsample(A_k))``, min-max normalized: the
       weights are the probabilities themselves (the paper's softmax over
       channels of the score increases is not applied), and they weight the
       upsampled activations, not the normalized masks.

    Parameters
    ----------
    explainer
        A groupcam explainer or a :class:`~groupcam_core.Backend`.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.
    batch_size
        Rows per forward pass; all ``B * K`` masked inputs of the batch stream
        together. Defaults to the explainer's, else the backend's default.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1]; zeros where the map is constant.

    Notes
    -----
    Cost: one gradient pass plus one forward pass per non-constant channel and
    image (``B * K`` at most). The layer's own output is explained even when an
    in-place operation after it rewrites the tensor (the reference's hook keeps
    the tensor itself). docs/evaluating.md says how torchcam's ``ScoreCAM``
    differs (it normalizes and merges at feature resolution and weights by a
    softmax over channels).
    """
    return run_score_cam(explainer, x, targets, batch_size).saliency
