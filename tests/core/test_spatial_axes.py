"""1-D signals and 3-D volumes: the core against the N-D loop oracle, on fake numpy models.

The fake model pools every spatial axis, so the same code is a 1-D CNN on
``(B, C, L)`` signals and a 3-D CNN on ``(B, C, D, H, W)`` volumes; its gradient
is known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend
from _support.oracle import gaussian_blur_nd, oracle_groupcam, upsample_linear_nd

from groupcam_core import (
    ConfigError,
    InputError,
    TargetLayerError,
    explain_group_cam,
    make_config,
    ops,
)
from groupcam_core.methods import grad_cam, rise, score_cam


def _inputs(spatial: tuple[int, ...], batch: int = 2, seed: int = 0) -> np.ndarray:
    """Channels-first inputs with a bright blob somewhere, and noise."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(side) / side for side in spatial], indexing="ij")
    rows = []
    for _ in range(batch):
        centre = rng.uniform(0.25, 0.75, size=len(spatial))
        blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) / 0.03)
        noise = rng.normal(scale=0.3, size=(3, *spatial))
        rows.append(blob[None] * rng.normal(size=(3, *(1,) * len(spatial))) * 2 + noise)
    return np.stack(rows)


def _oracle(backend: FakeNumpyBackend, x_cf: np.ndarray, groups: int, **options):
    activations = backend.features(x_cf)
    chosen = backend.head(activations).argmax(axis=1)
    gradients = backend.logit_gradient(activations, chosen)
    return oracle_groupcam(
        activations, gradients, x_cf, backend.predict_one, chosen, groups=groups, **options
    )


def _channels_last(x_cf: np.ndarray) -> np.ndarray:
    return x_cf.transpose(0, *range(2, x_cf.ndim), 1)


CASES = [
    pytest.param((32,), 4, {}, id="1-D signal, paper constants"),
    pytest.param((8, 8, 8), 2, {}, id="3-D volume, paper constants"),
    pytest.param(
        (4, 12, 8),
        2,
        {"blur_kernel_size": (1, 7, 5), "blur_sigma": (1.0, 3.0, 2.0)},
        id="3-D, per-axis blur, none along the first axis",
    ),
]


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize(("spatial", "pool", "blur"), CASES)
def test_group_cam_in_1d_and_3d_matches_the_loop_oracle(spatial, pool, blur, layout) -> None:
    backend = FakeNumpyBackend(channels=10, pool=pool, layout=layout)
    x_cf = _inputs(spatial)
    x = x_cf if layout == "channels_first" else _channels_last(x_cf)
    config = make_config(groups=4, **blur)
    result = explain_group_cam(backend, x, config=config)
    oracle = _oracle(
        backend,
        x_cf,
        groups=4,
        blur_size=blur.get("blur_kernel_size", 51),
        blur_sigma=blur.get("blur_sigma", 50.0),
    )
    assert result.saliency.shape == (2, *spatial)
    assert not oracle.degenerate.any()
    np.testing.assert_allclose(result.saliency, oracle.saliency, atol=1e-5)
    np.testing.assert_allclose(result.group_scores, oracle.group_scores, atol=1e-6)
    np.testing.assert_array_equal(result.skipped_groups, oracle.skipped)


def test_an_axis_shorter_than_the_kernel_reflects_again_at_each_end() -> None:
    # Length 5 against a kernel of 51: the reflection folds many times.
    volume = np.random.default_rng(0).normal(size=(1, 2, 5, 9, 3))
    ours = ops.blur_images(volume, 51, 50.0, np, spatial_axes=3)
    np.testing.assert_allclose(ours[0], gaussian_blur_nd(volume[0], 51, 50.0), atol=1e-12)


def test_a_kernel_of_one_leaves_its_axis_unblurred() -> None:
    video = np.random.default_rng(1).normal(size=(1, 1, 6, 10, 10))
    blurred = ops.blur_images(video, (1, 9, 9), (1.0, 4.0, 4.0), np, spatial_axes=3)
    per_frame = ops.blur_images(video[0, 0], 9, 4.0, np, spatial_axes=2)
    np.testing.assert_allclose(blurred[0, 0], per_frame, atol=1e-12)


@pytest.mark.parametrize(("small", "large"), [((3,), (17,)), ((2, 3, 4), (5, 7, 9))])
def test_linear_resize_matches_the_position_loop(small, large) -> None:
    maps = np.random.default_rng(2).normal(size=(2, *small))
    ours = ops.resize_linear(maps, large, np)
    for row in range(2):
        np.testing.assert_allclose(ours[row], upsample_linear_nd(maps[row], large), atol=1e-12)


def test_two_axes_keep_the_2d_products_bit_for_bit() -> None:
    maps = np.random.default_rng(4).normal(size=(3, 5, 7))
    rows, cols = ops.bilinear_matrix(20, 5), ops.bilinear_matrix(28, 7)
    np.testing.assert_array_equal(ops.resize_linear(maps, (20, 28), np), rows @ maps @ cols.T)


@pytest.mark.parametrize("spatial", [(32,), (8, 8, 8)], ids=["1-D", "3-D"])
def test_grad_cam_score_cam_and_rise_give_maps_of_the_input_rank(spatial) -> None:
    pool = 4 if len(spatial) == 1 else 2
    backend = FakeNumpyBackend(channels=6, pool=pool)
    x = _inputs(spatial)
    activations = backend.features(x)
    chosen = backend.head(activations).argmax(axis=1)
    gradients = backend.logit_gradient(activations, chosen)
    expected = np.maximum(
        (gradients.mean(axis=tuple(range(2, x.ndim)), keepdims=True) * activations).sum(axis=1), 0
    )
    expected = np.stack([upsample_linear_nd(row, spatial) for row in expected])
    low = expected.reshape(2, -1).min(1).reshape(-1, *(1,) * len(spatial))
    high = expected.reshape(2, -1).max(1).reshape(-1, *(1,) * len(spatial))
    np.testing.assert_allclose(grad_cam(backend, x), (expected - low) / (high - low), atol=1e-5)
    for maps in (score_cam(backend, x), rise(backend, x, masks=40)):
        assert maps.shape == (2, *spatial)
        assert np.isfinite(maps).all()
        assert maps.max() == pytest.approx(1.0)


def test_a_per_axis_blur_with_the_wrong_number_of_axes_is_refused() -> None:
    backend = FakeNumpyBackend(pool=4)
    with pytest.raises(
        ConfigError, match="has 2 values, one per spatial axis, but the input has 3"
    ):
        explain_group_cam(
            backend, _inputs((16, 16, 16)), config=make_config(groups=4, blur_kernel_size=(1, 5))
        )
    with pytest.raises(ConfigError, match="blur_kernel_size needs 1 to 3 values"):
        make_config(blur_kernel_size=(1, 3, 5, 7))
    with pytest.raises(ConfigError, match="each value of blur_kernel_size must be a positive odd"):
        make_config(blur_kernel_size=(1, 4))


def test_a_batch_with_four_spatial_axes_names_the_forms_it_takes() -> None:
    with pytest.raises(InputError, match=r"\(B, C, L\), \(B, C, H, W\), \(B, C, D, H, W\)"):
        explain_group_cam(FakeNumpyBackend(), np.zeros((1, 3, 4, 4, 4, 4)))


def test_pointing_games_in_3d_find_the_voxel_and_its_distance() -> None:
    from groupcam_core.metrics import energy_pointing_game, pointing_game

    maps = np.zeros((2, 6, 7, 8))
    maps[0, 1, 2, 3] = 1.0  # inside the box
    maps[1, 5, 6, 7] = 1.0  # outside: nearest box voxel is (3, 4, 5)
    boxes = np.zeros((2, 6, 7, 8), dtype=bool)
    boxes[:, 1:4, 2:5, 3:6] = True
    game = pointing_game(maps, boxes, tolerance=0)
    np.testing.assert_array_equal(game.points, [[1, 2, 3], [5, 6, 7]])
    np.testing.assert_allclose(game.distances, [0.0, np.sqrt(4 + 4 + 4)])
    np.testing.assert_array_equal(game.hits, [True, False])
    energy = energy_pointing_game(maps + boxes, boxes)
    np.testing.assert_allclose(energy.proportions, [1.0, 27 / 28])


@pytest.mark.parametrize("spatial", [(12,), (4, 4, 4)], ids=["1-D", "3-D"])
def test_deletion_removes_positions_in_saliency_order(spatial) -> None:
    from groupcam_core.metrics import deletion

    pool = 4 if len(spatial) == 1 else 2
    backend = FakeNumpyBackend(channels=6, pool=pool)
    x = _inputs(spatial, batch=1)
    positions = int(np.prod(spatial))
    saliency = np.arange(positions, dtype=np.float64)[::-1].reshape(1, *spatial)
    curves = deletion(backend, x, saliency, step=positions // 4)
    target = curves.targets[0]
    expected = []
    for taken in range(0, positions + 1, positions // 4):
        image = x[0].reshape(3, -1).copy()
        image[:, :taken] = 0.0  # the most salient positions come first in index order
        probabilities = np.exp(backend.predict_one(image.reshape(x[0].shape)))
        expected.append(probabilities[target] / probabilities.sum())
    np.testing.assert_allclose(curves.curves[0], expected, atol=1e-12)


class _VolumeFeaturesForSignals(FakeNumpyBackend):
    """A 'layer' whose output has a depth axis although the input is a batch of signals."""

    def gradient_pass(self, x, resolve_targets):
        result = super().gradient_pass(x, resolve_targets)
        return type(result)(
            result.activations[:, :, None, :, None],
            result.gradients[:, :, None, :, None],
            result.outputs,
            result.targets,
        )


def test_a_feature_map_of_another_rank_names_the_rank_expected() -> None:
    with pytest.raises(
        TargetLayerError,
        match=r"input is a batch \(B, C, L\) with 1 spatial axis, so Group-CAM needs a 3-D "
        r"feature map \(B, channels, L\)",
    ):
        explain_group_cam(_VolumeFeaturesForSignals(pool=4), _inputs((32,)))
