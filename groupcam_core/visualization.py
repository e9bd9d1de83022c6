"""Pictures of saliency maps: overlays and grids (matplotlib, imported on use)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "as_rgb_float",
    "overlay",
    "save_signal_overlay",
    "save_volume_montage",
    "volume_montage",
    "save_comparison_grid",
    "save_grid",
    "save_overlay",
    "write_palette_png",
]


def as_rgb_float(image: np.ndarray) -> np.ndarray:
    """An image to show: ``(H, W, 3)`` float32 in [0, 1].

    Grey ``(H, W)`` images are repeated to three channels and an alpha channel
    is dropped; integer pixels are divided by 255, and floats outside [0, 1]
    (a normalized model input) are stretched to it.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    image = image[..., :3]
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / 255.0
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:  # normalized input: stretch for display
        return ((image - low) / max(high - low, 1e-12)).astype(np.float32)
    return image.astype(np.float32)


def overlay(
    image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, colormap: str = "jet"
) -> np.ndarray:
    """Blend a color-mapped saliency map over an image.

    Parameters
    ----------
    image
        ``(H, W, 3)`` RGB (uint8, or float in [0, 1]; other float ranges are
        stretched) or ``(H, W)`` grey image.
    saliency
        ``(H, W)`` map in [0, 1].
    alpha
        Weight of the heat map.
    colormap
        Name of a matplotlib colormap.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB image.
    """
    from matplotlib import colormaps

    rgb = as_rgb_float(image)
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.shape != rgb.shape[:2]:
        raise ValueError(f"saliency shape {saliency.shape} does not match image {rgb.shape[:2]}")
    heat = colormaps[colormap](np.clip(saliency, 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * rgb + alpha * heat
    return np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    saliency: np.ndarray,
    title: str = "",
    alpha: float = 0.5,
) -> Path:
    """Write one overlay with a title and color bar to a PNG file; return its path."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 4.0), dpi=100)
    axes = figure.add_subplot()
    shown = axes.imshow(overlay(image, saliency, alpha=alpha))
    shown.set_cmap("jet")
    shown.set_clim(0.0, 1.0)
    axes.set_title(title, fontsize=10)
    axes.axis("off")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="saliency")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def _checked_map(saliency: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.shape != shape:
        raise ValueError(f"saliency shape {saliency.shape} does not match the {what} {shape}")
    return saliency


def _save(figure: Any, path: str | Path | IO[bytes]) -> Path | IO[bytes]:
    """Write a figure as PNG to a file path or a binary stream; return where."""
    target = Path(path) if isinstance(path, (str, Path)) else path
    figure.savefig(target, format="png")
    return target


def save_signal_overlay(
    path: str | Path | IO[bytes],
    signal: np.ndarray,
    saliency: np.ndarray,
    title: str = "",
    colormap: str = "jet",
) -> Path | IO[bytes]:
    """Write a 1-D signal with its saliency map as a colored band under it to a PNG file.

    Parameters
    ----------
    path
        PNG file to write (a path, or a binary stream).
    signal
        ``(L,)`` one channel, or ``(C, L)`` channels (each drawn as a line).
    saliency
        ``(L,)`` map in [0, 1].
    title
        Shown above the plot.
    colormap
        Name of a matplotlib colormap for the band.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.figure import Figure

    lines = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    if lines.ndim != 2:
        raise ValueError(f"expected an (L,) or (C, L) signal, got shape {np.shape(signal)}")
    saliency = _checked_map(saliency, (lines.shape[1],), "signal's length")
    figure = Figure(figsize=(7.0, 3.0), dpi=100)
    axes = figure.add_subplot()
    low, high = float(lines.min()), float(lines.max())
    if high <= low:
        low, high = low - 1.0, high + 1.0
    band = axes.imshow(
        saliency[None, :],
        aspect="auto",
        cmap=colormap,
        vmin=0.0,
        vmax=1.0,
        alpha=0.45,
        extent=(-0.5, lines.shape[1] - 0.5, low, high),
    )
    for channel in lines:
        axes.plot(np.arange(lines.shape[1]), channel, linewidth=1.0, color="black")
    axes.set_xlim(-0.5, lines.shape[1] - 0.5)
    axes.set_ylim(low, high)
    axes.set_xlabel("sample")
    axes.set_title(title, fontsize=10)
    figure.colorbar(band, ax=axes, fraction=0.046, pad=0.02, label="saliency")
    figure.tight_layout()
    return _save(figure, path)


def volume_montage(
    volume: np.ndarray,
    saliency: np.ndarray,
    slices: int = 8,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """Overlays of evenly spaced slices of a 3-D volume side by side, as one RGB image.

    Parameters
    ----------
    volume
        ``(D, H, W)`` grey or ``(D, H, W, 3)`` RGB volume (a video's frames).
    saliency
        ``(D, H, W)`` map in [0, 1].
    slices
        How many slices along the first axis (at most D), evenly spaced.
    alpha, colormap
        As for :func:`overlay`.

    Returns
    -------
    numpy.ndarray
        ``(H, slices * W, 3)`` uint8 RGB image, the first slice on the left.
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise ValueError(f"expected a (D, H, W) or (D, H, W, 3) volume, got shape {volume.shape}")
    saliency = _checked_map(saliency, volume.shape[:3], "volume")
    picked = np.unique(np.linspace(0, volume.shape[0] - 1, min(slices, volume.shape[0])).round())
    low, high = float(volume.min()), float(volume.max())
    scaled = (volume.astype(np.float32) - low) / max(high - low, 1e-12)  # one scale for all
    return np.concatenate(
        [overlay(scaled[int(d)], saliency[int(d)], alpha, colormap) for d in picked], axis=1
    )


def save_volume_montage(
    path: str | Path | IO[bytes],
    volume: np.ndarray,
    saliency: np.ndarray,
    title: str = "",
    slices: int = 8,
    alpha: float = 0.5,
) -> Path | IO[bytes]:
    """Write :func:`volume_montage` with a title to a PNG file; return its path."""
    from matplotlib.figure import Figure

    montage = volume_montage(volume, saliency, slices=slices, alpha=alpha)
    height, width = montage.shape[:2]
    figure = Figure(figsize=(max(3.0, 1.6 * width / height), 2.2), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(montage)
    axes.set_title(title, fontsize=10)
    axes.axis("off")
    figure.tight_layout()
    return _save(figure, path)


def save_grid(
    path: str | Path,
    images: Sequence[np.ndarray],
    saliencies: Sequence[np.ndarray],
    titles: Sequence[str],
    alpha: float = 0.5,
) -> Path:
    """Write a two-row grid (photos above, overlays below) to a PNG file."""
    from matplotlib.figure import Figure

    count = len(images)
    if not (count == len(saliencies) == len(titles)) or count == 0:
        raise ValueError("images, saliencies and titles must be non-empty and of one length")
    figure = Figure(figsize=(3.0 * count, 6.2), dpi=100)
    for column, (image, saliency, title) in enumerate(zip(images, saliencies, titles, strict=True)):
        top = figure.add_subplot(2, count, column + 1)
        top.imshow(as_rgb_float(image))
        top.set_title(title, fontsize=9)
        top.axis("off")
        bottom = figure.add_subplot(2, count, count + column + 1)
        bottom.imshow(overlay(image, saliency, alpha=alpha))
        bottom.axis("off")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def save_comparison_grid(
    path: str | Path,
    images: Sequence[np.ndarray],
    maps_by_method: Mapping[str, Sequence[np.ndarray]],
    row_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
) -> Path:
    """Write a grid with one row per image: the image, then each method's overlay.

    Parameters
    ----------
    path
        PNG file to write.
    images
        ``(H, W, 3)`` images (uint8 or floats in [0, 1]).
    maps_by_method
        Method name -> one ``(H, W)`` map in [0, 1] per image.
    row_titles
        A title for each row (shown above the image), or ``None``.
    alpha
        Opacity of the heat map over the image.
    """
    from matplotlib.figure import Figure

    count = len(images)
    if count == 0 or any(len(maps) != count for maps in maps_by_method.values()):
        raise ValueError("every method needs one map per image, and there must be images")
    if row_titles is not None and len(row_titles) != count:
        raise ValueError(f"got {len(row_titles)} row titles for {count} images")
    columns = 1 + len(maps_by_method)
    figure = Figure(figsize=(2.2 * columns, 2.3 * count), dpi=100)
    for row, image in enumerate(images):
        axis = figure.add_subplot(count, columns, row * columns + 1)
        axis.imshow(as_rgb_float(image))
        axis.set_title(row_titles[row] if row_titles is not None else "", fontsize=8)
        axis.axis("off")
        for column, (method, maps) in enumerate(maps_by_method.items(), start=2):
            axis = figure.add_subplot(count, columns, row * columns + column)
            axis.imshow(overlay(image, maps[row], alpha=alpha))
            if row == 0:
                axis.set_title(method, fontsize=9)
            axis.axis("off")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def write_palette_png(source: str | Path | IO[bytes], path: str | Path, colors: int = 256) -> None:
    """Write a picture as a dithered palette PNG of ``colors`` colors (needs Pillow).

    Figures of many saliency maps take a third of their full-color size or less
    this way, with no visible change at their size.

    Parameters
    ----------
    source
        A PNG (or any format Pillow reads): a path or a binary file object.
        It may be ``path`` itself: the picture is read before ``path`` is written.
    path
        Where the PNG goes.
    colors
        Palette size, 2 to 256.
    """
    from PIL import Image

    if not 2 <= colors <= 256:
        raise ValueError(f"colors must be from 2 to 256, got {colors!r}")
    with Image.open(source) as picture:
        rgb = picture.convert("RGB")
    palette = rgb.quantize(colors, method=Image.Quantize.MEDIANCUT)
    rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
