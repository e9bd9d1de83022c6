"""The real photos the cross-framework parity tests explain."""

from __future__ import annotations

import numpy as np

from groupcam.samples import load_sample_photos


def photos_with_blobs() -> np.ndarray:
    """The four sample photos, each with one colored blob the blob net can recognize.

    Returns ``(4, 64, 64, 3)`` float32, channels-last: each photo's color cast
    removed, scaled like the blob net's training noise, plus one Gaussian blob
    (red, green, blue, white) at a different place in each.
    """
    images = np.stack(list(load_sample_photos(size=64).values())).astype(np.float32) / 255.0
    images = images - images.mean(axis=(1, 2), keepdims=True)
    images = 0.15 * images / images.std(axis=(1, 2, 3), keepdims=True)
    yy, xx = np.mgrid[0:64, 0:64]
    for i, (cy, cx) in enumerate([(20, 40), (44, 18), (30, 30), (48, 50)]):
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
        color = np.ones(3) if i == 3 else np.eye(3)[i]
        images[i] += (2.0 * blob[:, :, None] * color).astype(np.float32)
    return images
