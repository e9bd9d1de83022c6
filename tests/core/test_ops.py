"""The numerical building blocks against plain numpy references."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest
from _support.oracle import gaussian_blur_image, upsample_bilinear

from groupcam_core import ops


@pytest.mark.parametrize("percentile", [0.0, 30.0, 50.0, 70.0, 99.0])
@pytest.mark.parametrize("count", [1, 2, 7, 49, 196])
def test_percentile_equals_numpy(percentile: float, count: int) -> None:
    rng = np.random.default_rng(count)
    values = rng.normal(size=(3, 4, count))
    values[0, 0] = 0.0  # ties
    values[1, 1, : count // 2] = 0.5
    got = ops.percentile_last_axis(values, percentile, xp)
    want = np.percentile(values, percentile, axis=-1, keepdims=True)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (30, 41), (26, 26), (60, 33)])
def test_blur_matches_direct_convolution(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, height, width))
    got = ops.blur_images(image, 51, 50.0, xp)
    np.testing.assert_allclose(got, gaussian_blur_image(image), atol=1e-12)


def test_blur_reflects_beyond_one_width() -> None:
    # Smaller than the kernel radius: torch's reflect pad refuses this size;
    # the mirror keeps folding. A constant image stays constant, rows sum to 1.
    matrix = ops.gaussian_blur_matrix(7, 51, 50.0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(
        ops.reflect_index(np.array([-1, -2, 7, 8, 13, 14]), 7), [1, 2, 5, 4, 1, 2]
    )
    np.testing.assert_allclose(ops.gaussian_blur_matrix(1, 51, 50.0), [[1.0]], atol=1e-15)


def test_gaussian_kernel_is_normalized_and_symmetric() -> None:
    kernel = ops.gaussian_kernel(51, 50.0)
    assert kernel.shape == (51,)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=0)
    assert kernel.argmax() == 25


@pytest.mark.parametrize(
    ("small", "large"),
    [((7, 7), (224, 224)), ((3, 5), (17, 23)), ((4, 4), (4, 4)), ((8, 6), (5, 3))],
)
def test_bilinear_matches_pixel_loop(small: tuple[int, int], large: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(2, *small))
    got = ops.resize_bilinear(maps, *large, xp)
    for i in range(2):
        np.testing.assert_allclose(got[i], upsample_bilinear(maps[i], *large), atol=1e-12)


@pytest.mark.parametrize(("groups", "channels"), [(4, 10), (32, 1280), (3, 3), (1, 5), (7, 50)])
def test_group_matrix_follows_array_split(groups: int, channels: int) -> None:
    matrix = ops.group_matrix(groups, channels)
    assert matrix.shape == (groups, channels)
    np.testing.assert_array_equal(matrix.sum(axis=0), 1.0)
    for row, members in zip(matrix, np.array_split(np.arange(channels), groups), strict=False):
        np.testing.assert_array_equal(np.flatnonzero(row), members)


def test_min_max_normalize_flags_constant_and_nan_maps() -> None:
    with_inf = np.zeros((2, 3))
    with_inf[0, 0] = np.inf
    maps = np.stack(
        [np.arange(6.0).reshape(2, 3), np.full((2, 3), 4.0), np.full((2, 3), np.nan), with_inf]
    )
    normalized, constant = ops.min_max_normalize(maps, xp)
    np.testing.assert_array_equal(constant, [False, True, True, True])
    assert np.isfinite(normalized).all()
    np.testing.assert_allclose(normalized[0], np.arange(6.0).reshape(2, 3) / 5)
    assert (normalized[1:] == 0).all()
