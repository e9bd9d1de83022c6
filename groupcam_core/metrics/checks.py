"""Checks of the saliency maps and ground-truth masks the metrics are given."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batches import SPATIAL_LETTERS
from ..errors import InputError
from ..namespaces import to_host

__all__ = ["check_map_rank", "check_maps", "check_masks"]


def check_maps(saliency: Any, shape: tuple[int, ...], what: str = "saliency") -> np.ndarray:
    """``saliency`` as float64 host maps of ``shape``, finite, else :class:`InputError`."""
    maps = to_host(saliency)
    if maps.shape != shape:
        raise InputError(
            f"{what} maps must have shape {_letters(shape)} = {shape} to match the batch, "
            f"got {maps.shape}"
        )
    if not (np.issubdtype(maps.dtype, np.floating) or np.issubdtype(maps.dtype, np.integer)):
        raise InputError(f"{what} maps must be real numbers, got dtype {maps.dtype}")
    maps = maps.astype(np.float64)
    if not np.all(np.isfinite(maps)):
        raise InputError(f"{what} maps contain NaN or inf")
    return maps


def _letters(shape: tuple[int, ...]) -> str:
    """The maps' shape in letters: (B, L), (B, H, W) or (B, D, H, W)."""
    letters = SPATIAL_LETTERS.get(len(shape) - 1)
    return f"(B, {letters})" if letters else "(B, *spatial)"


def check_map_rank(maps: np.ndarray, what: str = "saliency") -> None:
    """:class:`InputError` unless ``maps`` are ``(B, L)``, ``(B, H, W)`` or ``(B, D, H, W)``."""
    if maps.ndim - 1 not in SPATIAL_LETTERS:
        raise InputError(
            f"{what} maps must have shape (B, L), (B, H, W) or (B, D, H, W), got {maps.shape}"
        )


def check_masks(masks: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Ground-truth ``masks`` as non-empty boolean host masks of ``shape``."""
    found = to_host(masks)
    if found.shape != shape:
        raise InputError(
            f"ground-truth masks must have shape {_letters(shape)} = {shape} like the saliency "
            "maps, "
            f"got {found.shape}"
        )
    if found.dtype != np.bool_:
        if not np.all((found == 0) | (found == 1)):
            raise InputError("ground-truth masks must be boolean (or hold only 0 and 1)")
        found = found.astype(bool)
    empty = np.flatnonzero(~found.reshape(shape[0], -1).any(axis=1))
    if empty.size:
        raise InputError(f"the ground-truth mask of input {int(empty[0])} is empty")
    return found
