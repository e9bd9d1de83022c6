"""What PyTorch users count on: no side effects, determinism, clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _support.torch_models import (
    AttributeOutput,
    CustomKeyOutput,
    DictOutput,
    SoftmaxHead,
    TinyResNet,
    TupleOutput,
    blob_images,
    tiny_cnn,
)
from torch import nn

from groupcam_core import (
    BackendError,
    ConfigError,
    GroupCAMWarning,
    InputError,
    LayerNotFoundError,
    ModelOutputError,
    TargetLayerError,
)
from groupcam_torch import GroupCAM


@pytest.fixture
def images() -> torch.Tensor:
    return torch.from_numpy(blob_images(3, seed=5)[0])


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# -- no side effects ---------------------------------------------------------


def test_modes_are_restored_module_by_module(blob_net, images) -> None:
    model = copy.deepcopy(blob_net)
    model.train()
    model[3].eval()  # a frozen BatchNorm inside a model in training
    before = [m.training for m in model.modules()]
    state = _state(model)
    GroupCAM(model, groups=8)(images)
    assert [m.training for m in model.modules()] == before
    # BatchNorm ran in eval mode: running statistics untouched.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_eval_mode_is_used_for_the_explanation(blob_net, images) -> None:
    model = copy.deepcopy(blob_net)
    in_eval = GroupCAM(model, groups=8)(images)
    model.train()
    in_train = GroupCAM(model, groups=8)(images)
    np.testing.assert_array_equal(in_eval, in_train)
    assert model.training


class _Exploding(nn.Module):
    """Raises inside the model on the n-th forward call."""

    def __init__(self, inner: nn.Module, fail_on_call: int) -> None:
        super().__init__()
        self.inner = inner
        self.fail_on_call = fail_on_call
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("boom inside the model")
        return self.inner(x)


@pytest.mark.parametrize("fail_on_call", [1, 2, 3])
def test_hooks_removed_and_modes_restored_after_an_exception(
    blob_net, images, fail_on_call
) -> None:
    # Call 1 is the gradient pass (layer given), 2 and 3 masked chunks.
    model = _Exploding(copy.deepcopy(blob_net), fail_on_call)
    model.train()
    before = [m.training for m in model.modules()]
    cam = GroupCAM(model, target_layer="inner.4", groups=8, batch_size=4)
    # The model's own error, of its own type; on the user's batch with a note naming it.
    with pytest.raises(RuntimeError, match="boom inside the model") as raised:
        cam(images)
    assert type(raised.value) is RuntimeError
    if fail_on_call == 1:
        assert any("shape (3, 3, 32, 32)" in note for note in raised.value.__notes__)
    assert _hook_count(model) == 0
    assert [m.training for m in model.modules()] == before


def test_no_hooks_left_after_automatic_layer_search(blob_net, images) -> None:
    model = copy.deepcopy(blob_net)
    GroupCAM(model, groups=8)(images)
    assert _hook_count(model) == 0


def test_parameter_gradients_and_flags_untouched(blob_net, images) -> None:
    model = copy.deepcopy(blob_net)
    model[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    GroupCAM(model, groups=8)(images)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags


def test_existing_parameter_gradients_are_kept(blob_net, images) -> None:
    model = copy.deepcopy(blob_net)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    GroupCAM(model, groups=8)(images)
    assert all((p.grad == 0.5).all() for p in model.parameters())


def test_frozen_model(blob_net, images) -> None:
    reference = GroupCAM(blob_net, groups=8)(images)
    frozen = copy.deepcopy(blob_net).requires_grad_(False)
    np.testing.assert_array_equal(GroupCAM(frozen, groups=8)(images), reference)


def test_inside_no_grad_and_inference_mode(blob_net, images) -> None:
    reference = GroupCAM(blob_net, groups=8)(images)
    with torch.no_grad():
        in_no_grad = GroupCAM(blob_net, groups=8)(images)
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        made_inside = images.clone()  # an inference tensor
        in_inference = GroupCAM(blob_net, groups=8)(made_inside)
        assert torch.is_inference_mode_enabled()
    np.testing.assert_array_equal(in_no_grad, reference)
    np.testing.assert_array_equal(in_inference, reference)
    assert torch.is_grad_enabled()


def test_input_tensor_is_not_modified(blob_net, images) -> None:
    original = images.clone()
    images.requires_grad_(True)
    GroupCAM(blob_net, groups=8)(images)
    torch.testing.assert_close(images.detach(), original, rtol=0, atol=0)
    assert images.grad is None


def test_in_place_relu_after_target_keeps_pre_activation_values(images) -> None:
    # Layer 4 (BatchNorm) is followed by ReLU(inplace=True); its activations may be negative.
    model = tiny_cnn()
    cam = GroupCAM(model, target_layer="4", groups=5)
    exp = cam.explain(images)
    assert np.isfinite(exp.saliency).all()
    relu_exp = GroupCAM(model, target_layer="5", groups=5).explain(images)
    assert not np.array_equal(exp.group_scores, relu_exp.group_scores)


# -- determinism and batching ------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_batch_size_does_not_change_maps(blob_net, images, batch_size) -> None:
    reference = GroupCAM(blob_net, groups=8, batch_size=16)(images)
    np.testing.assert_allclose(
        GroupCAM(blob_net, groups=8, batch_size=batch_size)(images), reference, atol=1e-5
    )


def test_targets_per_image_and_for_all(blob_net, images) -> None:
    cam = GroupCAM(blob_net, groups=8)
    per_image = cam.explain(images, targets=torch.tensor([3, 2, 1]))
    np.testing.assert_array_equal(per_image.targets, [3, 2, 1])
    for_all = cam.explain(images, targets=2)
    np.testing.assert_array_equal(for_all.targets, [2, 2, 2])
    np.testing.assert_allclose(for_all.saliency[1], per_image.saliency[1], atol=1e-5)
    assert not np.allclose(for_all.saliency[0], per_image.saliency[0], atol=1e-3)


def test_numpy_and_float64_input_give_the_same_maps(blob_net, images) -> None:
    cam = GroupCAM(blob_net, groups=8)
    np.testing.assert_array_equal(cam(images.numpy()), cam(images))
    np.testing.assert_array_equal(cam(images.double()), cam(images))


def test_result_fields(blob_net, images) -> None:
    exp = GroupCAM(blob_net, groups=8).explain(images)
    assert exp.saliency.shape == (3, 32, 32)
    assert exp.saliency.dtype == np.float32
    assert exp.group_scores.shape == (3, 8)
    assert exp.baseline_scores.shape == (3,)
    assert exp.degenerate.dtype == bool
    assert exp.layer == "6"
    assert exp.config.groups == 8
    assert ((exp.saliency >= 0) & (exp.saliency <= 1)).all()
    with torch.no_grad():
        probabilities = torch.softmax(blob_net(images), 1).numpy()
    np.testing.assert_allclose(
        exp.target_probabilities, probabilities[np.arange(3), exp.targets], rtol=1e-5
    )


# -- target layers -------------------------------------------------------------------


def _vgg_like() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),  # "4": what Grad-CAM users explain (block5_conv3 in VGG16)
        nn.MaxPool2d(2),  # "5": spatial, but a pooling layer
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 5),
    ).eval()


def _mobilenet_v3_like() -> nn.Sequential:
    """Ends like MobileNetV3: pooling, then 1x1 convolutions on the 1x1 map as the classifier."""
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Hardswish(),
        nn.Conv2d(8, 16, 1),
        nn.Hardswish(),  # "3": the last spatial map
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(16, 24, 1),  # a convolution, but on 1x1: not "the last convolution"
        nn.Hardswish(),
        nn.Conv2d(24, 5, 1),
        nn.Flatten(),
    ).eval()


@pytest.mark.parametrize(("build", "expected"), [(_vgg_like, "4"), (_mobilenet_v3_like, "3")])
def test_automatic_layer_passes_over_pooling_and_classifier_convolutions(
    images, build, expected
) -> None:
    cam = GroupCAM(build(), groups=4)
    assert cam(images).shape == (3, 32, 32)
    assert cam.target_layer_name == expected


def test_automatic_layer_on_sequential_and_resnet(blob_net, images) -> None:
    cam = GroupCAM(blob_net, groups=8)
    assert cam.target_layer_name is None
    cam(images)
    assert cam.target_layer_name == "6"  # the ReLU after the last convolution
    resnet = GroupCAM(TinyResNet(), groups=4)
    resnet(images)
    # The shared ReLU of the last block runs three times and finishes before its
    # block and the block's Sequential: layer1 is the last feature map.
    assert resnet.target_layer_name == "layer1"


def test_layer_by_name_and_by_module_agree(blob_net, images) -> None:
    by_name = GroupCAM(blob_net, target_layer="4", groups=8)
    by_module = GroupCAM(blob_net, target_layer=blob_net[4], groups=8)
    assert by_module.target_layer_name == "4"
    np.testing.assert_array_equal(by_name(images), by_module(images))


def test_nested_dotted_name(images) -> None:
    model = TinyResNet()
    cam = GroupCAM(model, target_layer="layer1.0", groups=4)
    assert cam.explain(images).layer == "layer1.0"


def test_unknown_layer_lists_close_matches() -> None:
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'layer11'.*'layer1'"):
        GroupCAM(TinyResNet(), target_layer="layer11")
    assert issubclass(LayerNotFoundError, KeyError)


def test_module_outside_the_model() -> None:
    with pytest.raises(LayerNotFoundError, match="not a submodule"):
        GroupCAM(TinyResNet(), target_layer=nn.Conv2d(3, 3, 1))


def test_bad_layer_type() -> None:
    with pytest.raises(BackendError, match="target_layer must be"):
        GroupCAM(TinyResNet(), target_layer=3)


def test_layer_with_flat_output(blob_net, images) -> None:
    with pytest.raises(TargetLayerError, match="4-D feature map"):
        GroupCAM(blob_net, target_layer="8", groups=2)(images)


def test_layer_that_never_runs(images) -> None:
    model = TinyResNet()
    model.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(TargetLayerError, match="not called"):
        GroupCAM(model, target_layer="unused", groups=2)(images)


def test_model_without_convolution() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(TargetLayerError, match="no convolution with a spatial output of the input"):
        GroupCAM(model, groups=2)(torch.zeros(1, 3, 8, 8))


# -- model outputs -------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", [TupleOutput, DictOutput, AttributeOutput])
def test_tuple_dict_and_logits_outputs(blob_net, images, wrapper) -> None:
    reference = GroupCAM(blob_net, groups=8)(images)
    wrapped = GroupCAM(wrapper(blob_net), groups=8)(images)
    np.testing.assert_array_equal(wrapped, reference)


@pytest.mark.parametrize("selector", ["scores", lambda out: out["scores"]])
def test_output_selector(blob_net, images, selector) -> None:
    reference = GroupCAM(blob_net, groups=8)(images)
    wrapped = GroupCAM(CustomKeyOutput(blob_net), groups=8, output=selector)(images)
    np.testing.assert_array_equal(wrapped, reference)


def test_ambiguous_mapping_asks_for_output(blob_net, images) -> None:
    with pytest.raises(ModelOutputError, match=r"keys \['features', 'scores'\].*output="):
        GroupCAM(CustomKeyOutput(blob_net), target_layer="inner.4", groups=8)(images)


def test_missing_output_key(blob_net, images) -> None:
    with pytest.raises(ModelOutputError, match="no such key"):
        GroupCAM(DictOutput(blob_net), target_layer="inner.4", output="probs", groups=8)(images)


def test_output_of_wrong_shape(images) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ModelOutputError, match=r"\(3, classes\)"):
        GroupCAM(model, target_layer="0", groups=2)(images)


def test_softmax_model_is_not_softmaxed_twice(blob_net, images) -> None:
    logits_cam = GroupCAM(blob_net, groups=8).explain(images)
    model = SoftmaxHead(blob_net)
    with pytest.warns(UserWarning, match="look like probabilities"):
        GroupCAM(model, groups=8).explain(images)
    probs_exp = GroupCAM(model, groups=8, model_outputs="probabilities").explain(images)
    np.testing.assert_allclose(probs_exp.baseline_scores, logits_cam.baseline_scores, rtol=1e-5)
    np.testing.assert_allclose(
        probs_exp.target_probabilities, logits_cam.target_probabilities, rtol=1e-5
    )


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.zeros(32, 32), InputError, r"1 to 3 spatial axes, \(B, C, L\), \(B, C, H, W\)"),
        (  # one image without its batch axis: a batch of signals to a 2-D model
            torch.zeros(3, 32, 32),
            ValueError,  # BatchNorm2d's own error, with a note
            r"(?s)expected 4D input.*add a batch axis \(x\[None\]\)",
        ),
        (torch.zeros(0, 3, 32, 32), InputError, "empty"),
        (
            torch.zeros(2, 4, 32, 32),
            RuntimeError,  # the model's own error, with a note that names the batch
            r"(?s)3 channels.*failed on a batch of shape \(2, 4, 32, 32\)",
        ),
        (torch.zeros(2, 32, 32, 3), RuntimeError, "looks channels-last: use x.permute"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), InputError, "floating-point"),
    ],
)
def test_bad_input(blob_net, x, error, message) -> None:
    with pytest.raises(error, match=message):
        GroupCAM(blob_net, target_layer="4", groups=8)(x)


def test_bad_constructor_arguments(blob_net) -> None:
    with pytest.raises(BackendError, match=r"needs a torch\.nn\.Module"):
        GroupCAM(lambda x: x)
    with pytest.raises(ConfigError, match="batch_size"):
        GroupCAM(blob_net, batch_size=0)
    with pytest.raises(ConfigError, match="model_outputs"):
        GroupCAM(blob_net, model_outputs="softmax")
    with pytest.raises(ConfigError, match="unknown Group-CAM setting"):
        GroupCAM(blob_net, percentil=50)
    assert GroupCAM(blob_net, percentile=None).config.percentile is None


def test_torch_backend_satisfies_the_protocol(blob_net) -> None:
    from groupcam_core import Backend
    from groupcam_torch import TorchBackend

    backend = TorchBackend(blob_net, blob_net[4], "4")
    assert isinstance(backend, Backend)
    assert backend.default_batch_size == 4  # CPU
    assert backend.input_layout == backend.feature_layout == "channels_first"


class _OutOfMemoryAbove(nn.Module):
    """Raises torch's own OutOfMemoryError for batches of more than ``rows`` images."""

    def __init__(self, net: nn.Module, rows: int) -> None:
        super().__init__()
        self.net = net
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]}")
        return self.net(x)


def test_out_of_memory_halves_the_chunks_and_gives_the_same_maps(blob_net, images) -> None:
    plenty = GroupCAM(blob_net, target_layer="4", groups=8, batch_size=16).explain(images)
    model = _OutOfMemoryAbove(blob_net, rows=2).eval()
    cam = GroupCAM(model, target_layer="net.4", groups=8, batch_size=16)
    with pytest.warns(GroupCAMWarning, match="ran in chunks of 2"):
        found = cam.explain(images)
    np.testing.assert_allclose(found.saliency, plenty.saliency, atol=1e-6)
    assert _hook_count(model) == 0
    model.rows = 0
    with pytest.raises(torch.OutOfMemoryError):  # one image does not fit: torch's own error
        cam.explain(images)
