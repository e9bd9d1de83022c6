"""Target functions, transformer tokens and several target layers with groupcam_torch."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from _support.torch_models import blob_images
from torch import nn

from groupcam_core import (
    ClassLogit,
    ClassProbability,
    RegressionOutput,
    SegmentationClass,
    TargetLayerError,
    tokens_to_grid,
)
from groupcam_torch import GroupCAM


@pytest.fixture
def images() -> torch.Tensor:
    return torch.from_numpy(blob_images(3, seed=11)[0])


# -- target functions ------------------------------------------------------------------


def test_an_int_target_and_class_functions(blob_net, images) -> None:
    cam = GroupCAM(blob_net, "6", groups=8)
    as_int = cam.explain(images, targets=2)
    logit = cam.explain(images, targets=ClassLogit(2))
    probability = cam.explain(images, targets=ClassProbability(2))
    lambda_logit = cam.explain(images, targets=lambda out: out[:, 2])
    np.testing.assert_array_equal(logit.saliency, lambda_logit.saliency)
    # An int target differentiates the logit and scores probabilities; ClassProbability
    # differentiates the probability too: same masks' scores, other weights in step 2.
    np.testing.assert_allclose(probability.baseline_scores, as_int.baseline_scores, rtol=1e-5)
    with torch.no_grad():
        logits = blob_net(images)
    np.testing.assert_allclose(logit.target_scores, logits[:, 2].numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        probability.target_scores, torch.softmax(logits, 1)[:, 2].numpy(), rtol=1e-5
    )
    assert logit.objective == "ClassLogit"
    assert (logit.targets == -1).all()
    assert not np.allclose(logit.saliency, as_int.saliency, atol=1e-3)  # logits, not probabilities


class _TinySegmenter(nn.Module):
    """Per-pixel scores of 3 classes: class 1 where the blob's red channel is bright."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.classify = nn.Conv2d(16, 3, 1)
        with torch.no_grad():
            self.classify.weight[1] += 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.classify(self.down(self.features(x)))
        return nn.functional.interpolate(scores, size=x.shape[2:], mode="bilinear")


def test_a_segmentation_model_with_a_target_function(images) -> None:
    model = _TinySegmenter().eval()
    cam = GroupCAM(model, "down", groups=4)
    by_lambda = cam.explain(images, targets=lambda out: out[:, 1].sum(dim=(1, 2)))
    by_class = cam.explain(images, targets=SegmentationClass(1))
    np.testing.assert_allclose(by_lambda.saliency, by_class.saliency, atol=1e-6)
    assert by_class.saliency.shape == (3, 32, 32)
    assert not by_class.degenerate.any()
    mask = np.zeros((32, 32), dtype=bool)
    mask[:16] = True
    masked = cam.explain(images, targets=SegmentationClass(1, mask=mask))
    with torch.no_grad():
        expected = model(images)[:, 1, :16].sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(masked.target_scores, expected, rtol=1e-4)
    # A class target on a segmentation output is refused with a clear message.
    with pytest.raises(Exception, match=r"\(3, 3, 32, 32\)"):
        cam.explain(images)


def test_a_regression_output(blob_net, images) -> None:
    model = nn.Sequential(*copy.deepcopy(blob_net)[:-1], nn.Linear(32, 1)).eval()
    exp = GroupCAM(model, "6", groups=8).explain(images, targets=RegressionOutput(0))
    with torch.no_grad():
        np.testing.assert_allclose(exp.target_scores, model(images)[:, 0].numpy(), rtol=1e-5)
    assert exp.saliency.shape == (3, 32, 32)


# -- transformers: tokens_to_grid --------------------------------------------------------


class _Tokens(nn.Module):
    """The blob net with its c2 feature map passed through a token layer and back."""

    def __init__(self, blob_net: nn.Module, class_token: bool) -> None:
        super().__init__()
        self.head = copy.deepcopy(blob_net[:5])  # up to the ReLU after bn3: (B, 32, 16, 16)
        self.tokens = nn.Identity()
        self.tail = copy.deepcopy(blob_net[5:])
        self.class_token = class_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.head(x)
        batch, channels, height, width = grid.shape
        tokens = grid.flatten(2).transpose(1, 2)  # (B, 256, 32)
        if self.class_token:
            tokens = torch.cat([torch.zeros(batch, 1, channels), tokens], dim=1)
        tokens = self.tokens(tokens)
        patches = tokens[:, 1:] if self.class_token else tokens
        return self.tail(patches.transpose(1, 2).reshape(batch, channels, height, width))


@pytest.mark.parametrize("class_token", [False, True])
def test_tokens_to_grid_explains_the_same_map_as_the_grid_itself(
    blob_net, images, class_token
) -> None:
    model = _Tokens(blob_net, class_token).eval()
    on_grid = GroupCAM(model, "head.4", groups=8).explain(images)
    on_tokens = GroupCAM(
        model,
        "tokens",
        groups=8,
        reshape_transform=tokens_to_grid(skip_tokens=int(class_token)),
    ).explain(images)
    np.testing.assert_allclose(on_tokens.saliency, on_grid.saliency, atol=1e-6)
    np.testing.assert_allclose(on_tokens.group_scores, on_grid.group_scores, atol=1e-7)


class _TinyViT(nn.Module):
    """Patch embedding, a class token, two pre-norm encoder blocks, a head on the class token.

    As for timm's ViT, the last block's ``norm1`` is the layer to explain: the
    last block's output patch tokens no longer reach the class token.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.embed = nn.Conv2d(3, 32, 4, stride=4)  # 32 x 32 -> 8 x 8 patches
        self.cls = nn.Parameter(torch.randn(1, 1, 32) * 0.1)
        self.position = nn.Parameter(torch.randn(1, 65, 32) * 0.1)
        layer = nn.TransformerEncoderLayer(
            32, 4, 64, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), patches], dim=1) + self.position
        return self.head(self.norm(self.encoder(tokens))[:, 0])


def test_a_small_vit(images) -> None:
    model = _TinyViT().train()  # dropout on: the explanation must run in eval mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cam = GroupCAM(model, "encoder.layers.1.norm1", groups=8, reshape_transform=tokens_to_grid())
    first = cam.explain(images)
    second = cam.explain(images)
    np.testing.assert_array_equal(first.saliency, second.saliency)
    assert first.saliency.shape == (3, 32, 32)
    assert np.isfinite(first.saliency).all()
    assert not first.degenerate.all()
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(TargetLayerError, match=r"reshape_transform=groupcam_core\.tokens_to_grid"):
        GroupCAM(model, "encoder.layers.1.norm1", groups=8).explain(images)
    with pytest.raises(TargetLayerError, match="65 tokens less 0 skipped leave 65 patches"):
        GroupCAM(
            model, "encoder.layers.1", groups=8, reshape_transform=tokens_to_grid(skip_tokens=0)
        ).explain(images)


# -- several target layers ---------------------------------------------------------------


def test_a_batch_larger_than_batch_size_gets_gradient_passes_of_batch_size(blob_net) -> None:
    """Memory flat in B: the gradient pass also runs batch_size images at a time."""
    five = torch.from_numpy(blob_images(5, seed=12)[0])
    seen: list[int] = []
    handle = blob_net.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        for targets in ([0, 1, 2, 3, 1], ClassLogit(1), lambda out: out[:, 2] - out[:, 0]):
            seen.clear()
            chunked = GroupCAM(blob_net, ["4", "6"], groups=8, batch_size=2).explain(five, targets)
            assert seen[:3] == [2, 2, 1]  # the gradient passes come first, 2 + 2 + 1 images
            whole = GroupCAM(blob_net, ["4", "6"], groups=8, batch_size=64).explain(five, targets)
            np.testing.assert_array_equal(chunked.targets, whole.targets)
            np.testing.assert_allclose(chunked.target_scores, whole.target_scores, atol=1e-5)
            np.testing.assert_allclose(chunked.saliency, whole.saliency, atol=1e-5)
    finally:
        handle.remove()


class _ChannelsLastNorm(nn.Module):
    """ConvNeXt's pattern: to (B, H, W, C), a LayerNorm over channels, back to (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_a_channels_last_layer_in_a_channels_first_model_is_not_misread() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 24, 4, stride=4),
        _ChannelsLastNorm(24),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 3),
    ).eval()
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(
        TargetLayerError,
        match=r"'1\.norm' outputs shape \(2, 8, 8, 24\), which looks channels-last .*"
        r"24 channels of 8x8 for a 32x32 image.* 8 channels of 8x24",
    ):
        GroupCAM(model, "1.norm", groups=4)(images)
    moved = GroupCAM(model, "1.norm", groups=4, reshape_transform=lambda t: t.permute(0, 3, 1, 2))
    after = GroupCAM(model, "1", groups=4)  # the block's output: the same tensor, channels-first
    np.testing.assert_allclose(moved(images), after(images), atol=1e-6)


class _TupleBlock(nn.Module):
    """Returns its features with extras, as transformers' blocks return (hidden, attentions)."""

    def __init__(self, container: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.abs_()  # features that light up on the bright blob
        self.container = container

    def forward(self, x: torch.Tensor) -> Any:
        features = torch.relu(self.conv(x))
        extras = features.mean()
        if self.container == "tuple":
            return features, extras
        if self.container == "list":
            return [features, extras]
        return _Pair(features, extras)


class _Pair(NamedTuple):
    features: torch.Tensor
    extras: torch.Tensor


class _TupleNet(nn.Module):
    def __init__(self, container: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.block = _TupleBlock(container)
        self.head = nn.Linear(8, 3)
        with torch.no_grad():  # class 0: how strongly the features light up
            self.head.weight.zero_()
            self.head.weight[0] = 1.0
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, extras = self.block(x)  # a namedtuple unpacks the same
        return self.head(features.mean(dim=(2, 3))) + extras


@pytest.mark.parametrize("container", ["tuple", "list", "namedtuple"])
def test_a_layer_returning_a_tuple_is_explained_at_its_first_tensor(container) -> None:
    model = _TupleNet(container).eval()
    images = torch.from_numpy(blob_images(2, seed=5)[0])
    by_block = GroupCAM(model, "block", groups=4).explain(images)
    assert by_block.saliency.std(axis=(1, 2)).min() > 0.01  # a map, not a constant
    # The oracle: the same layers with the block returning its first tensor alone.
    plain = nn.Sequential(copy.deepcopy(model.block.conv), nn.ReLU())
    expected = GroupCAM(_Wrapped(plain, model.head), "body", groups=4).explain(images)
    np.testing.assert_allclose(by_block.saliency, expected.saliency, atol=1e-6)
    by_default = GroupCAM(model, groups=4)
    np.testing.assert_array_equal(by_default.explain(images).saliency, by_block.saliency)
    assert by_default.target_layer_name == "block"  # the probe reads the tuple's first tensor


class _Wrapped(nn.Module):
    """``head(mean of body(x))``, plus the features' mean when ``extras`` (as _TupleNet adds)."""

    def __init__(self, body: nn.Module, head: nn.Module, extras: bool = True) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.extras = extras

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        scores = self.head(features.mean(dim=(2, 3)))
        return scores + features.mean() if self.extras else scores


class _RecordingBackbone(nn.Module):
    """Records each stage's output in its own forward hook and returns the recorded
    tensors, as transformers 5's backbones do (UperNet's ConvNeXt, say)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)
        self.recorded: dict[str, torch.Tensor] = {}
        for name in ("stage1", "stage2"):
            getattr(self, name).register_forward_hook(self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self.recorded[name] = output

        return record

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.stage2(self.stage1(x))
        return self.head(self.recorded["stage2"].mean(dim=(2, 3)))


def test_a_model_that_records_a_layers_output_in_its_own_hook_sees_ours() -> None:
    model = _RecordingBackbone().eval()
    images = torch.from_numpy(blob_images(2, seed=5)[0])
    found = GroupCAM(model, "stage2", groups=4).explain(images)
    plain = nn.Sequential(model.stage1, model.stage2)
    expected = GroupCAM(_Wrapped(plain, model.head, extras=False), "body", groups=4)
    expected = expected.explain(images)
    np.testing.assert_allclose(found.saliency, expected.saliency, atol=1e-6)
    assert found.saliency.std(axis=(1, 2)).min() > 0.01
    assert all(len(m._forward_hooks) == 1 for m in (model.stage1, model.stage2))  # its own only
