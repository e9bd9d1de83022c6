"""Numerical building blocks of Group-CAM, written against the Python array API.

Resampling and blurring are linear maps along each spatial axis (one for a
signal, two for an image, three for a volume), so both are one small matrix
product per axis with matrices precomputed here in float64 numpy; every
array namespace (numpy, torch, jax.numpy) has ``matmul``. The functions taking an
``xp`` argument work in any array-API namespace, on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from array_api_compat import device, is_numpy_namespace

from .errors import ConfigError

__all__ = [
    "along_axes",
    "bilinear_matrix",
    "blur_images",
    "gaussian_blur_matrix",
    "gaussian_kernel",
    "group_matrix",
    "matmul",
    "min_max_normalize",
    "per_axis",
    "percentile_last_axis",
    "reflect_index",
    "resize_bilinear",
    "resize_linear",
    "to_namespace",
]


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map integer positions outside ``[0, size)`` back inside by mirroring.

    The mirror does not repeat the edge sample (``torch.nn.functional.pad`` with
    ``mode="reflect"``, ``numpy.pad`` with ``mode="reflect"``); positions further
    out than one image width keep reflecting.
    """
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.abs(index) % period
    return np.where(folded >= size, period - folded, folded)


@lru_cache(maxsize=64)
def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A 1-D Gaussian kernel of odd length ``size``, normalized to sum 1 (float64)."""
    offsets = np.arange(size, dtype=np.float64) - size // 2
    kernel = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
    return kernel / kernel.sum()


@lru_cache(maxsize=64)
def gaussian_blur_matrix(length: int, size: int, sigma: float) -> np.ndarray:
    """The ``(length, length)`` matrix of a 1-D Gaussian blur with reflect border.

    ``matrix @ signal`` equals padding ``signal`` by ``size // 2`` samples on each
    side with reflection and convolving with :func:`gaussian_kernel`.
    """
    kernel = gaussian_kernel(size, sigma)
    radius = size // 2
    rows = np.repeat(np.arange(length), size)
    taps = (np.arange(length)[:, None] + np.arange(size)[None, :] - radius).ravel()
    matrix = np.zeros((length, length), dtype=np.float64)
    np.add.at(matrix, (rows, reflect_index(taps, length)), np.tile(kernel, length))
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=64)
def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """The ``(out_size, in_size)`` matrix of 1-D bilinear resampling.

    Half-pixel centers, as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` without antialiasing: output sample ``i`` reads input
    position ``(i + 0.5) * in_size / out_size - 0.5``, clamped at 0.
    """
    source = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    source = np.maximum(source, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    upper_weight = source - lower
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - upper_weight)
    np.add.at(matrix, (rows, upper), upper_weight)
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=64)
def group_matrix(groups: int, channels: int) -> np.ndarray:
    """The ``(groups, channels)`` 0/1 matrix that sums contiguous channel groups.

    Group sizes follow ``numpy.array_split``: the first ``channels % groups``
    groups have one channel more than the others.
    """
    matrix = np.zeros((groups, channels), dtype=np.float64)
    for group, members in enumerate(np.array_split(np.arange(channels), groups)):
        matrix[group, members] = 1.0
    matrix.setflags(write=False)
    return matrix


def to_namespace(matrix: np.ndarray, xp: Any, like: Any) -> Any:
    """Copy a numpy matrix into namespace ``xp`` with the dtype and device of ``like``."""
    # A writable copy: torch warns on read-only numpy buffers (the cached matrices are).
    return xp.asarray(np.array(matrix), dtype=like.dtype, device=device(like))


#: The largest ``m * n * k`` that OpenBLAS multiplies on the calling thread
#: (its SMP threshold, 65536, times GEMM_MULTITHREAD_THRESHOLD, 4).
SINGLE_THREAD_PRODUCT = 1 << 18


def matmul(a: Any, b: Any, xp: Any) -> Any:
    """``xp.matmul(a, b)``; for numpy arrays, as products small enough for one thread.

    The core's products are small (a few million multiply-adds). Given to a
    multi-threaded BLAS in one piece, each wakes BLAS's worker threads, which
    then contend for the cores with the framework's own threads and with other
    processes (docs/benchmarks.md measures the cost). Cut into blocks of at most
    :data:`SINGLE_THREAD_PRODUCT` multiply-adds, OpenBLAS runs each on the
    calling thread, and no global thread setting is touched. Other namespaces
    (torch, jax.numpy) run their products on their own thread pools, as they are.
    """
    if not is_numpy_namespace(xp) or a.ndim < 2 or b.ndim < 2:
        return xp.matmul(a, b)
    rows, inner = a.shape[-2], a.shape[-1]
    cols = b.shape[-1]
    if rows * inner * cols <= SINGLE_THREAD_PRODUCT or inner > SINGLE_THREAD_PRODUCT:
        return np.matmul(a, b)
    row_block = max(1, min(rows, SINGLE_THREAD_PRODUCT // (inner * cols)))
    col_block = cols if row_block > 1 else max(1, SINGLE_THREAD_PRODUCT // inner)
    shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), rows, cols)
    out = np.empty(shape, dtype=np.result_type(a.dtype, b.dtype))
    for top in range(0, rows, row_block):
        for left in range(0, cols, col_block):
            np.matmul(
                a[..., top : top + row_block, :],
                b[..., :, left : left + col_block],
                out=out[..., top : top + row_block, left : left + col_block],
            )
    return out


def along_axes(array: Any, matrices: Sequence[np.ndarray], xp: Any) -> Any:
    """Apply one linear map per trailing axis: ``matrices[i]`` (``(out, in)``) along
    axis ``array.ndim - len(matrices) + i``.

    The leading axes are multiplied from the left in order, the last axis from
    the right, so that for two axes this is ``rows @ array @ cols.T``, the 2-D
    path's products in its order and rounding.
    """
    count = len(matrices)
    lead = array.ndim - count
    out = array
    for number, matrix in enumerate(matrices[:-1]):
        shape = tuple(out.shape)
        before, after = shape[: lead + number], shape[lead + number + 1 :]
        flat = xp.reshape(out, (*before, shape[lead + number], math.prod(after)))
        flat = matmul(to_namespace(matrix, xp, array), flat, xp)
        out = xp.reshape(flat, (*before, matrix.shape[0], *after))
    last = to_namespace(matrices[-1], xp, array)
    return matmul(out, xp.matrix_transpose(last), xp)


def resize_linear(maps: Any, size: Sequence[int], xp: Any) -> Any:
    """Resize the last ``len(size)`` axes of ``maps`` to ``size``, linearly with half-pixel
    centers on each axis (``torch.nn.functional.interpolate(..., align_corners=False)``
    in ``linear``, ``bilinear`` and ``trilinear`` mode)."""
    old = tuple(maps.shape[maps.ndim - len(size) :])
    return along_axes(
        maps,
        [bilinear_matrix(int(new), int(side)) for new, side in zip(size, old, strict=True)],
        xp,
    )


def resize_bilinear(maps: Any, height: int, width: int, xp: Any) -> Any:
    """Resize ``(..., u, v)`` maps to ``(..., height, width)`` bilinearly (half-pixel)."""
    return resize_linear(maps, (height, width), xp)


def per_axis(value: Any, axes: int, name: str = "a per-axis setting") -> tuple[Any, ...]:
    """A per-axis setting: one value for every axis, or a sequence of ``axes`` values."""
    if isinstance(value, (tuple, list)):
        if len(value) != axes:
            raise ConfigError(
                f"{name} has {len(value)} values, one per spatial axis, but the input has "
                f"{axes} spatial {'axis' if axes == 1 else 'axes'}: {tuple(value)!r}"
            )
        return tuple(value)
    return (value,) * axes


def blur_images(images: Any, kernel_size: Any, sigma: Any, xp: Any, spatial_axes: int = 2) -> Any:
    """Gaussian-blur the last ``spatial_axes`` axes of ``images`` with a reflect border.

    ``kernel_size`` and ``sigma`` are one value for every axis or one per axis; a
    kernel of size 1 leaves its axis as it is. An axis shorter than the kernel's
    reach reflects again at each end (:func:`reflect_index`).
    """
    sizes = per_axis(kernel_size, spatial_axes, "blur_kernel_size")
    sigmas = per_axis(sigma, spatial_axes, "blur_sigma")
    shape = tuple(images.shape[images.ndim - spatial_axes :])
    matrices = [
        gaussian_blur_matrix(int(length), int(size), float(spread))
        for length, size, spread in zip(shape, sizes, sigmas, strict=True)
    ]
    return along_axes(images, matrices, xp)


def percentile_last_axis(values: Any, percentile: float, xp: Any) -> Any:
    """The ``percentile`` of ``values`` along the last axis, keeping that axis.

    Numpy's default "linear" method, with its virtual index ``(n - 1) * q`` and
    its two-sided interpolation, so that thresholds equal ``numpy.percentile``'s
    to the last bit in float64.
    """
    count = values.shape[-1]
    quantile = float(np.true_divide(percentile, 100.0))
    virtual_index = min(max((count - 1) * quantile, 0.0), count - 1.0)
    lower = int(np.floor(virtual_index))
    upper = min(lower + 1, count - 1)
    fraction = virtual_index - lower
    ordered = xp.sort(values, axis=-1)
    below = ordered[..., lower : lower + 1]
    above = ordered[..., upper : upper + 1]
    difference = above - below
    if fraction >= 0.5:
        return above - difference * (1.0 - fraction)
    return below + difference * fraction


def min_max_normalize(maps: Any, xp: Any, spatial_axes: int = 2) -> tuple[Any, Any]:
    """Min-max normalize each map over its last ``spatial_axes`` axes to [0, 1].

    Returns
    -------
    normalized, constant
        The normalized maps, with constant (or non-finite) maps set to zero, and a
        boolean array over the leading axes that marks those maps.
    """
    lead = tuple(maps.shape[: maps.ndim - spatial_axes])
    flat = xp.reshape(maps, (*lead, math.prod(maps.shape[maps.ndim - spatial_axes :])))
    low = xp.min(flat, axis=-1, keepdims=True)
    high = xp.max(flat, axis=-1, keepdims=True)
    spread = high - low
    usable = (spread > 0) & xp.isfinite(spread)
    normalized = xp.where(usable, (flat - low) / xp.where(usable, spread, 1.0), 0.0)
    return xp.reshape(normalized, maps.shape), ~usable[..., 0]
