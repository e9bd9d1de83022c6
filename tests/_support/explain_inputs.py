"""An image folder for the ``groupcam explain`` tests: good, odd and broken files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

#: Files the folder holds, by what they test; the broken ones end in "broken", "truncated", "empty".
GOOD = (
    "a/scene.jpg",
    "b/scene.jpg",
    "b/scene.png",
    "grey.png",
    "rgba.png",
    "deep16.png",
    "palette.png",
    "photo.bmp",
    "photo.tif",
    "photo.webp",
)
BROKEN = ("broken.jpg", "truncated.jpg", "empty.png")


def blob_picture(seed: int, height: int = 40, width: int = 52) -> np.ndarray:
    """``(height, width, 3)`` uint8: grey noise with one colored blob (the blob net's task)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(10, height - 10), rng.uniform(10, width - 10)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
    color = np.eye(3)[seed % 3]
    picture = 110 + rng.normal(scale=20, size=(height, width, 3)) + 140 * blob[..., None] * color
    return np.clip(picture, 0, 255).astype(np.uint8)


def write_image_folder(root: Path) -> Path:
    """Write the folder (see :data:`GOOD` and :data:`BROKEN`) under ``root``; return it."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "a").mkdir(exist_ok=True)
    (root / "b").mkdir(exist_ok=True)
    (root / ".hidden").mkdir(exist_ok=True)
    Image.fromarray(blob_picture(0)).save(root / "a/scene.jpg", quality=95)
    Image.fromarray(blob_picture(1)).save(root / "b/scene.jpg", quality=95)
    Image.fromarray(blob_picture(2)).save(root / "b/scene.png")
    Image.fromarray(blob_picture(3).mean(axis=2).astype(np.uint8)).save(root / "grey.png")
    rgba = np.dstack([blob_picture(4), np.full((40, 52), 200, np.uint8)])
    Image.fromarray(rgba).save(root / "rgba.png")
    deep = (blob_picture(5).mean(axis=2).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "deep16.png")
    Image.fromarray(blob_picture(6)).convert("P").save(root / "palette.png")
    Image.fromarray(blob_picture(7)).save(root / "photo.bmp")
    Image.fromarray(blob_picture(8)).save(root / "photo.tif")
    Image.fromarray(blob_picture(9)).save(root / "photo.webp", lossless=True)
    (root / "broken.jpg").write_bytes(b"this is no image\n" * 20)
    buffer = io.BytesIO()
    Image.fromarray(blob_picture(10, 80, 96)).save(buffer, format="JPEG", quality=95)
    (root / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, and not looked at\n")
    Image.fromarray(blob_picture(11)).save(root / ".hidden/skipped.png")
    return root


def results_by_path(out: Path) -> dict[str, dict[str, str]]:
    """The rows of ``out/results.csv``, by the image's path below the ``images`` folder."""
    import csv

    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return {row["path"].split("/images/", 1)[1]: row for row in csv.DictReader(handle)}
