"""Deletion and insertion (RISE's causal metrics, as the Group-CAM evaluation ran them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from array_api_compat import array_namespace

from .. import ops
from ..arguments import positive_int, real_number
from ..errors import ConfigError, InputError
from ..targets import TargetSpec
from .model_runs import ExplainerLike, clean_pass, metric_run, scores

__all__ = ["DEFAULT_STEPS", "CausalCurves", "curve_auc", "deletion", "insertion"]

#: The default number of deletion/insertion steps: ``step = H * W // 112``
#: pixels, that is 448 at 224 x 224 as in the Group-CAM evaluation.
DEFAULT_STEPS = 112


@dataclass(frozen=True)
class CausalCurves:
    """Deletion or insertion curves of a batch.

    Attributes
    ----------
    kind
        ``"deletion"`` or ``"insertion"``.
    curves
        ``(B, n + 1)`` float64: probability of the target class after each step;
        column 0 is the start image, column ``n`` the fully deleted (or fully
        inserted) image.
    auc
        ``(B,)`` float64: area under each curve, see :func:`curve_auc`.
    targets
        ``(B,)`` int64: the class whose probability is tracked.
    step
        Pixels taken per step; ``n = ceil(H * W / step)``.
    """

    kind: Literal["deletion", "insertion"]
    curves: np.ndarray
    auc: np.ndarray
    targets: np.ndarray
    step: int

    @property
    def steps(self) -> int:
        """Number of steps ``n`` (the curves have ``n + 1`` points)."""
        return self.curves.shape[1] - 1

    @property
    def mean_auc(self) -> float:
        """The AUC averaged over images (the number papers report)."""
        return float(np.mean(self.auc))


def curve_auc(curves: Any) -> np.ndarray:
    """Normalized trapezoidal area under curves sampled at ``n + 1`` equally spaced steps.

    ``(sum(curve) - (curve[0] + curve[-1]) / 2) / n`` along the last axis: the
    x axis runs from 0 to 1 in steps of ``1 / n`` (RISE's ``auc``).

    Parameters
    ----------
    curves
        ``(..., n + 1)`` values, ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``(...)`` float64 areas.
    """
    values = np.asarray(curves, dtype=np.float64)
    if values.ndim < 1 or values.shape[-1] < 2:
        raise InputError(f"a curve needs at least 2 points, got shape {values.shape}")
    steps = values.shape[-1] - 1
    return (values.sum(axis=-1) - (values[..., 0] + values[..., -1]) / 2.0) / steps


def _causal(
    kind: Literal["deletion", "insertion"],
    explainer: ExplainerLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec,
    step: int | None,
    batch_size: int | None,
    blur: tuple[int, float] | None = None,
) -> CausalCurves:
    with metric_run(explainer, x, saliency, batch_size) as run:
        backend, chunk, images, maps = run.backend, run.chunk, run.images, run.maps
        batch, spatial = images.shape[0], images.shape[2:]
        pixels = int(np.prod(spatial))
        step = max(1, pixels // DEFAULT_STEPS) if step is None else step
        step = positive_int(step, "step")
        steps = -(-pixels // step)

        # rank[b, p]: position of pixel p in image b's order of decreasing saliency
        # (a stable sort: ties go in pixel index order).
        order = np.argsort(-maps.reshape(batch, pixels), axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(pixels)[None, :], axis=1)
        rank = rank.reshape(batch, 1, *spatial)

        resolved, clean = clean_pass(backend, images, targets, chunk)
        if blur is None:
            start_images, end_images = images, np.zeros((), dtype=images.dtype)
            computed = np.arange(1, steps + 1)  # step 0 is the clean image
        else:
            blurred = ops.blur_images(
                images.astype(np.float64),
                blur[0],
                blur[1],
                array_namespace(images),
                len(spatial),
            )
            start_images, end_images = blurred.astype(images.dtype), images
            computed = np.arange(0, steps)  # step n is the clean image

        # One row per (image, step), image-major, all run through the model in chunks.
        row_image = np.repeat(np.arange(batch), computed.size)
        row_taken = np.tile(computed * step, batch)

        def build(first: int, last: int) -> np.ndarray:
            owners = row_image[first:last]
            taken = rank[owners] < row_taken[first:last].reshape(-1, *(1,) * (rank.ndim - 1))
            end = end_images[owners] if end_images.ndim else end_images
            return np.where(taken, end, start_images[owners])

        found = scores(backend, row_image.size, chunk, build, resolved[row_image])

    curves = np.empty((batch, steps + 1), dtype=np.float64)
    if kind == "deletion":
        curves[:, 0] = clean
        curves[:, 1:] = found.reshape(batch, steps)
    else:
        curves[:, :-1] = found.reshape(batch, steps)
        curves[:, -1] = clean
    return CausalCurves(
        kind=kind, curves=curves, auc=curve_auc(curves), targets=resolved, step=step
    )


def deletion(
    explainer: ExplainerLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec = None,
    *,
    step: int | None = None,
    batch_size: int | None = None,
) -> CausalCurves:
    """Deletion curves: remove the most salient pixels first and track the target probability.

    The protocol of RISE, as the Group-CAM evaluation ran it: pixels are taken
    in order of decreasing saliency (a stable sort, ties in row-major pixel
    order), ``step`` pixels per step over ``n = ceil(H * W / step)`` steps.
    Each step sets the taken pixels, in all channels, to 0 in the model's input
    space (the normalized input, as RISE did). Lower AUC is better.

    Parameters
    ----------
    explainer
        A groupcam explainer or a :class:`~groupcam_core.protocol.Backend`.
    x
        The batch, as the model consumes it, in the model's layout.
    saliency
        ``(B, H, W)`` maps; only their order matters.
    targets
        ``None`` (the class predicted on the clean image), one int, or one int
        per image.
    step
        Pixels per step; ``None`` for ``max(1, H * W // 112)`` (448 at 224 x 224,
        the Group-CAM evaluation's setting, 112 steps).
    batch_size
        Rows per forward pass, over all images and steps; ``None`` for the
        backend's default.

    Returns
    -------
    CausalCurves
        ``curves`` of ``n + 1`` points (the clean image first, the all-zero
        image last), their ``auc``, ``targets`` and ``step``.
    """
    return _causal("deletion", explainer, x, saliency, targets, step, batch_size)


def insertion(
    explainer: ExplainerLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec = None,
    *,
    step: int | None = None,
    batch_size: int | None = None,
    blur_kernel_size: int = 51,
    blur_sigma: float = 50.0,
) -> CausalCurves:
    """Insertion curves: restore the most salient pixels first into a blurred image.

    The start image is the Gaussian-blurred image (kernel ``blur_kernel_size``,
    ``blur_sigma``, reflect border, as :func:`groupcam_core.ops.blur_images`);
    each step puts ``step`` original pixels back (all channels), in order of
    decreasing saliency (stable sort, ties in row-major pixel order). Higher AUC
    is better.

    Parameters
    ----------
    explainer, x, saliency, targets, step, batch_size
        As for :func:`deletion`.
    blur_kernel_size, blur_sigma
        The Gaussian blur of the start image (odd size, positive sigma).

    Returns
    -------
    CausalCurves
        ``curves`` of ``n + 1`` points (the blurred image first, the original
        image last), their ``auc``, ``targets`` and ``step``.
    """
    blur_kernel_size = positive_int(blur_kernel_size, "blur_kernel_size")
    if blur_kernel_size % 2 == 0:
        raise ConfigError(f"blur_kernel_size must be odd, got {blur_kernel_size}")
    sigma = real_number(blur_sigma, "blur_sigma", above=0.0)
    return _causal(
        "insertion", explainer, x, saliency, targets, step, batch_size, (blur_kernel_size, sigma)
    )
