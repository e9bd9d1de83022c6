"""Localization metrics: the pointing game and its energy-based variant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arguments import real_number
from ..errors import InputError
from ..namespaces import to_host
from .checks import check_map_rank, check_maps, check_masks

__all__ = ["EnergyPointingGame", "PointingGame", "energy_pointing_game", "pointing_game"]


@dataclass(frozen=True)
class PointingGame:
    """Pointing-game outcome of a batch.

    Attributes
    ----------
    hits
        ``(B,)`` bool: the saliency maximum lies within the tolerance of the mask.
    points
        ``(B, 2)`` int64: the (row, column) of each map's maximum.
    distances
        ``(B,)`` float64: Euclidean distance, in pixels, from that point to the
        nearest mask pixel (0 inside the mask).
    tolerance
        The tolerance used, in pixels.
    """

    hits: np.ndarray
    points: np.ndarray
    distances: np.ndarray
    tolerance: float

    @property
    def accuracy(self) -> float:
        """Share of hits, in [0, 1]."""
        return float(np.mean(self.hits))


@dataclass(frozen=True)
class EnergyPointingGame:
    """Energy-based pointing game (Score-CAM) of a batch.

    Attributes
    ----------
    proportions
        ``(B,)`` float64: share of each map's total saliency inside the mask
        (0 for a map that sums to 0).
    """

    proportions: np.ndarray

    @property
    def mean(self) -> float:
        """The proportion averaged over images."""
        return float(np.mean(self.proportions))


def pointing_game(saliency: Any, masks: Any, tolerance: float = 15.0) -> PointingGame:
    """The pointing game (Zhang et al. 2016): does each map's maximum hit the object?

    The point is the map's maximum; among equal maxima, the first in row-major
    order. It is a hit when its Euclidean distance to the nearest mask pixel is
    at most ``tolerance`` pixels (15 in the standard protocol). A constant map
    (for example a degenerate explanation, all zeros) points nowhere and counts
    as a miss.

    Parameters
    ----------
    saliency
        ``(B, H, W)`` maps.
    masks
        ``(B, H, W)`` boolean ground-truth masks (bounding boxes or segments),
        none of them empty.
    tolerance
        Distance in pixels, at least 0.

    Returns
    -------
    PointingGame
        Per-image ``hits``, ``points`` and ``distances``, and the ``accuracy``.
    """
    tolerance = real_number(tolerance, "tolerance", "a distance in pixels", at_least=0.0)
    maps = to_host(saliency)
    check_map_rank(maps)
    maps = check_maps(maps, maps.shape)
    found = check_masks(masks, maps.shape)
    batch = maps.shape[0]
    flat_index = np.argmax(maps.reshape(batch, -1), axis=1)  # the first maximum
    points = np.stack(np.unravel_index(flat_index, maps.shape[1:]), axis=1).astype(np.int64)
    distances = np.empty(batch, dtype=np.float64)
    for b in range(batch):
        inside = np.stack(np.nonzero(found[b]), axis=1)  # (n, spatial axes)
        distances[b] = np.sqrt(np.min(((inside - points[b]) ** 2).sum(axis=1)))
    constant = maps.reshape(batch, -1).max(axis=1) <= maps.reshape(batch, -1).min(axis=1)
    return PointingGame(
        hits=(distances <= tolerance) & ~constant,
        points=points,
        distances=distances,
        tolerance=float(tolerance),
    )


def energy_pointing_game(saliency: Any, masks: Any) -> EnergyPointingGame:
    """Energy-based pointing game (Wang et al. 2020): the share of saliency on the object.

    ``sum(saliency * mask) / sum(saliency)`` per image; 0 for a map that sums
    to 0.

    Parameters
    ----------
    saliency
        ``(B, H, W)`` non-negative maps.
    masks
        ``(B, H, W)`` boolean ground-truth masks, none of them empty.

    Returns
    -------
    EnergyPointingGame
        Per-image ``proportions`` and their ``mean``.
    """
    maps = to_host(saliency)
    check_map_rank(maps)
    maps = check_maps(maps, maps.shape)
    if maps.min() < 0:
        raise InputError(
            f"the energy pointing game needs non-negative saliency maps, got a minimum of "
            f"{maps.min():g}"
        )
    found = check_masks(masks, maps.shape)
    space = tuple(range(1, maps.ndim))
    total = maps.sum(axis=space)
    inside = (maps * found).sum(axis=space)
    with np.errstate(divide="ignore", invalid="ignore"):
        proportions = np.where(total > 0, inside / total, 0.0)
    return EnergyPointingGame(proportions=proportions)
