from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from groupcam_core import VARIANTS, ConfigError, GroupCAMConfig, make_config


def test_paper_preset_holds_the_papers_constants() -> None:
    config = make_config()
    assert config == VARIANTS["paper"] == GroupCAMConfig()
    assert (config.groups, config.percentile, config.blur_kernel_size, config.blur_sigma) == (
        32,
        70.0,
        51,
        50.0,
    )
    assert config.skip_constant_masks
    assert config.final_relu
    assert not config.score_relu
    assert config.merge_source == "masks"


def test_official_head_preset() -> None:
    config = make_config("official-head")
    assert config.percentile is None
    assert not config.skip_constant_masks
    assert config.score_relu
    assert config.merge_source == "upsampled"
    assert config.groups == 32
    assert config.blur_kernel_size == 51
    assert config.blur_sigma == 50.0


def test_overrides_and_immutability() -> None:
    config = make_config("official-head", groups=8)
    assert config.groups == 8
    assert config.score_relu
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.groups = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"groups": 0}, "groups must be a positive int"),
        ({"groups": 2.5}, "groups must be a positive int"),
        ({"groups": True}, "groups must be a positive int"),
        ({"grouping": "spectral"}, "grouping must be 'contiguous' or 'kmeans'"),
        ({"layer_fusion": "sum"}, "layer_fusion must be 'mean' or 'max'"),
        ({"percentile": 100}, "percentile"),
        ({"percentile": -1}, "percentile"),
        ({"blur_kernel_size": 50}, "odd"),
        ({"blur_sigma": 0}, "blur_sigma"),
        ({"merge_source": "maps"}, "merge_source"),
        ({"score_relu": 1}, "score_relu must be a bool"),
        ({"grups": 3}, "unknown Group-CAM setting"),
    ],
)
def test_bad_settings_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(**changes)


def test_numpy_integers_and_floats_are_accepted_and_stored_as_python_numbers() -> None:
    config = make_config(
        groups=np.int64(8), blur_kernel_size=np.int32(31), percentile=np.float32(60)
    )
    assert config.groups == 8
    assert type(config.groups) is int
    assert type(config.blur_kernel_size) is int
    assert type(config.percentile) is float


def test_unknown_variant_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="official-head"):
        make_config("papr")
    assert issubclass(ConfigError, ValueError)
