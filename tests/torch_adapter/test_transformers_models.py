"""Hugging Face transformers' vision models, built from small configs (random weights,
nothing downloaded): the recipes of docs/recipes.md, run as written there."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import transformers
from _support.torch_models import blob_images

from groupcam_core import SegmentationClass, TargetLayerError, tokens_to_grid
from groupcam_torch import GroupCAM

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # configs only: nothing may be downloaded


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)  # the models' random weights, whatever ran before


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.from_numpy(blob_images(2, seed=31)[0])


def _vit_config(**kwargs):
    return dict(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        **kwargs,
    )


def test_vit_last_block_and_default(images) -> None:
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**_vit_config()))
    model.eval()
    last = len(model.vit.layers) - 1
    cam = GroupCAM(
        model, f"vit.layers.{last}.layernorm_before", reshape_transform=tokens_to_grid(), groups=4
    )
    assert cam.explain(images).saliency.shape == (2, 32, 32)
    by_default = GroupCAM(model, reshape_transform=tokens_to_grid(), groups=4)
    found = by_default.explain(images)
    # Not the final layernorm (only the class token reaches the head after the last
    # attention): a layer of the last block that the head's gradient reaches.
    assert by_default.target_layer_name.startswith(f"vit.layers.{last}.")
    again = GroupCAM(
        model, by_default.target_layer_name, reshape_transform=tokens_to_grid(), groups=4
    )
    np.testing.assert_array_equal(found.saliency, again.explain(images).saliency)


def test_deit_skips_its_class_and_distillation_tokens(images) -> None:
    model = transformers.DeiTForImageClassificationWithTeacher(
        transformers.DeiTConfig(**_vit_config())
    ).eval()
    cam = GroupCAM(model, reshape_transform=tokens_to_grid(skip_tokens=2), groups=4)
    found = cam.explain(images)
    assert cam.target_layer_name.startswith("deit.layers.1.")
    assert not found.skipped_groups.all()  # masks: the gradient reaches the layer


def _swin():
    config = transformers.SwinConfig(
        image_size=32,
        patch_size=2,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[2, 2],
        window_size=4,
        num_labels=3,
    )
    return transformers.SwinForImageClassification(config).eval()


def test_swin_blocks_return_tuples_and_have_no_class_token(images) -> None:
    model = _swin()
    transform = tokens_to_grid(skip_tokens=0)
    stage = GroupCAM(model, "swin.encoder.layers.1", reshape_transform=transform, groups=4)
    block = GroupCAM(model, "swin.encoder.layers.1.blocks.0", reshape_transform=transform, groups=4)
    by_stage, by_block = stage.explain(images), block.explain(images)
    # The stage returns its last block's output (a tuple's first tensor, both): one map.
    np.testing.assert_allclose(by_stage.saliency, by_block.saliency, atol=1e-6)
    by_default = GroupCAM(model, reshape_transform=transform, groups=4)
    by_default.explain(images)
    assert "relative_position_bias" not in by_default.target_layer_name  # a parameter's shape
    assert by_default.target_layer_name == "swin.layernorm"


def _convnext_config(**kwargs):
    return transformers.ConvNextConfig(
        num_channels=3,
        num_stages=3,
        hidden_sizes=[8, 16, 24],
        depths=[1, 1, 1],
        num_labels=3,
        **kwargs,
    )


def test_convnext_default_and_its_channels_last_norms(images) -> None:
    model = transformers.ConvNextForImageClassification(_convnext_config()).eval()
    cam = GroupCAM(model, groups=4)
    found = cam.explain(images)
    assert not cam.target_layer_name.endswith(("pwconv1", "pwconv2", "layernorm", "act"))
    assert not found.skipped_groups.all()  # masks: the gradient reaches the layer
    named = GroupCAM(model, "convnext.encoder.stages.2", groups=4).explain(images)
    assert named.saliency.shape == (2, 32, 32)
    with pytest.raises(TargetLayerError, match="looks channels-last"):
        GroupCAM(model, "convnext.encoder.stages.1.layers.0.pwconv2", groups=4).explain(images)


def test_segformer_is_explained_before_its_classifier(images) -> None:
    config = transformers.SegformerConfig(
        num_channels=3,
        depths=[1, 1],
        hidden_sizes=[8, 16],
        num_encoder_blocks=2,
        sr_ratios=[2, 1],
        num_attention_heads=[1, 2],
        decoder_hidden_size=16,
        num_labels=4,
        patch_sizes=[3, 3],
        strides=[2, 2],
    )
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    cam = GroupCAM(model, groups=4)
    found = cam.explain(images, targets=SegmentationClass(1))
    assert cam.target_layer_name.startswith("decode_head.")
    assert cam.target_layer_name != "decode_head.classifier"
    assert not found.skipped_groups.all()  # masks: the gradient reaches the layer


def test_upernet_backbone_stages_and_default(images) -> None:
    config = transformers.UperNetConfig(
        backbone_config=_convnext_config(out_features=["stage1", "stage2", "stage3"]),
        hidden_size=16,
        auxiliary_in_channels=24,
        num_labels=3,
    )
    model = transformers.UperNetForSemanticSegmentation(config).eval()
    # transformers records each backbone stage's output in its own forward hook; groupcam's
    # hook runs first, so the recorded tensor is the one explained.
    stage = GroupCAM(model, "backbone.encoder.stages.1", groups=4)
    found = stage.explain(images, targets=SegmentationClass(1))
    assert found.saliency.shape == (2, 32, 32)
    assert not found.skipped_groups.all()  # masks: the gradient reaches the layer
    by_default = GroupCAM(model, groups=4)
    by_default.explain(images, targets=SegmentationClass(1))
    assert not by_default.target_layer_name.startswith("auxiliary_head")  # not in the output
    assert by_default.target_layer_name.startswith("decode_head.")
