"""A deliberately plain Group-CAM: one image, one group, one pixel at a time.

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
) -> OracleResult:
    """Group-CAM of docs/algorithm.md for channels-first arrays.

    ``predict`` maps one (C, H, W) image to the model's 1-D output. ``score_of(out,
    target)`` (``score_of``) replaces the softmax probability of the target (for target
    functions). ``members[b][g]`` lists the channels of group ``g`` of image ``b``
    (default: contiguous groups, as ``numpy.array_split``).
    """
    paper = variant == "paper"
    batch, channels = activations.shape[:2]
    height, width = images.shape[2:]
    saliency = np.zeros((batch, height, width))
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
        blurred = gaussian_blur_image(images[b])
        baselines[b] = probability(blurred, target)
        merged = np.zeros((height, width))
        split = np.array_split(np.arange(channels), groups)
        for g, channel_list in enumerate(split if members is None else members[b]):
            group_map = np.zeros(activations.shape[2:])
            for k in channel_list:
                group_map = group_map + alpha[k] * activations[b, k]
            group_map = np.maximum(group_map, 0)
            if paper:
                threshold = np.percentile(group_map, 70)
                group_map = np.where(group_map > threshold, group_map, 0.0)
            is_constant = group_map.max() == group_map.min()
            if is_constant and paper:
                skipped[b, g] = True
                continue
            upsampled = upsample_bilinear(group_map, height, width)
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
