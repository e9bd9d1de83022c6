"""Cases that once failed under adversarial use: each test here failed before its fix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _support.torch_models import blob_images
from scipy.stats import spearmanr
from torch import nn

from groupcam_core import InputError, LayerNotFoundError
from groupcam_torch import GroupCAM


@pytest.fixture
def images() -> torch.Tensor:
    return torch.from_numpy(blob_images(4, seed=7)[0])


class _SpareConvolutionFirst(nn.Module):
    """Registers a 16-channel convolution before the 3-channel stem that runs first."""

    def __init__(self, blob_net: nn.Module) -> None:
        super().__init__()
        self.refine = nn.Conv2d(16, 16, 1)  # registered first, runs second
        self.stem = copy.deepcopy(blob_net[0])
        self.rest = copy.deepcopy(blob_net[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.refine(self.stem(x)))


def test_a_valid_batch_is_accepted_whatever_the_registration_order(blob_net, images) -> None:
    model = _SpareConvolutionFirst(blob_net)
    torch.nn.init.dirac_(model.refine.weight)
    torch.nn.init.zeros_(model.refine.bias)
    found = GroupCAM(model, "rest.5", groups=8)(images)
    expected = GroupCAM(blob_net, "5", groups=8)(images)
    np.testing.assert_allclose(found, expected, atol=1e-5)


def _ranks_agree(found: np.ndarray, expected: np.ndarray) -> float:
    return min(
        spearmanr(f.ravel(), e.ravel()).statistic for f, e in zip(found, expected, strict=True)
    )


def test_inside_autocast_the_maps_stay_float32_and_close(blob_net, images) -> None:
    cam = GroupCAM(blob_net, "6", groups=8)
    exact = cam.explain(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = cam.explain(images)
        assert torch.is_autocast_enabled("cpu")  # the caller's autocast is left on
    assert mixed.saliency.dtype == np.float32
    np.testing.assert_array_equal(mixed.targets, exact.targets)
    assert np.abs(mixed.saliency - exact.saliency).max() < 0.1
    assert _ranks_agree(mixed.saliency, exact.saliency) > 0.98


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_give_close_maps(blob_net, images, dtype) -> None:
    exact = GroupCAM(blob_net, "6", groups=8).explain(images)
    model = copy.deepcopy(blob_net).to(dtype)
    half = GroupCAM(model, "6", groups=8).explain(images)
    assert half.saliency.dtype == np.float32
    assert np.isfinite(half.saliency).all()
    np.testing.assert_array_equal(half.targets, exact.targets)
    assert np.abs(half.saliency - exact.saliency).max() < 0.15
    assert _ranks_agree(half.saliency, exact.saliency) > 0.97
    assert all(p.dtype == dtype for p in model.parameters())  # left as it was


def test_values_that_overflow_the_model_dtype_are_named_as_such(blob_net) -> None:
    model = copy.deepcopy(blob_net).to(torch.float16)
    x = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    x[0, 0, 0, 0] = 1e6
    with pytest.raises(InputError, match=r"values up to 1e\+06 .* overflow the model's dtype"):
        GroupCAM(model, "6", groups=8)(x)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="contains NaN or inf"):
        GroupCAM(model, "6", groups=8)(x)


class _Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.r1 = nn.Conv2d(3, 8, 3)
        self.r2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.r2(self.r1(x)).mean(dim=(2, 3))


@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")
def test_a_compiled_model_suggests_the_prefixed_name() -> None:
    compiled = torch.compile(_Named())  # nothing is compiled until it is called
    with pytest.raises(LayerNotFoundError, match=r"did you mean '_orig_mod\.r2'"):
        GroupCAM(compiled, target_layer="r2")
