"""Offline sample photos and ImageNet class names for demos, tests and benchmarks.

The photos ship inside scikit-image (``skimage.data``); nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from groupcam_core.protocol import Layout

__all__ = [
    "SAMPLE_PHOTOS",
    "center_crop",
    "imagenet_class_names",
    "load_sample_photos",
    "sample_batch",
]

#: Photos from ``skimage.data`` used by the demo and the real-model tests.
SAMPLE_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket")


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in the usual class-index order."""
    text = resources.files("groupcam").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:  # pragma: no cover - guards the packaged data file
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, not 1000")
    return names


def center_crop(image: np.ndarray, size: int = 224, resize_to: int = 256) -> np.ndarray:
    """Resize the shorter side to ``resize_to`` (bilinear), then crop the center square.

    Parameters
    ----------
    image
        ``(H, W)`` or ``(H, W, 3)`` uint8 image.
    size, resize_to
        Output side and intermediate shorter side, as in the usual ImageNet
        evaluation transform.

    Returns
    -------
    numpy.ndarray
        ``(size, size, 3)`` uint8 RGB image.
    """
    from PIL import Image

    picture = Image.fromarray(np.asarray(image)).convert("RGB")
    width, height = picture.size
    scale = resize_to / min(width, height)
    picture = picture.resize(
        (max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR
    )
    width, height = picture.size
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(picture.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_sample_photos(
    names: tuple[str, ...] = SAMPLE_PHOTOS, size: int = 224
) -> dict[str, np.ndarray]:
    """Load photos from ``skimage.data`` as center-cropped ``(size, size, 3)`` uint8 RGB."""
    from skimage import data

    photos = {}
    for name in names:
        loader = getattr(data, name, None)
        if loader is None:
            raise ValueError(f"skimage.data has no photo named {name!r}")
        photos[name] = center_crop(loader(), size=size, resize_to=round(size * 256 / 224))
    return photos


def sample_batch(
    layout: Layout = "channels_last", size: int = 224, count: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The sample photos and EfficientNet-Lite0's input for them.

    Parameters
    ----------
    layout
        The layout of the returned batch.
    size
        Side of the center-cropped photos (the model takes any size; 224 is
        what it was trained on).
    count
        How many of :data:`SAMPLE_PHOTOS` (default: all four).

    Returns
    -------
    photos, batch
        ``{name: (size, size, 3) uint8}`` and the float32 batch
        ``(pixel / 255 - 0.5) / 0.5`` in ``layout``.
    """
    names = SAMPLE_PHOTOS if count is None else SAMPLE_PHOTOS[:count]
    photos = load_sample_photos(names, size=size)
    batch = np.stack([photo.astype(np.float32) / 255.0 for photo in photos.values()])
    batch = (batch - np.float32(0.5)) / np.float32(0.5)
    if layout == "channels_first":
        batch = batch.transpose(0, 3, 1, 2)
    return photos, np.ascontiguousarray(batch, dtype=np.float32)
