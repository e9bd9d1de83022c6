"""Clear errors for bad input, targets and model outputs, through a fake backend."""

from __future__ import annotations

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend

from groupcam_core import (
    ConfigError,
    InputError,
    ModelOutputError,
    TargetError,
    TargetLayerError,
    explain_group_cam,
    make_config,
)

CONFIG = make_config(groups=4)


def _x(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(batch, 3, 16, 16))


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.zeros((3, 16)), InputError, r"1 to 3 spatial axes.*\(add a batch axis"),
        (np.zeros((1, 3, 4, 4, 4, 4)), InputError, r"1 to 3 spatial axes, \(B, C, L\)"),
        (np.zeros((0, 3, 16, 16)), InputError, "empty"),
        (np.zeros((2, 3, 16, 16), dtype=np.int32), InputError, "floating-point"),
    ],
)
def test_bad_input_shapes(x, error, message) -> None:
    with pytest.raises(error, match=message):
        explain_group_cam(FakeNumpyBackend(), x, config=CONFIG)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(bad: float) -> None:
    x = _x()
    x[1, 2, 3, 4] = bad
    with pytest.raises(InputError, match="NaN or inf"):
        explain_group_cam(FakeNumpyBackend(), x, config=CONFIG)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (5, "out of range .* 5 classes"),
        (-1, "out of range"),
        ([0, 1, 2], "3 targets for a batch of 2"),
        ([0], "1 targets for a batch of 2"),
        ([0, 1.5], "must be ints"),
        (True, "must be an int"),
        ("cat", "must be an int"),
        (object(), "must be None, an int or a sequence"),
    ],
)
def test_bad_targets(targets, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        explain_group_cam(FakeNumpyBackend(classes=5), _x(), targets=targets, config=CONFIG)


def test_numpy_integer_targets_are_accepted() -> None:
    exp = explain_group_cam(
        FakeNumpyBackend(classes=5), _x(), targets=np.array([3, 1]), config=CONFIG
    )
    np.testing.assert_array_equal(exp.targets, [3, 1])
    exp = explain_group_cam(FakeNumpyBackend(classes=5), _x(), targets=np.int64(2), config=CONFIG)
    np.testing.assert_array_equal(exp.targets, [2, 2])


def test_groups_above_channels() -> None:
    with pytest.raises(ConfigError, match="groups=11 is more than the 10 channels"):
        explain_group_cam(FakeNumpyBackend(channels=10), _x(), config=make_config(groups=11))


def test_bad_batch_size() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        explain_group_cam(FakeNumpyBackend(), _x(), config=CONFIG, batch_size=0)


class _WrongOutput(FakeNumpyBackend):
    def head(self, activations):
        return super().head(activations)[:, :, None]


class _NanOutput(FakeNumpyBackend):
    def head(self, activations):
        return super().head(activations) * np.nan


class _PooledFeatures(FakeNumpyBackend):
    def features(self, x_cf):
        return super().features(x_cf).mean(axis=(2, 3), keepdims=True)


def test_model_output_that_is_not_batch_by_classes() -> None:
    with pytest.raises(ModelOutputError, match=r"shape \(2, 5, 1\) .* \(2, classes\)"):
        explain_group_cam(_WrongOutput(classes=5), _x(), config=CONFIG)


def test_non_finite_model_output() -> None:
    with pytest.raises(ModelOutputError, match="NaN or inf"):
        explain_group_cam(_NanOutput(), _x(), config=CONFIG)


def test_layer_without_spatial_extent() -> None:
    with pytest.raises(TargetLayerError, match="1x1 map"):
        explain_group_cam(_PooledFeatures(), _x(), config=CONFIG)


@pytest.mark.parametrize(
    ("layout", "shape", "refused"),
    [
        ("channels_first", (2, 7, 7, 768), True),  # ConvNeXt's (B, H, W, C) read as (B, C, H, W)
        ("channels_first", (2, 768, 7, 7), False),
        ("channels_first", (2, 512, 2, 25), False),  # a text-line model's wide map: its own shape
        ("channels_first", (2, 8, 8, 8), False),  # square either way: nothing to tell
        ("channels_last", (2, 768, 7, 7), True),  # (B, C, H, W) read as (B, H, W, C)
        ("channels_last", (2, 7, 7, 768), False),
    ],
)
def test_a_feature_map_in_the_other_layout_is_refused(layout, shape, refused) -> None:
    from groupcam_core.features import _check_feature_layout

    height, width = (32, 800) if shape == (2, 512, 2, 25) else (224, 224)
    as_read = shape if layout == "channels_first" else (shape[0], shape[3], shape[1], shape[2])
    if refused:
        with pytest.raises(TargetLayerError, match=rf"outputs shape \({shape[0]}, "):
            _check_feature_layout("layer 'x'", as_read, layout, height, width)
    else:
        _check_feature_layout("layer 'x'", as_read, layout, height, width)
