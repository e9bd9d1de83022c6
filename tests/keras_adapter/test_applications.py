"""The default target of eight keras.applications networks (weights=None, 64x64 input).

What Grad-CAM users pick for each: VGG16's ``block5_conv3`` (not the pooling
after it), ResNet50's ``conv5_block3_out``, the last activations of the
MobileNets, EfficientNet and DenseNet, Xception's ``block14_sepconv2_act``, and
for ConvNeXt the final residual sum, a non-layer ``Add`` operation of the graph.
Only the search runs (one probe of the model, abstract on JAX); on JAX the
weights are drawn with numpy, which makes building the networks fast.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest
from _support.keras_models import fast_initializers

from groupcam_keras import GroupCAM
from groupcam_keras.layers import all_layers

pytestmark = pytest.mark.slow

applications = keras.applications


def _fed_by(model: keras.Model, name: str) -> keras.Operation:
    """The operation that receives the output of layer ``name``."""
    return model.get_layer(name)._outbound_nodes[0].operation


def _feeding(model: keras.Model, name: str) -> keras.Operation:
    """The operation whose output layer ``name`` receives."""
    return model.get_layer(name)._inbound_nodes[0].input_tensors[0]._keras_history.operation


ARCHITECTURES: dict[str, tuple[Callable[..., keras.Model], int, Callable[[keras.Model], str]]] = {
    "VGG16": (applications.VGG16, 64, lambda model: "block5_conv3"),
    "ResNet50": (applications.ResNet50, 64, lambda model: "conv5_block3_out"),
    "MobileNetV2": (applications.MobileNetV2, 64, lambda model: "out_relu"),
    # An Activation layer named by a global counter ("activation_17" in a fresh session).
    "MobileNetV3Small": (
        applications.MobileNetV3Small,
        64,
        lambda model: _fed_by(model, "conv_1_bn").name,
    ),
    "EfficientNetB0": (applications.EfficientNetB0, 64, lambda model: "top_activation"),
    # The final residual sum: an Add operation, not a layer ("add_17" in a fresh session).
    "ConvNeXtTiny": (
        applications.ConvNeXtTiny,
        64,
        lambda model: _feeding(model, "convnext_tiny_head_gap").name,
    ),
    "DenseNet121": (applications.DenseNet121, 64, lambda model: "relu"),
    "Xception": (applications.Xception, 71, lambda model: "block14_sepconv2_act"),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_default_target_of_keras_applications(name: str) -> None:
    build, side, expected = ARCHITECTURES[name]
    with fast_initializers():
        model = build(weights=None, include_top=True, input_shape=(side, side, 3))
    image = np.random.default_rng(0).normal(size=(1, side, side, 3)).astype(np.float32)
    cam = GroupCAM(model, groups=4)
    with cam.using_backend(image):
        pass  # finds the layer: one probe of the model, no explanation
    assert cam.target_layer_name == expected(model)
    assert all("call" not in operation.__dict__ for _, operation in all_layers(model))
    if name == "ConvNeXtTiny":
        chosen = dict(all_layers(model))[cam.target_layer_name]
        assert not isinstance(chosen, keras.Layer)
        assert GroupCAM(model, "convnext_tiny_head_gap:input").target_layer_name == (
            "convnext_tiny_head_gap:input"
        )
    if name == "MobileNetV3Small":
        assert isinstance(model.get_layer(cam.target_layer_name), keras.layers.Activation)
