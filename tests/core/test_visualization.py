from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from groupcam.samples import imagenet_class_names, load_sample_photos
from groupcam_core.visualization import (
    overlay,
    save_comparison_grid,
    save_grid,
    save_overlay,
    save_signal_overlay,
    save_volume_montage,
    volume_montage,
)


def test_overlay_blends_heat_over_the_image() -> None:
    image = np.full((8, 10, 3), 128, dtype=np.uint8)
    saliency = np.zeros((8, 10), dtype=np.float32)
    saliency[:, 5:] = 1.0
    blended = overlay(image, saliency, alpha=0.5)
    assert blended.shape == (8, 10, 3)
    assert blended.dtype == np.uint8
    # jet: 0 is dark blue, 1 is dark red.
    assert blended[0, 0, 2] > blended[0, 0, 0]
    assert blended[0, 9, 0] > blended[0, 9, 2]
    np.testing.assert_array_equal(overlay(image, saliency, alpha=0.0), image)


def test_overlay_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay(np.zeros((8, 8, 3)), np.zeros((4, 4)))


def test_normalized_float_images_are_stretched_for_display() -> None:
    image = np.linspace(-2, 2, 4 * 4 * 3).reshape(4, 4, 3)
    shown = overlay(image, np.zeros((4, 4)), alpha=0.0)
    assert shown.min() == 0
    assert shown.max() == 255


def test_pictures_are_written(tmp_path) -> None:
    photos = load_sample_photos(("coffee", "rocket"), size=64)
    maps = [np.random.default_rng(i).random((64, 64)) for i in range(2)]
    single = save_overlay(tmp_path / "one.png", photos["coffee"], maps[0], title="coffee")
    grid = save_grid(tmp_path / "grid.png", list(photos.values()), maps, ["a", "b"])
    assert Image.open(single).size[0] > 100
    assert Image.open(grid).size == (600, 620)  # 2 columns x 2 rows
    with pytest.raises(ValueError, match="one length"):
        save_grid(tmp_path / "bad.png", list(photos.values()), maps[:1], ["a"])


def test_samples_and_class_names() -> None:
    photos = load_sample_photos()
    assert list(photos) == ["chelsea", "coffee", "astronaut", "rocket"]
    assert all(p.shape == (224, 224, 3) and p.dtype == np.uint8 for p in photos.values())
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[281] == "tabby"
    assert names[967] == "espresso"
    with pytest.raises(ValueError, match="no photo named"):
        load_sample_photos(("nonexistent_photo",))


def test_comparison_grid_has_a_row_per_image_and_a_column_per_method(tmp_path) -> None:
    images = [np.full((16, 16, 3), 100, dtype=np.uint8)] * 3
    maps = {m: [np.eye(16, dtype=np.float32)] * 3 for m in ("a", "b")}
    path = save_comparison_grid(tmp_path / "cmp.png", images, maps, ["x", "y", "z"])
    assert Image.open(path).size == (660, 690)  # 3 columns x 2.2 in, 3 rows x 2.3 in
    with pytest.raises(ValueError, match="one map per image"):
        save_comparison_grid(tmp_path / "bad.png", images, {"a": maps["a"][:2]})
    with pytest.raises(ValueError, match="2 row titles for 3 images"):
        save_comparison_grid(tmp_path / "bad.png", images, maps, ["x", "y"])


def test_a_volume_montage_shows_evenly_spaced_slices_left_to_right() -> None:
    volume = np.zeros((10, 6, 5))
    saliency = np.zeros((10, 6, 5))
    saliency[9] = 1.0  # only the last slice is salient
    montage = volume_montage(volume, saliency, slices=4, alpha=1.0)
    assert montage.shape == (6, 4 * 5, 3)
    # jet: 0 is dark blue, 1 is dark red; slices 0, 3, 6 and 9.
    assert (montage[:, :15, 2] > montage[:, :15, 0]).all()
    assert (montage[:, 15:, 0] > montage[:, 15:, 2]).all()
    with pytest.raises(ValueError, match="does not match the volume"):
        volume_montage(volume, saliency[:5])


def test_signal_and_volume_pictures_are_written(tmp_path) -> None:
    signal = np.sin(np.linspace(0, 6, 50))[None].repeat(2, axis=0)
    band = save_signal_overlay(tmp_path / "signal.png", signal, np.linspace(0, 1, 50), "ecg")
    assert Image.open(band).size == (700, 300)
    with pytest.raises(ValueError, match="signal's length"):
        save_signal_overlay(tmp_path / "bad.png", signal, np.zeros(49))
    volume = np.random.default_rng(0).random((16, 8, 8))
    montage = save_volume_montage(tmp_path / "volume.png", volume, volume, "ct")
    assert Image.open(montage).size[0] > Image.open(montage).size[1]
