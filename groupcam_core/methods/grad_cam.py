"""Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..batches import prepare_batch
from ..features import feature_maps
from ..forward import resolve_batch_size
from ..kit.explainer import as_backend, preferred_batch_size
from ..per_image import explain_by_target, groups_of, merge_method_results
from ..targets import TargetSpec
from .result import MethodResult, finish

__all__ = ["grad_cam", "run_grad_cam"]


def run_grad_cam(explainer: Any, x: Any, targets: TargetSpec = None) -> MethodResult:
    """Grad-CAM maps with their targets and costs; see :func:`grad_cam`."""
    groups = groups_of(targets, x)
    if groups is not None:
        return explain_by_target(
            lambda images, shared: run_grad_cam(explainer, images, shared),
            x,
            groups,
            merge_method_results,
        )
    with as_backend(explainer, x) as backend:
        batch = prepare_batch(backend, x)
        xp = batch.xp
        rows = resolve_batch_size(None, backend, preferred_batch_size(explainer))
        features = feature_maps(batch, targets, "Grad-CAM", rows=rows)
        space = tuple(range(2, features.gradients.ndim))
        alpha = xp.mean(features.gradients, axis=space, keepdims=True)
        cam = xp.sum(alpha * features.activations, axis=1)
        cam = xp.maximum(cam, xp.zeros_like(cam))
        upsampled = ops.resize_linear(cam, batch.spatial, xp)
        passes = np.ones(batch.size, dtype=np.int64)
        return finish(batch, upsampled, features.result.targets, passes, "grad-cam")


def grad_cam(explainer: Any, x: Any, targets: TargetSpec = None) -> np.ndarray:
    """Grad-CAM saliency maps (Selvaraju et al., ICCV 2017).

    ``alpha_k`` is the spatial mean of the gradient of the target's raw output
    (the logit, or the probability for models that output probabilities) with
    respect to the target layer's channel ``k``; the map is
    ``ReLU(sum_k alpha_k A_k)`` at feature resolution, upsampled bilinearly to
    the input size (half-pixel centers) and min-max normalized. One gradient
    pass per image.

    Parameters
    ----------
    explainer
        A groupcam explainer (its model and target layer are used) or a
        :class:`~groupcam_core.Backend`.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1]; zeros where the map is constant.
    """
    return run_grad_cam(explainer, x, targets).saliency
