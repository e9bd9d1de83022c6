"""groupcam_torch end to end against the numpy loop oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _support.oracle import oracle_groupcam
from _support.torch_models import blob_images, tiny_cnn

from groupcam_torch import GroupCAM


def _oracle(model, split: int, x: torch.Tensor, groups: int, variant: str, targets=None):
    """Activations and gradients by splitting the Sequential model by hand."""
    features, head = model[: split + 1], model[split + 1 :]
    with torch.no_grad():
        activations = features(x)
    leaf = activations.clone().requires_grad_(True)
    logits = head(leaf.clone())
    chosen = logits.argmax(1) if targets is None else torch.as_tensor(targets)
    (gradients,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), leaf)

    def predict(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(image[None]).to(x.dtype))[0].double().numpy()

    return oracle_groupcam(
        activations.double().numpy(),
        gradients.double().numpy(),
        x.double().numpy(),
        predict,
        chosen.numpy(),
        groups=groups,
        variant=variant,
    )


@pytest.mark.parametrize("variant", ["paper", "official-head"])
@pytest.mark.parametrize("target", ["3", "4", "5"])
def test_float64_model_matches_oracle(variant: str, target: str) -> None:
    # Layer 3 is a convolution, 4 a BatchNorm followed by an in-place ReLU, 5
    # that ReLU; 10 channels in 4 groups (not divisible).
    model = tiny_cnn(classes=5, width=10).double()
    x = torch.from_numpy(blob_images(3, seed=2)[0]).double()
    exp = GroupCAM(model, target_layer=target, groups=4, variant=variant).explain(x)
    oracle = _oracle(model, int(target), x, 4, variant)
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)
    np.testing.assert_allclose(exp.group_scores, oracle.group_scores, atol=1e-8)
    np.testing.assert_array_equal(exp.skipped_groups, oracle.skipped)
    np.testing.assert_array_equal(exp.degenerate, oracle.degenerate)


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_trained_float32_model_matches_oracle(blob_net, variant: str) -> None:
    x = torch.from_numpy(blob_images(4, seed=3)[0])
    exp = GroupCAM(blob_net, target_layer="4", groups=8, variant=variant).explain(x)
    oracle = _oracle(blob_net, 4, x, 8, variant)
    assert not exp.degenerate.any()
    # float32 model: the masked inputs are rounded to float32 (see the core test).
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-4)


def test_explicit_targets_match_oracle() -> None:
    x = torch.from_numpy(blob_images(3, seed=4)[0]).double()
    model = tiny_cnn(classes=5).double()
    exp = GroupCAM(model, target_layer="5", groups=5).explain(x, targets=[4, 0, 2])
    oracle = _oracle(model, 5, x, 5, "paper", targets=[4, 0, 2])
    np.testing.assert_array_equal(exp.targets, [4, 0, 2])
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)


def test_maps_find_the_object(blob_net) -> None:
    images, labels, centers = blob_images(40, seed=11)
    exp = GroupCAM(blob_net, groups=8).explain(torch.from_numpy(images))
    np.testing.assert_array_equal(exp.targets, labels)
    peaks = np.array([np.unravel_index(m.argmax(), m.shape) for m in exp.saliency])
    distance = np.hypot(*(peaks - centers).T)
    assert (distance < 8).mean() >= 0.9
