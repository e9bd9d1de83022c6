"""Metrics through groupcam_torch, and cascading randomization of torch models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _support.oracle import gaussian_blur_image
from _support.torch_models import blob_images, tiny_cnn

from groupcam_core.errors import BackendError
from groupcam_core.metrics import (
    average_drop_and_increase,
    deletion,
    insertion,
    sanity_check,
)
from groupcam_torch import GroupCAM, TorchBackend
from groupcam_torch.randomization import cascading_randomization, randomizable_layers

LAYER = "6"  # the last ReLU of the blob net: 32 channels at 8 x 8


def _cam(model: torch.nn.Module) -> GroupCAM:
    return GroupCAM(model, target_layer=LAYER, groups=8)


def _probabilities(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.from_numpy(image[None].astype(np.float32)))[0].double()
    return torch.softmax(logits, dim=0).numpy()


def _oracle_curves(model, x, saliency, kind, step):
    """One image, one step, one pixel at a time, one model call per image."""
    batch, channels, height, width = x.shape
    steps = math.ceil(height * width / step)
    curves = np.zeros((batch, steps + 1))
    for b in range(batch):
        target = int(np.argmax(_probabilities(model, x[b])))
        values = [float(saliency[b, p // width, p % width]) for p in range(height * width)]
        order = sorted(range(height * width), key=lambda p: -values[p])
        start = x[b].copy() if kind == "deletion" else gaussian_blur_image(x[b])
        for i in range(steps + 1):
            image = start.copy()
            for p in order[: i * step]:
                row, col = divmod(p, width)
                for c in range(channels):
                    image[c, row, col] = 0.0 if kind == "deletion" else x[b, c, row, col]
            curves[b, i] = _probabilities(model, image)[target]
    return curves


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_causal_metrics_through_groupcam_match_the_numpy_loop(blob_net, kind) -> None:
    x, _, _ = blob_images(2, seed=21)
    cam = _cam(blob_net)
    saliency = cam(x)
    metric = deletion if kind == "deletion" else insertion
    blob_net.train()
    try:
        result = metric(cam, x, saliency, step=64, batch_size=12)
        assert blob_net.training  # the explainer's evaluation mode was restored
    finally:
        blob_net.eval()
    expected = _oracle_curves(blob_net, x, saliency, kind, 64)
    assert result.curves.shape == (2, 17)
    np.testing.assert_allclose(result.curves, expected, atol=2e-5)
    area = [sum((c[i] + c[i + 1]) / 2 for i in range(16)) / 16 for c in expected]
    np.testing.assert_allclose(result.auc, area, atol=2e-5)
    # The curves move (a no-op step would leave them flat and still match a wrong oracle).
    assert np.ptp(result.curves, axis=1).max() > 0.2

    # The same computation from a torch tensor, straight through the backend.
    backend = TorchBackend(blob_net, blob_net, "")
    direct = metric(backend, torch.from_numpy(x), torch.from_numpy(saliency), step=64)
    np.testing.assert_allclose(direct.curves, result.curves, atol=1e-5)
    np.testing.assert_array_equal(direct.targets, result.targets)


def test_groupcam_maps_beat_random_maps_on_deletion_and_insertion(blob_net) -> None:
    x, _, _ = blob_images(4, seed=22)
    cam = _cam(blob_net)
    saliency = cam(x)
    random_maps = np.random.default_rng(0).uniform(size=saliency.shape)
    kwargs = {"step": 64, "batch_size": 64}
    assert (
        deletion(cam, x, saliency, **kwargs).mean_auc
        < deletion(cam, x, random_maps, **kwargs).mean_auc
    )
    assert (
        insertion(cam, x, saliency, **kwargs).mean_auc
        > insertion(cam, x, random_maps, **kwargs).mean_auc
    )


def test_average_drop_through_groupcam_matches_the_loop(blob_net) -> None:
    x, _, _ = blob_images(4, seed=23)
    cam = _cam(blob_net)
    saliency = cam(x)
    result = average_drop_and_increase(cam, x, saliency)
    for b in range(4):
        clean = _probabilities(blob_net, x[b])
        target = int(np.argmax(clean))
        masked = _probabilities(blob_net, x[b] * saliency[b][None])[target]
        assert result.targets[b] == target
        assert result.original[b] == pytest.approx(clean[target], abs=1e-5)
        assert result.masked[b] == pytest.approx(masked, abs=1e-5)
        expected = max(0.0, clean[target] - masked) / clean[target] * 100
        assert result.drops[b] == pytest.approx(expected, abs=1e-3)


# -- cascading randomization -----------------------------------------------------------


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def test_cascading_randomization_goes_from_the_output_down_and_never_touches_the_model(
    blob_net,
) -> None:
    before = _state(blob_net)
    rng_before = torch.get_rng_state()
    steps = list(cascading_randomization(blob_net, seed=3))
    assert [name for name, _ in steps] == ["9", "5", "3", "2", "0"]
    assert randomizable_layers(blob_net) == ["9", "5", "3", "2", "0"]
    assert torch.equal(torch.get_rng_state(), rng_before)
    after = blob_net.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert not blob_net.training

    names = [name for name, _ in steps]
    for k, (_, copy) in enumerate(steps):
        assert copy is not blob_net
        assert not copy.training
        state = copy.state_dict()
        for layer in names:
            same = torch.equal(state[f"{layer}.weight"], before[f"{layer}.weight"])
            assert same == (layer not in names[: k + 1]), (k, layer)
    # Each step is its own copy: later steps did not change earlier ones.
    assert torch.equal(steps[0][1].state_dict()["0.weight"], before["0.weight"])

    again = list(cascading_randomization(blob_net, seed=3))
    other = list(cascading_randomization(blob_net, seed=4))
    for (_, a), (_, b), (_, c) in zip(steps, again, other, strict=True):
        assert torch.equal(a.state_dict()["9.weight"], b.state_dict()["9.weight"])
        assert not torch.equal(a.state_dict()["9.weight"], c.state_dict()["9.weight"])


def test_cascading_randomization_resets_batchnorm_and_keeps_training_mode() -> None:
    model = tiny_cnn().train()
    steps = dict(cascading_randomization(model))
    assert list(steps) == ["8", "4", "3", "1", "0"]
    assert steps["0"].training
    bn = steps["0"][4]
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.equal(model[4].running_mean, torch.zeros_like(model[4].running_mean))


def test_cascading_randomization_warns_about_layers_it_cannot_reset() -> None:
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.head(x) * self.scale

    with pytest.warns(UserWarning, match="<root>"):
        names = [name for name, _ in cascading_randomization(Scaled())]
    assert names == ["head"]
    with pytest.raises(BackendError, match=r"torch\.nn\.Module"):
        next(cascading_randomization("not a model"))


def test_sanity_check_with_groupcam_and_cascading_randomization(blob_net) -> None:
    x, _, _ = blob_images(3, seed=24)
    unchanged = sanity_check(_cam, blob_net, [("none", blob_net)], x)
    np.testing.assert_allclose(unchanged.correlations, 1.0)  # zero layers randomized

    before = _state(blob_net)
    result = sanity_check(_cam, blob_net, cascading_randomization(blob_net), x)
    assert result.names == ("9", "5", "3", "2", "0")
    assert result.correlations.shape == (5, 3)
    assert np.all(np.abs(result.correlations) <= 1.0)
    assert result.mean[-1] < 0.5
    assert result.mean[-1] < unchanged.mean[0]
    for key, value in blob_net.state_dict().items():
        assert torch.equal(value, before[key]), key
