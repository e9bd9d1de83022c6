"""Every real photograph that ships offline in the test dependencies.

scikit-image, scikit-learn and matplotlib carry sample images inside their
wheels. The photographs among them are listed here; the rest are left out for a
stated reason (textures, micrographs, drawings and synthetic test patterns are
not photos of objects an ImageNet classifier knows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groupcam.samples import center_crop

#: name -> (package, file inside the package's sample folder)
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"),
    "camera": ("skimage", "camera.png"),
    "chelsea": ("skimage", "chelsea.png"),
    "clock_motion": ("skimage", "clock_motion.png"),
    "coffee": ("skimage", "coffee.png"),
    "coins": ("skimage", "coins.png"),
    "hubble_deep_field": ("skimage", "hubble_deep_field.jpg"),
    "moon": ("skimage", "moon.png"),
    "motorcycle_left": ("skimage", "motorcycle_left.png"),
    "retina": ("skimage", "retina.jpg"),
    "rocket": ("skimage", "rocket.jpg"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
    "present": ("matplotlib", "Minduka_Present_Blue_Pack.png"),
}

#: Sample images that are not used, and why.
LEFT_OUT: dict[str, str] = {
    "skimage brick, grass, gravel": "texture close-ups",
    "skimage cell, ihc, microaneurysms": "micrographs and a retinal close-up crop",
    "skimage chessboard, color, logo, phantom, horse, page, text": "drawings and test patterns",
    "skimage motorcycle_right": "the other half of a stereo pair with motorcycle_left",
    "skimage multipage*.tif": "tiny test files",
    "matplotlib logo2": "a logo",
}


def _folder(package: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    if package == "sklearn":
        import sklearn

        return Path(sklearn.__file__).parent / "datasets" / "images"
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def load_photos(size: int = 224) -> dict[str, np.ndarray]:
    """All photos, center-cropped to ``(size, size, 3)`` uint8 RGB (grey ones as RGB)."""
    from PIL import Image

    photos = {}
    for name, (package, filename) in PHOTOS.items():
        with Image.open(_folder(package) / filename) as image:
            rgb = np.asarray(image.convert("RGB"))
        photos[name] = center_crop(rgb, size=size, resize_to=round(size * 256 / 224))
    return photos
