"""Inputs that are arrays already: ``.npy`` files of any rank and NIfTI volumes.

An array input is one preprocessed model input without its batch axis, in the
model's layout: ``(C, L)``, ``(C, H, W)`` or ``(C, D, H, W)`` channels-first,
``(L, C)``, ``(H, W, C)`` or ``(D, H, W, C)`` channels-last. It is neither
resized nor normalized. A NIfTI volume (``.nii``, ``.nii.gz``; read with
nibabel, the ``nifti`` extra) is ``(X, Y, Z)`` or ``(X, Y, Z, C)`` on disk and
gets its channel axis where the model's layout wants it.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

__all__ = [
    "ARRAY_SUFFIXES",
    "MAX_ARRAY_VALUES",
    "array_overlay_png",
    "is_array_input",
    "load_array_input",
]

#: File names ending so are read as arrays, not decoded as pictures.
ARRAY_SUFFIXES: tuple[str, ...] = (".npy", ".nii", ".nii.gz")
#: The most values one array input may hold (a 512^3 volume, 4 channels of 256^3).
MAX_ARRAY_VALUES = 512**3


def is_array_input(path: str | Path) -> bool:
    """Whether a file is read as an array (its name ends in one of :data:`ARRAY_SUFFIXES`)."""
    return str(path).lower().endswith(ARRAY_SUFFIXES)


def _checked(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "fiu" or array.dtype.kind == "b":
        raise ValueError(f"{what} holds {array.dtype} values, not real numbers")
    if not 2 <= array.ndim <= 4:
        raise ValueError(
            f"{what} has shape {array.shape}; one input is (channels, L), (channels, H, W) or "
            "(channels, D, H, W), channels last for Keras and JAX models"
        )
    values = array.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or inf")
    return values


def _npy(source: bytes | str) -> np.ndarray:
    """A ``.npy`` file's array; from a path, its size is checked before the values are read."""
    if isinstance(source, bytes):
        array = np.load(io.BytesIO(source), allow_pickle=False)
    else:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    if array.size > MAX_ARRAY_VALUES:
        raise ValueError(
            f"the array has shape {array.shape}, more than {MAX_ARRAY_VALUES:,} values for one "
            "input"
        )
    return np.array(array)


def _nifti(source: bytes | str, name: str) -> np.ndarray:
    try:
        import nibabel
    except ImportError:
        raise ValueError(
            "reading NIfTI volumes needs nibabel: pip install 'groupcam[nifti]'"
        ) from None
    if isinstance(source, bytes):
        raw = gzip.decompress(source) if name.lower().endswith(".gz") else source
        image = nibabel.Nifti1Image.from_bytes(raw)
    else:
        image = nibabel.load(source)
    if int(np.prod(image.shape)) > MAX_ARRAY_VALUES:
        raise ValueError(
            f"the volume has shape {image.shape}, more than {MAX_ARRAY_VALUES:,} values"
        )
    volume = np.asarray(image.dataobj, dtype=np.float32)
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise ValueError(f"a NIfTI input must be (X, Y, Z) or (X, Y, Z, C), got {volume.shape}")
    return volume  # channels last


def load_array_input(source: bytes | str, name: str, layout: str) -> np.ndarray:
    """One array input as float32 ``(1, ...)``, a batch of one in the model's ``layout``.

    Parameters
    ----------
    source
        The file's bytes or its path.
    name
        The file's name (its suffix says how to read it).
    layout
        The model's input layout; NIfTI volumes get their channel axis there.

    Raises
    ------
    ValueError
        For a file that is no ``.npy`` or NIfTI file, holds no real numbers,
        has another rank, is too large, or has NaN or inf.
    """
    if name.lower().endswith(".npy"):
        array = _npy(source)
    else:
        array = _nifti(source, name)
        if layout == "channels_first":
            array = np.moveaxis(array, -1, 0)
    return np.ascontiguousarray(
        _checked(np.asarray(array), f"the array in {Path(name).name}")[None]
    )


def array_overlay_png(x: np.ndarray, saliency: np.ndarray, layout: str, label: str) -> bytes:
    """A picture of one array input's map, as PNG bytes.

    1-D: the signal (each channel) over the map as a colored band; 2-D: the
    first channel (or the three channels as RGB) under the map, inputs smaller
    than 256 pixels enlarged by an integer factor; 3-D: evenly spaced slices
    along the first spatial axis, side by side.
    """
    from groupcam_core.visualization import overlay, save_signal_overlay, save_volume_montage

    from .images import _legend, png_bytes

    channels_first = x[0] if layout == "channels_first" else np.moveaxis(x[0], -1, 0)
    buffer = io.BytesIO()
    if saliency.ndim == 1:
        save_signal_overlay(buffer, channels_first, saliency, title=label)
        return buffer.getvalue()
    if saliency.ndim == 3:
        save_volume_montage(buffer, channels_first[0], saliency, title=label)
        return buffer.getvalue()
    shown = channels_first[:3] if channels_first.shape[0] == 3 else channels_first[0]
    if shown.ndim == 3:
        shown = np.moveaxis(shown, 0, -1)
    low, high = float(shown.min()), float(shown.max())
    scaled = (shown - low) / max(high - low, 1e-12)
    picture = overlay(scaled, saliency)
    factor = max(1, 256 // max(picture.shape[:2]))  # small inputs drawn larger, pixels kept
    picture = picture.repeat(factor, axis=0).repeat(factor, axis=1)
    return png_bytes(np.concatenate([picture, _legend(picture.shape[1], label, 0.5)], axis=0))
