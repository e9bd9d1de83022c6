"""How far two saliency maps agree: rank correlation and overlap of their top pixels.

Framework-free and numpy only; :mod:`groupcam.compare` uses them to compare
frameworks, and :func:`groupcam_core.metrics.rank_correlations` for the
randomization sanity check.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ConfigError, InputError

__all__ = ["TOP_FRACTION", "average_ranks", "spearman", "top_fraction_iou"]

#: The share of pixels whose overlap :func:`top_fraction_iou` measures by default.
TOP_FRACTION = 0.15


def average_ranks(values: Any) -> np.ndarray:
    """Ranks 1..n of a 1-D array, tied values sharing their average rank.

    The same ranks as ``scipy.stats.rankdata(values, method="average")``,
    computed with numpy alone.
    """
    values = np.asarray(values).ravel()
    count = values.size
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_run = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    run = np.cumsum(starts_run) - 1
    starts = np.flatnonzero(starts_run)
    stops = np.concatenate([starts[1:], [count]])
    ranks = np.empty(count, dtype=np.float64)
    ranks[order] = ((starts + 1 + stops) / 2.0)[run]
    return ranks


def spearman(first: Any, second: Any) -> float:
    """Spearman rank correlation of two maps over their flattened pixels.

    Ties get average ranks (as ``scipy.stats.spearmanr``). Two identical maps
    correlate 1, even constant ones; otherwise a constant map, which ranks
    nothing, correlates 0 with anything.
    """
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"cannot correlate maps of {a.size} and {b.size} pixels")
    if np.array_equal(a, b):
        return 1.0
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    norm = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / norm if norm > 0 else 0.0


def top_fraction_iou(first: Any, second: Any, fraction: float = TOP_FRACTION) -> float:
    """Intersection over union of the two maps' top ``fraction`` of pixels.

    Each map's top set holds its ``ceil(fraction * pixels)`` highest pixels;
    ties at the border are broken by pixel position (row-major), the same way
    for both maps.
    """
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"cannot compare maps of {a.size} and {b.size} pixels")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
    count = max(1, math.ceil(fraction * a.size))
    top_a = np.argsort(-a, kind="stable")[:count]
    top_b = np.argsort(-b, kind="stable")[:count]
    common = np.intersect1d(top_a, top_b, assume_unique=True).size
    return common / (2 * count - common)
