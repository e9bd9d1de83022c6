"""Grad-CAM, Score-CAM and RISE through a real groupcam_torch explainer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _support.torch_models import blob_images

from groupcam_core.methods import METHODS, grad_cam, rise, run_method, score_cam
from groupcam_torch import GroupCAM

IMAGES = 6


@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    images, labels, centers = blob_images(IMAGES, seed=321)
    return torch.from_numpy(images), labels, centers


def _peak_distances(maps: np.ndarray, centers: np.ndarray) -> np.ndarray:
    peaks = np.array([np.unravel_index(np.argmax(m), m.shape) for m in maps], dtype=float)
    return np.linalg.norm(peaks - centers, axis=1)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_model_sees_the_blobs(blob_net, blobs) -> None:
    """The premise of the localization tests: the net tells the blob colors apart."""
    images, labels, _ = blobs
    with torch.no_grad():
        predicted = blob_net(images).argmax(dim=1).numpy()
    assert (predicted == labels).mean() >= 5 / 6


@pytest.mark.parametrize("method", ["grad-cam", "score-cam"])
def test_cam_maps_peak_near_the_blob(blob_net, blobs, method: str) -> None:
    images, labels, centers = blobs
    result = run_method(method, GroupCAM(blob_net), images, targets=labels)
    assert result.saliency.shape == (IMAGES, 32, 32)
    assert result.saliency.dtype == np.float32
    distances = _peak_distances(result.saliency, centers)
    # The blob's Gaussian has a radius of about 2 pixels; the feature map has a
    # stride of 4. Peaks at random would mostly miss by more than 10 pixels.
    assert (distances <= 5.0).sum() >= IMAGES - 1, distances


def test_rise_maps_peak_near_the_blob_where_the_blob_decides(blob_net, blobs) -> None:
    images, labels, centers = blobs
    with torch.no_grad():
        blobless = int(blob_net(torch.zeros(1, 3, 32, 32)).argmax())
    # The net calls an image without a blob `blobless`: for those images hiding
    # the blob barely changes the probability and RISE's map is mostly the
    # uneven coverage of its masks. Localization is a known answer only where
    # the blob decides the class.
    decided = np.flatnonzero(labels != blobless)
    assert len(decided) >= 2
    chosen = images[torch.from_numpy(decided)]
    result = run_method(
        "rise", GroupCAM(blob_net), chosen, targets=labels[decided], masks=500, batch_size=250
    )
    assert result.forward_passes.tolist() == [501] * len(decided)
    distances = _peak_distances(result.saliency, centers[decided])
    assert (distances <= 5.0).all(), distances
    yy, xx = np.mgrid[0:32, 0:32]
    for saliency, (row, col) in zip(result.saliency, centers[decided], strict=True):
        near = (yy - row) ** 2 + (xx - col) ** 2 <= 9
        assert saliency[near].mean() > saliency[~near].mean() + 0.4


def test_grad_cam_equals_a_direct_autograd_computation(blob_net, blobs) -> None:
    images, _, _ = blobs
    cam = GroupCAM(blob_net, target_layer="6")  # the ReLU after the last convolution
    maps = grad_cam(cam, images)

    captured = []
    handle = blob_net[6].register_forward_hook(lambda module, inputs, out: captured.append(out))
    try:
        logits = blob_net(images)
    finally:
        handle.remove()
    (activations,) = captured
    targets = logits.argmax(dim=1)
    (gradients,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    expected = F.relu((alpha * activations).sum(dim=1, keepdim=True))
    expected = F.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    low = expected.amin(dim=(1, 2), keepdim=True)
    high = expected.amax(dim=(1, 2), keepdim=True)
    expected = ((expected - low) / (high - low)).detach().numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_score_cam_costs_one_pass_per_live_channel(blob_net, blobs) -> None:
    images, _, _ = blobs
    cam = GroupCAM(blob_net, target_layer="6", batch_size=16)
    result = run_method("score-cam", cam, images[:2])
    with torch.no_grad():
        features = blob_net[:7](images[:2])
    live = (features.amax(dim=(2, 3)) > features.amin(dim=(2, 3))).sum(dim=1).numpy()
    assert result.forward_passes.tolist() == (live + 1).tolist()
    assert result.forward_passes.max() <= 33


def test_no_side_effects_on_the_model(blob_net, blobs) -> None:
    images, _, _ = blobs
    model = copy.deepcopy(blob_net)
    model.train()
    state = _state(model)
    cam = GroupCAM(model)
    for method in METHODS:
        options = {"masks": 20} if method == "rise" else {}
        run_method(method, cam, images[:2], **options)
    assert all(m.training for m in model.modules())
    for key, value in model.state_dict().items():  # BatchNorm ran in eval mode
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    assert hooks == 0


def test_deterministic_and_works_under_no_grad(blob_net, blobs) -> None:
    images, _, _ = blobs
    cam = GroupCAM(blob_net)
    first = score_cam(cam, images[:2])
    with torch.no_grad():
        again = score_cam(cam, images[:2])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(
        rise(cam, images[:1], masks=30, seed=4), rise(cam, images[:1], masks=30, seed=4)
    )
