"""The synthetic localization scenes (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from groupcam_core.synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticScenes,
    channels_first,
    make_backgrounds,
    make_scenes,
)

NOISE = 0.02  # make_scenes' default pixel noise


@pytest.fixture(scope="module")
def scenes() -> SyntheticScenes:
    return make_scenes(300, seed=5)


def test_shapes_dtypes_and_range(scenes: SyntheticScenes) -> None:
    assert len(scenes) == 300
    assert scenes.images.shape == (300, 64, 64, 3)
    assert scenes.images.dtype == np.float32
    assert scenes.labels.shape == (300,)
    assert scenes.labels.dtype == np.int64
    assert scenes.masks.shape == (300, 64, 64)
    assert scenes.masks.dtype == np.bool_
    assert scenes.colors.shape == (300, 3)
    assert scenes.centers.shape == (300, 2)
    assert scenes.radii.shape == (300,)
    assert scenes.class_names == SYNTHETIC_CLASSES
    assert len(SYNTHETIC_CLASSES) >= 4
    assert scenes.images.min() >= 0.0
    assert scenes.images.max() <= 1.0
    assert set(np.unique(scenes.labels)) == set(range(len(SYNTHETIC_CLASSES)))
    # The background is textured, not flat: a lot of variance away from the object.
    background = np.where(scenes.masks[..., None], np.nan, scenes.images)
    assert np.nanmean(np.nanstd(background, axis=(1, 2))) > 0.05


def test_other_sizes() -> None:
    small = make_scenes(6, seed=0, size=32)
    assert small.images.shape == (6, 32, 32, 3)
    assert small.masks.shape == (6, 32, 32)
    assert small.masks.any(axis=(1, 2)).all()
    assert make_scenes(0, seed=0).images.shape == (0, 64, 64, 3)


def test_deterministic_and_independent_of_count() -> None:
    first, again = make_scenes(20, seed=3), make_scenes(20, seed=3)
    for name in ("images", "labels", "masks", "colors", "centers", "radii"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    prefix = make_scenes(7, seed=3)
    np.testing.assert_array_equal(prefix.images, first.images[:7])
    np.testing.assert_array_equal(prefix.masks, first.masks[:7])
    np.testing.assert_array_equal(make_backgrounds(7, seed=3), make_backgrounds(20, seed=3)[:7])
    other = make_scenes(20, seed=4)
    assert not np.array_equal(other.images, first.images)
    assert not np.array_equal(other.labels, first.labels)


def test_object_is_where_the_mask_is(scenes: SyntheticScenes) -> None:
    backgrounds = make_backgrounds(300, seed=5)
    change = np.abs(scenes.images - backgrounds).max(axis=-1)
    # Off the mask only the pixel noise changes the background...
    assert change[~scenes.masks].max() < 6 * NOISE
    # ...on the mask the object replaces it, with a clearly different color.
    assert (change[scenes.masks] > 0.1).mean() > 0.99
    for i in range(len(scenes)):
        assert change[i][scenes.masks[i]].mean() > 0.2
    # The object is flat-colored (up to the noise) in its recorded color.
    off_color = np.abs(scenes.images - scenes.colors[:, None, None, :]).max(axis=-1)
    assert off_color[scenes.masks].max() < 6 * NOISE
    # Contrast with the mean background under the object, as documented.
    for i in range(len(scenes)):
        under = backgrounds[i][scenes.masks[i]].mean(axis=0)
        assert np.linalg.norm(scenes.colors[i] - under) >= 0.35 - 1e-6


def test_masks_match_the_geometry(scenes: SyntheticScenes) -> None:
    masks = scenes.masks
    assert not masks[:, 0].any()
    assert not masks[:, -1].any()
    assert not masks[:, :, 0].any()
    assert not masks[:, :, -1].any()
    rows, cols = np.mgrid[0:64, 0:64]
    area = masks.sum(axis=(1, 2))
    centroid = np.stack(
        [(rows * masks).sum(axis=(1, 2)) / area, (cols * masks).sum(axis=(1, 2)) / area], 1
    )
    np.testing.assert_allclose(centroid, scenes.centers, atol=0.6)  # all shapes are symmetric
    assert (scenes.radii >= 0.1 * 64).all()
    assert (scenes.radii <= 0.2 * 64).all()
    # Area over pi r^2 tells the shapes apart: each class has its own, as designed.
    expected = {
        "disk": 1.0,
        "square": 1.6**2 / np.pi,
        "triangle": 3 * np.sqrt(3) * 0.6**2 / np.pi,
        "cross": (2 * 0.6 * 2 - 0.6**2) / np.pi,
        "ring": 1 - 0.55**2,
    }
    ratio = area / (np.pi * scenes.radii**2)
    for label, name in enumerate(scenes.class_names):
        np.testing.assert_allclose(ratio[scenes.labels == label], expected[name], atol=0.06)
    # Rings have a hole at the center, the filled shapes do not.
    center_pixel = masks[(np.arange(300), *np.round(scenes.centers).astype(int).T)]
    is_ring = scenes.labels == SYNTHETIC_CLASSES.index("ring")
    assert not center_pixel[is_ring].any()
    assert center_pixel[~is_ring].all()


def test_class_balance_and_color_independent_of_class() -> None:
    many = make_scenes(1000, seed=11)
    counts = np.bincount(many.labels, minlength=len(SYNTHETIC_CLASSES))
    assert counts.min() > 150
    assert counts.max() < 250
    # The color does not give the class away: per-class mean colors agree.
    means = np.stack([many.colors[many.labels == k].mean(axis=0) for k in range(5)])
    assert np.ptp(means, axis=0).max() < 0.1


def test_class_subset() -> None:
    some = make_scenes(40, seed=2, class_names=("ring", "disk"))
    assert some.class_names == ("ring", "disk")
    assert set(np.unique(some.labels)) == {0, 1}
    center_pixel = some.masks[(np.arange(40), *np.round(some.centers).astype(int).T)]
    np.testing.assert_array_equal(center_pixel, some.labels == 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": -1},
        {"count": 2.5},
        {"size": 8},
        {"class_names": ()},
        {"class_names": ("disk", "star")},
        {"radius_range": (0.2, 0.1)},
        {"radius_range": (0.0, 0.1)},
        {"radius_range": (0.1, 0.45)},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    arguments = {"count": 2, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        make_scenes(**arguments)


def test_channels_first() -> None:
    images = make_scenes(3, seed=0).images
    out = channels_first(images)
    assert out.shape == (3, 3, 64, 64)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out[1, 2], images[1, :, :, 2])
    with pytest.raises(ValueError, match="N, H, W, C"):
        channels_first(images[0])
