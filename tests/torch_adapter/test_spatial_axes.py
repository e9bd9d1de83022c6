"""groupcam_torch on 1-D signals (Conv1d) and 3-D volumes (Conv3d)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _support.nd_models import oracle_maps, signals_or_volumes, torch_model
from array_api_compat import array_namespace
from torch import nn

from groupcam_core import InputError, TargetLayerError, make_config, ops
from groupcam_core.methods import grad_cam
from groupcam_torch import GroupCAM

SEED = 1  # seeds whose random 2-D net gives both images a map (not all-zero scores)


@pytest.mark.parametrize("axes", [1, 3], ids=["Conv1d", "Conv3d"])
def test_group_cam_matches_the_loop_oracle(axes: int) -> None:
    model = torch_model(axes)
    x = signals_or_volumes(axes)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    maps = GroupCAM(model, target_layer="2", groups=4)(torch.from_numpy(x))
    oracle = oracle_maps(axes, x)
    assert maps.shape == x.shape[:1] + x.shape[2:]
    assert not oracle.degenerate.any()
    np.testing.assert_allclose(maps, oracle.saliency, atol=1e-4)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize("axes", [1, 3], ids=["Conv1d", "Conv3d"])
def test_the_default_layer_is_the_last_feature_map_of_the_input_rank(axes: int) -> None:
    cam = GroupCAM(torch_model(axes), groups=4)
    maps = cam(torch.from_numpy(signals_or_volumes(axes)))
    assert cam.target_layer_name == "3"  # the ReLU after the last convolution
    assert maps.shape[1:] == signals_or_volumes(axes).shape[2:]


@pytest.mark.parametrize(
    ("size", "mode"), [((5,), "linear"), ((4, 6), "bilinear"), ((3, 5, 7), "trilinear")]
)
def test_resizing_equals_torch_interpolate(size, mode) -> None:
    small = torch.randn(2, 1, *size, dtype=torch.float64)
    large = tuple(2 * side + 3 for side in size)
    expected = nn.functional.interpolate(small, size=large, mode=mode, align_corners=False)
    ours = ops.resize_linear(small[:, 0], large, array_namespace(small))
    torch.testing.assert_close(ours, expected[:, 0], atol=1e-12, rtol=0)


def test_a_2d_network_lifted_to_3d_gives_the_2d_map_on_every_slice() -> None:
    torch.manual_seed(SEED)
    flat = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    lifted = nn.Sequential(
        nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)),
        nn.ReLU(),
        nn.Conv3d(8, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    with torch.no_grad():
        for two, three in ((flat[0], lifted[0]), (flat[2], lifted[2])):
            three.weight.copy_(two.weight[:, :, None])
            three.bias.copy_(two.bias)
        lifted[6].load_state_dict(flat[6].state_dict())
    images = torch.from_numpy(signals_or_volumes(2, seed=SEED)[:, :1].repeat(3, axis=1))
    volume = images[:, :, None].expand(-1, -1, 5, -1, -1).contiguous()
    # Denoising keeps values above a percentile of all positions; D copies of a map
    # move numpy's linear percentile, so the lift is exact without it.
    config = {"groups": 4, "percentile": None}
    maps_2d = GroupCAM(flat, target_layer="2", **config)(images)
    maps_3d = GroupCAM(lifted, target_layer="2", **config)(volume)
    assert maps_3d.shape == (2, 5, 16, 16)
    np.testing.assert_allclose(maps_2d.reshape(2, -1).max(axis=1), 1.0)
    for depth in range(5):
        np.testing.assert_allclose(maps_3d[:, depth], maps_2d, atol=2e-5)


def test_grad_cam_in_3d_equals_its_definition() -> None:
    model = torch_model(3)
    x = torch.from_numpy(signals_or_volumes(3))
    captured = {}
    handle = model[2].register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    logits = model(x)
    handle.remove()
    (gradients,) = torch.autograd.grad(logits.max(1).values.sum(), captured["a"])
    cam = (gradients.mean((2, 3, 4), keepdim=True) * captured["a"]).sum(1, keepdim=True).relu()
    up = nn.functional.interpolate(cam, size=x.shape[2:], mode="trilinear", align_corners=False)
    flat = up.flatten(1)
    expected = (
        (flat - flat.min(1, keepdim=True).values)
        / (flat.max(1, keepdim=True).values - flat.min(1, keepdim=True).values)
    ).view(up.shape)[:, 0]
    ours = grad_cam(GroupCAM(model, target_layer="2", groups=4), x)
    np.testing.assert_allclose(ours, expected.detach().numpy(), atol=1e-5)


def test_a_single_image_without_its_batch_axis_is_told_to_add_one() -> None:
    model = torch_model(2)
    with pytest.raises((InputError, TargetLayerError, RuntimeError)) as raised:
        GroupCAM(model, target_layer="2", groups=4)(torch.randn(2, 16, 16))
    text = str(raised.value) + " ".join(getattr(raised.value, "__notes__", []))
    assert "add a batch axis" in text or "add one (x[None])" in text


def test_a_volume_blur_can_leave_time_unblurred() -> None:
    model = torch_model(3)
    x = torch.from_numpy(signals_or_volumes(3))
    cam = GroupCAM(model, target_layer="2", groups=4, blur_kernel_size=(1, 5, 5), blur_sigma=2.0)
    assert cam.config == make_config(groups=4, blur_kernel_size=(1, 5, 5), blur_sigma=2.0)
    assert cam(x).shape == (2, 8, 8, 8)
