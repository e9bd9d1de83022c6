"""The default target layer on the models users bring: a ViT with a class token, a
segmentation model, a model with an auxiliary head; failures that name the choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _support.torch_models import blob_images
from torch import nn

from groupcam_core import ConfigError, SegmentationClass, tokens_to_grid
from groupcam_torch import GroupCAM


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, 2, batch_first=True)  # returns a tuple
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class _TinyViT(nn.Module):
    """Patches of 8 on 32x32 images, a class token, one block, a head on the class token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patches = nn.Conv2d(3, 16, 8, stride=8)
        self.class_token = nn.Parameter(torch.randn(1, 1, 16))
        self.block = _Block(16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(len(x), -1, -1), tokens], dim=1)
        return self.head(self.norm(self.block(tokens))[:, 0])


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.from_numpy(blob_images(2, seed=21)[0])


def test_a_vit_with_tokens_to_grid_gets_the_input_of_its_last_attention(images) -> None:
    model = _TinyViT().eval()
    cam = GroupCAM(model, groups=4, reshape_transform=tokens_to_grid())
    found = cam.explain(images)
    # After the last attention only the class token reaches the head: the gradients at
    # the patch tokens of later layers are zero, and the default steps back to the last
    # layer they are not, the block's first norm (the layer pytorch-grad-cam's docs name).
    assert cam.target_layer_name == "block.norm1"
    assert not found.degenerate.any()
    named = GroupCAM(model, "block.norm1", groups=4, reshape_transform=tokens_to_grid())
    np.testing.assert_array_equal(found.saliency, named.explain(images).saliency)
    # Named explicitly, the final norm is explained as asked: all-zero maps, flagged.
    final = GroupCAM(model, "norm", groups=4, reshape_transform=tokens_to_grid())
    assert final.explain(images).degenerate.all()


class _Segmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.classify = nn.Conv2d(16, 5, 1)  # the classifier: one map per class

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.classify(self.down(self.features(x)))
        return {"logits": nn.functional.interpolate(scores, size=x.shape[2:], mode="bilinear")}


def test_a_segmentation_model_is_explained_before_its_classifier(images) -> None:
    cam = GroupCAM(_Segmenter().eval(), groups=4)
    found = cam.explain(images, targets=SegmentationClass(1))
    assert cam.target_layer_name == "down"  # not 'classify', whose 5 channels are classes
    assert not found.degenerate.any()


class _WithAuxiliaryHead(nn.Module):
    """An auxiliary head that runs (as in training) but that the output does not use."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.auxiliary = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        self.auxiliary(features)
        return self.head(features.mean(dim=(2, 3)))


def test_a_default_layer_the_output_does_not_use_steps_back(images) -> None:
    model = _WithAuxiliaryHead().eval()
    cam = GroupCAM(model, groups=4)
    found = cam.explain(images)
    assert cam.target_layer_name == "features"
    np.testing.assert_array_equal(
        found.saliency, GroupCAM(model, "features", groups=4).explain(images).saliency
    )
    cam.explain(images)  # the choice is kept
    assert cam.target_layer_name == "features"


def test_a_failure_on_the_default_layer_names_the_choice_and_the_candidates(images) -> None:
    with pytest.raises(ConfigError, match="groups=32 is more than the 16 channels") as raised:
        GroupCAM(_Segmenter().eval(), groups=32).explain(images, targets=SegmentationClass(1))
    notes = "\n".join(raised.value.__notes__)
    assert "the target layer 'down' was chosen by default" in notes
    assert "'features' (2, 8, 32, 32)" in notes  # a candidate, with its shape
    assert "Pass target_layer=" in notes
