"""keras-hub models built from small configs (random weights, nothing downloaded):
the recipes of docs/recipes.md, run as written there."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest

from groupcam_core import SegmentationClass, tokens_to_grid
from groupcam_keras import GroupCAM


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(41)
    x = rng.normal(scale=0.5, size=(2, 64, 64, 3)).astype(np.float32)
    x[:, 16:32, 32:48, 0] += 2.0
    return x


def _vit_classifier() -> keras.Model:
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(64, 64, 3), patch_size=16, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    inputs = keras.Input((64, 64, 3))
    tokens = backbone(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(tokens[:, 0]))


def test_vit_backbone_blocks_are_reachable(images) -> None:
    model = _vit_classifier()
    block = "vi_t_backbone/vit_encoder/transformer_block_2"
    by_path = GroupCAM(model, f"{block}/ln_1", groups=4, reshape_transform=tokens_to_grid())
    layer = model.get_layer("vi_t_backbone").get_layer("vit_encoder")
    inner = next(sub for sub in layer._flatten_layers(include_self=False) if sub.name == "ln_1")
    assert GroupCAM(model, inner, groups=4).target_layer_name.endswith("/ln_1")
    found = by_path.explain(images)
    assert found.saliency.shape == (2, 64, 64)
    # The default with tokens_to_grid(): a layer of the last block whose gradient the head's
    # class token reaches (after the last attention only the class token does).
    by_default = GroupCAM(model, groups=4, reshape_transform=tokens_to_grid())
    chosen = by_default.explain(images)
    assert by_default.target_layer_name.startswith(block)
    assert not chosen.skipped_groups.all()  # masks: the gradient reaches the layer


def _resnet_backbone() -> keras_hub.models.ResNetBackbone:
    keras.utils.set_random_seed(1)
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(64, 64, 3),
    )


def test_resnet_classifier_default(images) -> None:
    model = keras_hub.models.ImageClassifier(backbone=_resnet_backbone(), num_classes=3)
    cam = GroupCAM(model, groups=4)
    found = cam.explain(images)
    assert cam.target_layer_name.startswith("res_net_backbone/")
    assert not found.skipped_groups.all()  # masks: the gradient reaches the layer


def test_deeplab_is_explained_before_its_classifier(images) -> None:
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=_resnet_backbone(),
        spatial_pyramid_pooling_key="P3",
        upsampling_size=2,
        dilation_rates=[6, 12],
        low_level_feature_key="P2",
        projection_filters=8,
    )
    model = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=4)
    cam = GroupCAM(model, groups=4)
    found = cam.explain(images, targets=SegmentationClass(1))
    # Not the 4-channel logits layer: the last feature map before it.
    assert cam.target_layer_name == "deep_lab_v3_backbone/backbone_output_upsampling"
    assert found.saliency.shape == (2, 64, 64)
