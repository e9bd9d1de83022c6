"""EfficientNet-Lite0 with its real ImageNet weights on real photos (all offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groupcam.samples import SAMPLE_PHOTOS, imagenet_class_names, load_sample_photos
from groupcam.zoo.lite0_torch import efficientnet_lite0, photos_to_batch
from groupcam_core import ops
from groupcam_torch import GroupCAM

pytestmark = pytest.mark.slow

KEEP = 0.3
RANDOM_DRAWS = 8


@pytest.fixture(scope="module")
def lite0_case():
    model = efficientnet_lite0()
    batch = photos_to_batch(list(load_sample_photos().values()))
    cam = GroupCAM(model)  # paper preset, 32 groups, layer found automatically
    return model, batch, cam, cam.explain(batch)


def _keep_top(saliency: np.ndarray, fraction: float) -> np.ndarray:
    count = round(fraction * saliency.size)
    keep = np.zeros(saliency.size, dtype=bool)
    keep[np.argsort(-saliency.ravel(), kind="stable")[:count]] = True
    return keep.reshape(saliency.shape)


def test_predictions_and_layer(lite0_case) -> None:
    _, _, cam, exp = lite0_case
    names = [imagenet_class_names()[t] for t in exp.targets]
    assert names[0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert names[1] == "espresso"
    assert names[3] in {"missile", "projectile", "space shuttle"}
    assert cam.target_layer_name == "_swish"  # the head activation, 7x7x1280
    assert not exp.degenerate.any()
    np.testing.assert_array_equal(exp.forward_passes, [34, 34, 34, 34])


def test_salient_pixels_carry_the_prediction(lite0_case) -> None:
    """Keep 30% of the pixels, blur the rest, and ask the model again.

    A right map keeps the evidence: the most salient 30% must give the predicted
    class far more probability than the least salient 30% and than 30% chosen at
    random. An inverted or random map fails both.
    """
    model, batch, _, exp = lite0_case
    x = batch.double().numpy()
    import array_api_compat.numpy as xp

    blurred = ops.blur_images(x, 51, 50.0, xp)
    rng = np.random.default_rng(0)
    inputs, owners = [], []
    for b, saliency in enumerate(exp.saliency):
        top = _keep_top(saliency, KEEP)
        masks = [top, _keep_top(-saliency, KEEP)]
        masks += [rng.permutation(top.ravel()).reshape(top.shape) for _ in range(RANDOM_DRAWS)]
        for mask in masks:
            inputs.append(np.where(mask[None], x[b], blurred[b]))
            owners.append(b)
    with torch.inference_mode():
        probabilities = torch.softmax(model(torch.tensor(np.stack(inputs)).float()), 1).numpy()
    scores = probabilities[np.arange(len(owners)), exp.targets[owners]].reshape(
        len(SAMPLE_PHOTOS), 2 + RANDOM_DRAWS
    )
    top, bottom, random = scores[:, 0], scores[:, 1], scores[:, 2:].mean(axis=1)
    assert (top >= 5 * bottom).all(), (top, bottom)
    assert (top >= 3 * random).all(), (top, random)
    # Where the whole picture is itself worth 10x the random keep, so is our 30%.
    assert (top[[2, 3]] >= 10 * random[[2, 3]]).all(), (top, random)
