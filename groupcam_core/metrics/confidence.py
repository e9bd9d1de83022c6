"""Average drop and increase in confidence (Grad-CAM++ and Score-CAM definitions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..targets import TargetSpec
from .model_runs import ExplainerLike, clean_pass, metric_run, scores

__all__ = ["ConfidenceChange", "average_drop_and_increase"]


@dataclass(frozen=True)
class ConfidenceChange:
    """Average drop and increase in confidence (Grad-CAM++ and Score-CAM definitions).

    Attributes
    ----------
    original
        ``(B,)`` float64: probability Y of the target on the image.
    masked
        ``(B,)`` float64: probability O of the target on ``image * saliency``.
    drops
        ``(B,)`` float64: ``max(0, Y - O) / Y * 100`` (0 when Y is 0).
    increased
        ``(B,)`` bool: ``O > Y``.
    targets
        ``(B,)`` int64: the target classes.
    """

    original: np.ndarray
    masked: np.ndarray
    drops: np.ndarray
    increased: np.ndarray
    targets: np.ndarray

    @property
    def average_drop(self) -> float:
        """Mean of the per-image drops, in percent (lower is better)."""
        return float(np.mean(self.drops))

    @property
    def increase_in_confidence(self) -> float:
        """Percentage of images whose confidence rose on the masked image (higher is better)."""
        return float(np.mean(self.increased) * 100.0)


def average_drop_and_increase(
    explainer: ExplainerLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec = None,
    *,
    batch_size: int | None = None,
) -> ConfidenceChange:
    """Average drop and increase in confidence when the model sees only the salient part.

    The masked image is ``x * saliency`` (the map broadcast over channels, in
    the model's input space). With Y the probability of the target on ``x`` and
    O on the masked image: average drop is the mean of ``max(0, Y - O) / Y``
    in percent; increase in confidence is the percentage of images with
    ``O > Y`` (Chattopadhyay et al. 2018; Wang et al. 2020).

    Parameters
    ----------
    explainer, x, targets, batch_size
        As for :func:`~groupcam_core.metrics.deletion`.
    saliency
        ``(B, H, W)`` maps with values in [0, 1].

    Returns
    -------
    ConfidenceChange
        Per-image ``original``, ``masked``, ``drops`` and ``increased``, with the
        aggregates ``average_drop`` and ``increase_in_confidence``.
    """
    with metric_run(explainer, x, saliency, batch_size) as run:
        backend, chunk, images, maps = run.backend, run.chunk, run.images, run.maps
        batch = images.shape[0]
        if maps.min() < 0 or maps.max() > 1:
            raise InputError(
                f"saliency maps must lie in [0, 1] to mask images, got values from "
                f"{maps.min():g} to {maps.max():g}; min-max normalize them first"
            )
        resolved, original = clean_pass(backend, images, targets, chunk)
        weights = maps[:, None].astype(images.dtype)
        masked = scores(backend, batch, chunk, lambda a, b: images[a:b] * weights[a:b], resolved)
    with np.errstate(divide="ignore", invalid="ignore"):
        drops = np.where(original > 0, np.maximum(original - masked, 0.0) / original, 0.0)
    return ConfidenceChange(
        original=original,
        masked=masked,
        drops=drops * 100.0,
        increased=masked > original,
        targets=resolved,
    )
