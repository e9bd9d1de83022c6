"""A deliberately plain Group-CAM: one input, one group, one pixel (or voxel) at a time.

Inputs have 1, 2 or 3 spatial axes: ``(C, L)``, ``(C, H, W)`` or ``(C, D, H, W)``.

Written from docs/algorithm.md with numpy only, in float64, and
sharing no code with groupcam_core. The vectorized core is checked against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class OracleResult:
    saliency: np.ndarray  # (B, H, W)
    group_scores: np.ndarray  # (B, G), 0 where skipped
    skipped: np.ndarray  # (B, G)
    baseline: np.ndarray  # (B,)
    degenerate: np.ndarray  # (B,)


def gaussian_blur_image(image: np.ndarray, size: int = 51, sigma: float = 50.0) -> np.ndarray:
    """Blur a (C, H, W) image: 2-D Gaussian kernel, reflect padding, direct sum."""
    radius = size // 2
    offsets = np.arange(size) - radius
    line = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel = np.outer(line, line)
    kernel = kernel / kernel.sum()
    out = np.empty_like(image, dtype=np.float64)
    for c in range(image.shape[0]):
        padded = np.pad(image[c].astype(np.float64), radius, mode="reflect")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
        out[c] = np.einsum("ijkl,kl->ij", windows, kernel)
    return out


def upsample_bilinear(small: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel bilinear resize of one 2-D map, pixel by pixel."""
    in_h, in_w = small.shape
    out = np.zeros((height, width))

    def source(i: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, s - i0

    for i in range(height):
        y0, y1, ly = source(i, in_h, height)
        for j in range(width):
            x0, x1, lx = source(j, in_w, width)
            top = small[y0, x0] * (1 - lx) + small[y0, x1] * lx
            bottom = small[y1, x0] * (1 - lx) + small[y1, x1] * lx
            out[i, j] = top * (1 - ly) + bottom * ly
    return out


def gaussian_blur_nd(
    image: np.ndarray, size: int | tuple[int, ...] = 51, sigma: float | tuple[float, ...] = 50.0
) -> np.ndarray:
    """Blur a (C, *spatial) input: the N-D Gaussian kernel (outer product of one 1-D kernel
    per axis), reflect padding, direct sum over the whole window."""
    axes = image.ndim - 1
    sizes = size if isinstance(size, tuple) else (size,) * axes
    sigmas = sigma if isinstance(sigma, tuple) else (sigma,) * axes
    kernel = np.ones(())
    for side, spread in zip(sizes, sigmas, strict=True):
        offsets = np.arange(side) - side // 2
        line = np.exp(-(offsets**2) / (2 * spread**2))
        kernel = np.multiply.outer(kernel, line / line.sum())
    out = np.empty_like(image, dtype=np.float64)
    letters = "abc"[:axes]
    for c in range(image.shape[0]):
        padded = np.pad(
            image[c].astype(np.float64), [(side // 2, side // 2) for side in sizes], mode="reflect"
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, sizes)
        out[c] = np.einsum(
            f"{letters.upper()}{letters},{letters}->{letters.upper()}", windows, kernel
        )
    return out


def upsample_linear_nd(small: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """Half-pixel linear resize of one N-D map, position by position, over the 2^N corners."""

    def source(i: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), n_in - 1)
        return i0, min(i0 + 1, n_in - 1), s - i0

    out = np.zeros(spatial)
    for position in np.ndindex(*spatial):
        ends = [
            source(i, n_in, n_out)
            for i, n_in, n_out in zip(position, small.shape, spatial, strict=True)
        ]
        value = 0.0
        for corner in np.ndindex(*(2,) * len(spatial)):
            weight, index = 1.0, []
            for (low, high, fraction), pick in zip(ends, corner, strict=True):
                weight *= fraction if pick else 1.0 - fraction
                index.append(high if pick else low)
            value += weight * small[tuple(index)]
        out[position] = value
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def oracle_groupcam(
    activations: np.ndarray,
    gradients: np.ndarray,
    images: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    targets: np.ndarray,
    groups: int = 32,
    variant: str = "paper",
    already_probabilities: bool = False,
    score_of: Callable[[np.ndarray, int], float] | None = None,
    members: list[list[np.ndarray]] | None = None,
    blur_size: int | tuple[int, ...] = 51,
    blur_sigma: float | tuple[float, ...] = 50.0,
    percentile: float = 70.0,
) -> OracleResult:
    """Group-CAM of docs/algorithm.md for channels-first arrays, 1 to 3 spatial axes.

    ``predict`` maps one (C, *spatial) input to the model's 1-D output. ``score_of(out,
    target)`` (``score_of``) replaces the softmax probability of the target (for target
    functions). ``members[b][g]`` lists the channels of group ``g`` of image ``b``
    (default: contiguous groups, as ``numpy.array_split``).
    """
    paper = variant == "paper"
    blur_size_is_one_int = isinstance(blur_size, int) and isinstance(blur_sigma, float)
    batch, channels = activations.shape[:2]
    spatial = images.shape[2:]
    two_d = len(spatial) == 2
    saliency = np.zeros((batch, *spatial))
    scores_out = np.zeros((batch, groups))
    skipped = np.zeros((batch, groups), dtype=bool)
    baselines = np.zeros(batch)
    degenerate = np.zeros(batch, dtype=bool)

    def probability(image: np.ndarray, target: int) -> float:
        out = np.asarray(predict(image), dtype=np.float64)
        if score_of is not None:
            return float(score_of(out, target))
        return float(out[target] if already_probabilities else softmax(out)[target])

    for b in range(batch):
        target = int(targets[b])
        alpha = [gradients[b, k].mean() for k in range(channels)]
        blurred = (
            gaussian_blur_image(images[b], blur_size, blur_sigma)
            if two_d and blur_size_is_one_int
            else gaussian_blur_nd(images[b], blur_size, blur_sigma)
        )
        baselines[b] = probability(blurred, target)
        merged = np.zeros(spatial)
        split = np.array_split(np.arange(channels), groups)
        for g, channel_list in enumerate(split if members is None else members[b]):
            group_map = np.zeros(activations.shape[2:])
            for k in channel_list:
                group_map = group_map + alpha[k] * activations[b, k]
            group_map = np.maximum(group_map, 0)
            if paper:
                threshold = np.percentile(group_map, percentile)
                group_map = np.where(group_map > threshold, group_map, 0.0)
            is_constant = group_map.max() == group_map.min()
            if is_constant and paper:
                skipped[b, g] = True
                continue
            upsampled = (
                upsample_bilinear(group_map, *spatial)
                if two_d
                else upsample_linear_nd(group_map, spatial)
            )
            if is_constant:
                upsampled = np.zeros_like(upsampled)
                mask = np.zeros_like(upsampled)
            else:
                mask = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
            masked = images[b] * mask + blurred * (1 - mask)
            score = probability(masked, target) - baselines[b]
            if not paper:
                score = max(score, 0.0)
            scores_out[b, g] = score
            merged += score * (mask if paper else upsampled)
        if paper:
            merged = np.maximum(merged, 0)
        if merged.max() == merged.min():
            degenerate[b] = True
        else:
            saliency[b] = (merged - merged.min()) / (merged.max() - merged.min())
    return OracleResult(saliency, scores_out, skipped, baselines, degenerate)
