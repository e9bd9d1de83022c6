"""Decoding images, fitting them to the model's input, and drawing maps over the originals.

Pillow decodes (imported on use), and only as JPEG, PNG, BMP, TIFF or WebP:
the file's content, not its name, picks the decoder, and no other of Pillow's
decoders is ever tried on an input.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DECODED_FORMATS",
    "MAX_ASPECT",
    "MAX_JPEG_PIXELS",
    "MAX_PIXELS",
    "WORKING_PIXELS",
    "check_image_bounds",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Fitted",
    "decode_image",
    "fit_to_size",
    "normalize",
    "overlay_on_original",
    "png_bytes",
]

#: Pillow's formats an input may decode as.
DECODED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
#: The most pixels an input may have (a PNG, TIFF, BMP or WebP decodes in full).
MAX_PIXELS = 40_000_000
#: The most pixels of a JPEG input, which decodes at most 8 times reduced per side (below
#: Pillow's own decompression-bomb warning, at 89.5 million).
MAX_JPEG_PIXELS = 89_000_000
#: The most one side of an input may be longer than the other.
MAX_ASPECT = 16
#: Inputs with more pixels are decoded reduced to about this many (and their overlay drawn so).
WORKING_PIXELS = 4_000_000
#: The usual ImageNet statistics of torchvision and Keras' "torch" mode, for pixels in [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def decode_image(source: bytes | str | Path) -> np.ndarray:
    """Decode an image file into ``(H, W, 3)`` uint8 RGB, within the bounds of one image.

    EXIF orientation is applied; grayscale, palette and 16-bit images become
    RGB; transparent images are laid over white; of an animation or a
    multi-page TIFF the first frame is taken. The image's size is read from
    its header before anything is decoded: more than :data:`MAX_PIXELS`
    pixels (:data:`MAX_JPEG_PIXELS` for a JPEG, which decodes reduced), or a
    side more than :data:`MAX_ASPECT` times the other, is refused. A larger
    image than :data:`WORKING_PIXELS` is decoded reduced (JPEG's draft mode)
    and resized down to that: the overlay is drawn at that size. Decoding one
    image thus takes at most about 400 MB at its peak, for a PNG of 40 million
    pixels (measured: 367 MB for 6300 x 6300, 108 MB for a 6000 x 6000 JPEG).

    Parameters
    ----------
    source
        The file's bytes, or its path.

    Raises
    ------
    OSError, ValueError
        For a file that is not one of :data:`DECODED_FORMATS`, is broken or
        truncated (Pillow's own errors), or is beyond the bounds above.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")  # noqa: SIM115
    try:
        with stream, _opened(Image, stream) as opened:
            check_image_bounds(*opened.size, kind=opened.format)
            if opened.format == "JPEG":
                opened.draft("RGB", _draft_size(*opened.size))
            opened.load()
            picture = ImageOps.exif_transpose(opened) or opened
            picture = _within_working_size(picture)
            return _to_rgb(picture)
    except UnidentifiedImageError:
        raise ValueError(
            "not a JPEG, PNG, BMP, TIFF or WebP image (or one too broken to recognize)"
        ) from None


def _opened(image_module: Any, stream: Any) -> Any:
    """``Image.open`` for our formats; Pillow's decompression-bomb check, above our bounds,
    becomes our error (and not a warning on stderr)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            return image_module.open(stream, formats=list(DECODED_FORMATS))
    except (image_module.DecompressionBombWarning, image_module.DecompressionBombError) as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)) / 1e6:.0f} million" if found else "more"
        raise ValueError(
            f"the image has {size} pixels, more than groupcam decodes ({MAX_JPEG_PIXELS / 1e6:g} "
            f"million for a JPEG, {MAX_PIXELS / 1e6:g} million for other formats)"
        ) from None


def check_image_bounds(width: int, height: int, kind: str | None = None) -> None:
    """Refuse an image beyond :data:`MAX_PIXELS` (:data:`MAX_JPEG_PIXELS`) or :data:`MAX_ASPECT`."""
    limit = MAX_JPEG_PIXELS if kind == "JPEG" else MAX_PIXELS
    if width * height > limit:
        raise ValueError(
            f"the image has {width} x {height} pixels, more than the {limit / 1e6:g} million "
            f"groupcam decodes for a {kind or 'file'}"
        )
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise ValueError(
            f"the image is {width} x {height} pixels: one side is more than {MAX_ASPECT} times "
            "the other, which no model input fits"
        )


def _draft_size(width: int, height: int) -> tuple[int, int]:
    """The smallest size JPEG's draft mode should decode to: the working size at most."""
    scale = min(1.0, (WORKING_PIXELS / (width * height)) ** 0.5)
    return max(1, int(width * scale)), max(1, int(height * scale))


def _within_working_size(picture: Any) -> Any:
    from PIL import Image

    width, height = picture.size
    if width * height <= WORKING_PIXELS:
        return picture
    scale = (WORKING_PIXELS / (width * height)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F", "P"):
        return picture.resize(size, Image.NEAREST)
    return picture.resize(size, Image.BILINEAR)


def _to_rgb(picture: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(picture, Image.Image)
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(picture, dtype=np.float64)
        top = 65535.0 if picture.mode.startswith("I;16") or values.max() > 255 else 255.0
        if picture.mode == "F" and values.max() <= 1.0:
            top = 1.0
        grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or (
        picture.mode == "P" and "transparency" in picture.info
    )
    if has_alpha:
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, rgba)
    return np.asarray(picture.convert("RGB"), dtype=np.uint8).copy()


@dataclass(frozen=True)
class Fitted:
    """An image fitted to the model's input size, and where the crop lies in the original.

    Attributes
    ----------
    pixels
        ``(h, w, 3)`` uint8: the original resized so that it covers
        ``(h, w) * 256 / 224`` and cropped at the center to ``(h, w)``.
    box
        ``(left, top, right, bottom)`` of the crop in the original's pixel
        coordinates (floats).
    """

    pixels: np.ndarray
    box: tuple[float, float, float, float]


def fit_to_size(image: np.ndarray, size: tuple[int, int]) -> Fitted:
    """Resize (bilinear, Pillow's antialiasing) and center-crop, as ImageNet evaluation does.

    For a square ``size`` this is the usual ``Resize(size * 256 / 224)`` then
    ``CenterCrop(size)`` (:func:`groupcam.samples.center_crop`); for
    ``(h, w)`` the image is scaled by one factor so that it covers
    ``round(h * 256 / 224) x round(w * 256 / 224)``, then cropped.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8.
    size
        ``(height, width)`` of the model's input.
    """
    from PIL import Image

    height, width = size
    original_height, original_width = image.shape[:2]
    scale = max(
        round(height * 256 / 224) / original_height, round(width * 256 / 224) / original_width
    )
    resized_width = max(width, round(original_width * scale))
    resized_height = max(height, round(original_height * scale))
    picture = Image.fromarray(image).resize((resized_width, resized_height), Image.BILINEAR)
    left, top = (resized_width - width) // 2, (resized_height - height) // 2
    crop = np.asarray(picture.crop((left, top, left + width, top + height)), dtype=np.uint8)
    sx, sy = original_width / resized_width, original_height / resized_height
    box = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)
    return Fitted(pixels=crop, box=box)


def normalize(pixels: np.ndarray, how: str) -> np.ndarray:
    """Turn ``(h, w, 3)`` uint8 pixels into float32 model input, channels-last.

    ``"imagenet"``: ``(pixel / 255 - mean) / std`` with :data:`IMAGENET_MEAN`
    and :data:`IMAGENET_STD`; ``"inception"``: ``(pixel / 255 - 0.5) / 0.5``,
    values in [-1, 1] (EfficientNet-Lite, Inception, MobileNet in TensorFlow);
    ``"none"``: the pixel values as float32 in [0, 255] (for models that
    normalize inside, such as ``keras.applications`` models with their own
    preprocessing layers).
    """
    values = pixels.astype(np.float32)
    if how == "none":
        return values
    values /= 255.0
    if how == "inception":
        return (values - 0.5) / 0.5
    if how == "imagenet":
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        std = np.asarray(IMAGENET_STD, dtype=np.float32)
        return (values - mean) / std
    raise ValueError(f"unknown normalization {how!r}")


def overlay_on_original(
    image: np.ndarray,
    saliency: np.ndarray,
    box: tuple[float, float, float, float] | None,
    alpha: float = 0.5,
    label: str | None = None,
) -> np.ndarray:
    """The map over the original image, at the original's size, with a legend below.

    The map is resized (bilinear) onto the part of the original the model saw
    (``box``; ``None`` for the whole image) and blended there with the jet
    color map as :func:`groupcam_core.visualization.overlay` does; what the
    model did not see (outside a center crop) is shown darkened. Below the
    image a strip shows ``label`` (the class explained and its probability)
    and a color bar of the map's scale, from 0 (least salient) to 1.

    Returns
    -------
    numpy.ndarray
        ``(H + strip, W, 3)`` uint8.
    """
    from PIL import Image

    from groupcam_core.visualization import overlay

    height, width = image.shape[:2]
    left, top, right, bottom = box if box is not None else (0.0, 0.0, float(width), float(height))
    x0, y0 = max(0, round(left)), max(0, round(top))
    x1, y1 = min(width, max(x0 + 1, round(right))), min(height, max(y0 + 1, round(bottom)))
    region = Image.fromarray(np.asarray(saliency, dtype=np.float32)).resize(
        (x1 - x0, y1 - y0), Image.BILINEAR
    )
    shown = (image.astype(np.float32) * 0.45).round().astype(np.uint8)
    shown[y0:y1, x0:x1] = overlay(
        image[y0:y1, x0:x1], np.clip(np.asarray(region), 0.0, 1.0), alpha=alpha
    )
    return np.concatenate([shown, _legend(width, label, alpha)], axis=0)


def _legend(width: int, label: str | None, alpha: float) -> np.ndarray:
    """A strip ``width`` pixels wide: the label on the left, the color bar 0..1 on the right."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw, ImageFont

    height = max(16, min(48, width // 14))
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=max(8, int(height * 0.6)))
    middle = height // 2
    bar_right = width - int(draw.textlength("1", font=font)) - 4
    bar_left = max(0, bar_right - max(8, width // 3))
    ramp = colormaps["jet"](np.linspace(0.0, 1.0, max(1, bar_right - bar_left)))[:, :3]
    bar = np.round(((1.0 - alpha) + alpha * ramp) * 255).astype(np.uint8)  # blended as over white
    strip.paste(
        Image.fromarray(np.repeat(bar[None], max(2, height // 3), axis=0)), (bar_left, height // 3)
    )
    gray = (60, 60, 60)
    draw.text((bar_left - 2, middle), "0", fill=gray, font=font, anchor="rm")
    draw.text((bar_right + 2, middle), "1", fill=gray, font=font, anchor="lm")
    if label:
        room = bar_left - int(draw.textlength("0", font=font)) - 8
        cut = len(label)
        text = label
        while cut > 0 and draw.textlength(text, font=font) > room:
            cut -= 1
            text = label[:cut] + "\u2026"
        if cut > 0:
            draw.text((2, middle), text, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(strip, dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
