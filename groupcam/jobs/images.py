"""Decoding images, fitting them to the model's input, and drawing maps over the originals.

Pillow decodes (imported on use), and only as JPEG, PNG, BMP, TIFF or WebP:
the file's content, not its name, picks the decoder, and no other of Pillow's
decoders is ever tried on an input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DECODED_FORMATS",
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
#: The usual ImageNet statistics of torchvision and Keras' "torch" mode, for pixels in [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def decode_image(source: bytes | str | Path) -> np.ndarray:
    """Decode an image file into ``(H, W, 3)`` uint8 RGB.

    EXIF orientation is applied; grayscale, palette and 16-bit images become
    RGB; transparent images are laid over white; of an animation or a
    multi-page TIFF the first frame is taken.

    Parameters
    ----------
    source
        The file's bytes, or its path.

    Raises
    ------
    OSError, ValueError
        For a file that is not one of :data:`DECODED_FORMATS`, or is broken or
        truncated (Pillow's own errors), or too large (Pillow's decompression
        bomb check).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")  # noqa: SIM115
    try:
        with stream, Image.open(stream, formats=list(DECODED_FORMATS)) as opened:
            opened.load()
            picture = ImageOps.exif_transpose(opened) or opened
            return _to_rgb(picture)
    except UnidentifiedImageError:
        raise ValueError(
            "not a JPEG, PNG, BMP, TIFF or WebP image (or one too broken to recognize)"
        ) from None


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
) -> np.ndarray:
    """The map over the original image, at the original's size.

    The map is resized (bilinear) onto the part of the original the model saw
    (``box``; ``None`` for the whole image) and blended there with the jet
    color map as :func:`groupcam_core.visualization.overlay` does; what the
    model did not see (outside a center crop) is shown darkened.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.
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
    return shown


def png_bytes(image: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
