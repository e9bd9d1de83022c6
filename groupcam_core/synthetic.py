"""Synthetic scenes with ground-truth object masks, for localization benchmarks.

Each scene holds one flat-colored object of one of several shape classes (disk,
square, triangle, cross, ring) at a random place, size, rotation and color,
drawn over a textured background (smooth color fields, stripes, soft blotches
and thin lines) that carries distractor energy. The color is drawn
independently of the class, so a classifier has to look at the object's shape.
The boolean object masks make localization checks of saliency maps possible
without human annotations (for example :func:`groupcam_core.metrics.pointing_game`).

Only numpy is used; scene ``i`` depends only on ``seed`` and ``i`` (one
``numpy.random.SeedSequence`` child per scene), so ``make_scenes(10, s)`` is
the first ten scenes of ``make_scenes(100, s)``.

>>> scenes = make_scenes(8, seed=0)
>>> scenes.images.shape, scenes.masks.shape, scenes.labels.shape
((8, 64, 64, 3), (8, 64, 64), (8,))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SYNTHETIC_CLASSES",
    "SyntheticScenes",
    "channels_first",
    "make_backgrounds",
    "make_scenes",
]

#: The shape classes, in label order.
SYNTHETIC_CLASSES: tuple[str, ...] = ("disk", "square", "triangle", "cross", "ring")

# Extent of each shape from its center, in units of its radius (for placement).
_EXTENT = {"disk": 1.0, "square": 1.14, "triangle": 1.2, "cross": 1.0, "ring": 1.0}


@dataclass(frozen=True, eq=False)
class SyntheticScenes:
    """A batch of synthetic scenes and their ground truth.

    Attributes
    ----------
    images
        ``(N, H, W, 3)`` float32, channels last, values in ``[0, 1]``.
        Use :func:`channels_first` for ``(N, 3, H, W)`` models.
    labels
        ``(N,)`` int64 class indices into ``class_names``.
    masks
        ``(N, H, W)`` bool, True on the object's pixels.
    class_names
        The class names, in label order.
    colors
        ``(N, 3)`` float32 RGB color of each object, in ``[0, 1]``.
    centers
        ``(N, 2)`` float64 object centers (row, column) in pixels.
    radii
        ``(N,)`` float64 object radii in pixels.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]
    colors: np.ndarray
    centers: np.ndarray
    radii: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def channels_first(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` to a contiguous ``(N, C, H, W)`` array (same dtype)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected a (N, H, W, C) batch, got shape {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _check_args(count: int, size: int, clutter: float) -> None:
    if int(count) != count or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if not 0.0 <= clutter <= 1.0:
        raise ValueError(f"clutter must be in [0, 1], got {clutter!r}")


def _interpolation_matrix(points: int, size: int) -> np.ndarray:
    """``(size, points)`` linear interpolation weights from a coarse grid to ``size`` pixels."""
    position = np.linspace(0.0, points - 1.0, size)
    low = np.clip(np.floor(position).astype(int), 0, points - 2)
    frac = position - low
    matrix = np.zeros((size, points))
    matrix[np.arange(size), low] = 1.0 - frac
    matrix[np.arange(size), low + 1] = frac
    return matrix


def _smooth_field(rng: np.random.Generator, points: int, size: int, scale: float) -> np.ndarray:
    """A smooth ``(size, size, 3)`` random field: a coarse random grid, bilinearly upsampled."""
    grid = rng.normal(scale=scale, size=(points, points, 3))
    weights = _interpolation_matrix(points, size)
    rows = np.tensordot(weights, grid, axes=(1, 0))  # (size, points, 3)
    return np.matmul(weights, rows)  # (size, size, 3): weights @ rows[h] for each h


def _background(rng: np.random.Generator, size: int, clutter: float = 1.0) -> np.ndarray:
    """One textured ``(size, size, 3)`` float64 background in ``[0, 1]``.

    ``clutter`` scales the texture around the flat base color (0: flat, 1: full);
    the random draws do not depend on it.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    base = rng.uniform(0.25, 0.75, size=3)
    image = base + _smooth_field(rng, 4, size, 0.15) + _smooth_field(rng, 12, size, 0.06)
    if rng.random() < 0.75:  # stripes: a square-ish wave of random orientation and period
        angle = rng.uniform(0.0, np.pi)
        period = rng.uniform(5.0, 16.0) * size / 64.0
        phase = rng.uniform(0.0, 2.0 * np.pi)
        wave = np.sin(2.0 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
        wave = np.tanh(3.0 * wave)
        image += wave[..., None] * rng.uniform(0.05, 0.2) * rng.normal(size=3)
    for _ in range(rng.integers(1, 5)):  # soft blotches
        center = rng.uniform(0.0, size, size=2)
        sigma = rng.uniform(0.04, 0.12) * size
        blob = np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2.0 * sigma**2))
        image += blob[..., None] * rng.uniform(-0.35, 0.35, size=3)
    for _ in range(rng.integers(0, 3)):  # thin straight lines with hard edges
        angle = rng.uniform(0.0, np.pi)
        point = rng.uniform(0.0, size, size=2)
        distance = np.abs((yy - point[0]) * np.cos(angle) - (xx - point[1]) * np.sin(angle))
        line = distance <= rng.uniform(0.5, 1.2) * size / 64.0
        image[line] = rng.uniform(0.0, 1.0, size=3)
    return np.clip(base + clutter * (image - base), 0.0, 1.0)


def _shape_mask(
    name: str, size: int, center: np.ndarray, radius: float, angle: float
) -> np.ndarray:
    """Boolean ``(size, size)`` mask of one shape."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - center[0], xx - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if name == "disk":
        return u**2 + v**2 <= radius**2
    if name == "ring":
        d2 = u**2 + v**2
        return (d2 <= radius**2) & (d2 >= (0.55 * radius) ** 2)
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * radius
    if name == "triangle":  # equilateral, circumradius 1.2 radius, inradius 0.6 radius
        normals = angle + np.pi / 2 + 2.0 * np.pi * np.arange(3) / 3.0
        inside = np.ones((size, size), dtype=bool)
        for phi in normals:
            inside &= dx * np.cos(phi) + dy * np.sin(phi) <= 0.6 * radius
        return inside
    if name == "cross":
        arm = 0.3 * radius
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | (
            (np.abs(v) <= arm) & (np.abs(u) <= radius)
        )
    raise ValueError(f"unknown shape {name!r}; known: {', '.join(SYNTHETIC_CLASSES)}")


def _object_color(rng: np.random.Generator, under: np.ndarray, contrast: float) -> np.ndarray:
    """A random color at least ``contrast`` (RGB distance) from the mean of ``under``."""
    mean = under.mean(axis=0)
    best, best_distance = None, -1.0
    for _ in range(50):
        color = rng.uniform(0.0, 1.0, size=3)
        distance = float(np.linalg.norm(color - mean))
        if distance >= contrast:
            return color
        if distance > best_distance:
            best, best_distance = color, distance
    return best  # pragma: no cover - practically unreachable for contrast <= 0.5


def _scene_generators(seed: int, count: int) -> list[tuple[np.random.Generator, ...]]:
    children = np.random.SeedSequence(seed).spawn(count)
    return [tuple(np.random.default_rng(s) for s in child.spawn(2)) for child in children]


def make_backgrounds(count: int, seed: int, size: int = 64, *, clutter: float = 1.0) -> np.ndarray:
    """The backgrounds of ``make_scenes(count, seed, size, clutter=clutter)``.

    The same pixels as the scenes' backgrounds, without the objects and without
    the pixel noise.

    Returns
    -------
    numpy.ndarray
        ``(count, size, size, 3)`` float32 in ``[0, 1]``. Useful as object-free
        controls: a classifier that looks at the object should be near chance on them.
    """
    _check_args(count, size, clutter)
    out = np.empty((count, size, size, 3), dtype=np.float32)
    for i, (background_rng, _) in enumerate(_scene_generators(seed, count)):
        out[i] = _background(background_rng, size, clutter)
    return out


def make_scenes(
    count: int,
    seed: int,
    size: int = 64,
    *,
    radius_range: tuple[float, float] = (0.1, 0.2),
    contrast: float = 0.35,
    noise: float = 0.02,
    clutter: float = 1.0,
    class_names: tuple[str, ...] = SYNTHETIC_CLASSES,
) -> SyntheticScenes:
    """Generate ``count`` scenes with one object each, deterministically from ``seed``.

    Parameters
    ----------
    count
        Number of scenes.
    seed
        Seed; the same ``(count, seed, ...)`` gives identical arrays.
    size
        Image side in pixels (square images).
    radius_range
        Object radius range as fractions of ``size`` (uniformly drawn).
    contrast
        Minimum RGB distance between the object's color and the mean
        background under it.
    noise
        Standard deviation of Gaussian pixel noise added to the whole image
        (before clipping to ``[0, 1]``).
    clutter
        Strength of the background texture in ``[0, 1]``: 0 gives a flat
        background of a random color, 1 (the default, the benchmark setting)
        the full texture. For curriculum training; the random draws, and so
        the objects' shapes, places and sizes, do not depend on it (the colors
        may, through ``contrast``).
    class_names
        Which shapes to draw, a subset of :data:`SYNTHETIC_CLASSES` in any
        order; labels index this tuple. Labels are drawn uniformly.

    Returns
    -------
    SyntheticScenes
        Images ``(N, H, W, 3)`` float32 in ``[0, 1]``, labels, masks and metadata.
    """
    _check_args(count, size, clutter)
    class_names = tuple(class_names)
    unknown = [name for name in class_names if name not in SYNTHETIC_CLASSES]
    if unknown or not class_names:
        raise ValueError(
            f"class_names must be a non-empty subset of {SYNTHETIC_CLASSES}, got {class_names}"
        )
    low, high = radius_range
    if not 0.0 < low <= high < 0.4:
        raise ValueError(f"radius_range must satisfy 0 < low <= high < 0.4, got {radius_range}")
    images = np.empty((count, size, size, 3), dtype=np.float32)
    masks = np.empty((count, size, size), dtype=bool)
    labels = np.empty(count, dtype=np.int64)
    colors = np.empty((count, 3), dtype=np.float32)
    centers = np.empty((count, 2), dtype=np.float64)
    radii = np.empty(count, dtype=np.float64)
    for i, (background_rng, rng) in enumerate(_scene_generators(seed, count)):
        image = _background(background_rng, size, clutter)
        label = int(rng.integers(len(class_names)))
        name = class_names[label]
        radius = rng.uniform(low, high) * size
        margin = _EXTENT[name] * radius + 1.0
        center = rng.uniform(margin, size - 1.0 - margin, size=2)
        mask = _shape_mask(name, size, center, radius, rng.uniform(0.0, 2.0 * np.pi))
        color = _object_color(rng, image[mask], contrast)
        image[mask] = color
        image += rng.normal(scale=noise, size=image.shape)
        images[i] = np.clip(image, 0.0, 1.0)
        masks[i], labels[i], colors[i], centers[i], radii[i] = mask, label, color, center, radius
    return SyntheticScenes(images, labels, masks, class_names, colors, centers, radii)
