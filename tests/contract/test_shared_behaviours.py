"""What every way into groupcam does beyond class targets, checked on each against torch:
target functions, several layers fused, ``reshape_transform``, k-means grouping, and the
comparison methods and metrics run through an explainer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groupcam_core import (
    BackendError,
    ClassLogit,
    ClassProbability,
    ConfigError,
    ModelOutputError,
    TargetLayerError,
    metrics,
    run_method,
    tokens_to_grid,
)
from groupcam_core.namespaces import namespace_of
from groupcam_torch import GroupCAM as TorchGroupCAM


def _torch_images(photos: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(photos.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def logits(blob_net, photos) -> np.ndarray:
    with torch.no_grad():
        return blob_net(_torch_images(photos)).numpy()


def test_target_functions_score_what_they_say(way, photos, logits) -> None:
    """A ready-made target and a lambda on the framework's own arrays give the same maps."""
    images = way.images(photos)
    cam = way.make()
    by_class = cam.explain(images, targets=ClassLogit(1))
    by_lambda = cam.explain(images, targets=lambda out: out[:, 1])
    np.testing.assert_allclose(by_class.saliency, by_lambda.saliency, atol=1e-6)
    np.testing.assert_allclose(by_class.target_scores, logits[:, 1], rtol=1e-4, atol=1e-5)
    assert (by_class.targets == -1).all()
    assert by_class.objective == "ClassLogit"
    # An int target scores the masked passes by the class's probability, as
    # ClassProbability does; it differentiates the logit, ClassProbability the probability.
    as_int = cam.explain(images, targets=1)
    probability = cam.explain(images, targets=ClassProbability(1))
    np.testing.assert_allclose(probability.baseline_scores, as_int.baseline_scores, rtol=1e-4)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probability.target_scores, softmax[:, 1], rtol=1e-4, atol=1e-6)


def _sigmoid_of(column: int):
    """A target function: the sigmoid of one output column, on the framework's own arrays."""

    def sigmoid(out):
        xp = namespace_of(out)
        return 1.0 / (1.0 + xp.exp(-out[:, column]))

    return sigmoid


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values.astype(np.float64)))


def test_single_logit_and_multi_label_models_are_scored_by_their_sigmoid(
    way, photos, logits
) -> None:
    images = way.images(photos)
    # One logit per image: a softmax over it is 1 for every input, every map would be 0.
    with pytest.raises(ModelOutputError, match=r"single logit.*model_outputs='sigmoid'"):
        way.make(way.model("single-logit")).explain(images)
    binary = way.make(way.model("single-logit"), model_outputs="sigmoid").explain(images)
    assert (binary.targets == 0).all()
    np.testing.assert_allclose(binary.target_probabilities, _sigmoid(logits[:, 0]), rtol=1e-5)
    assert binary.saliency.std(axis=(1, 2)).min() > 0.01  # a map, not all zeros
    # The documented score, written out as a target function: the same maps (it
    # differentiates the sigmoid, not the logit: gradients scaled by a positive factor
    # per image, which the masks' min-max normalisation removes; float32 rounding of
    # gradients scaled by a sigmoid's slope as small as 6e-3 leaves up to 3e-5).
    written_out = way.make(way.model("single-logit")).explain(images, targets=_sigmoid_of(0))
    np.testing.assert_allclose(binary.saliency, written_out.saliency, atol=1e-4)
    np.testing.assert_allclose(binary.group_scores, written_out.group_scores, atol=1e-6)
    # Multi-label: each class scored by its own sigmoid, not by a softmax over labels.
    labels = way.make(model_outputs="sigmoid").explain(images, targets=1)
    np.testing.assert_allclose(labels.target_probabilities, _sigmoid(logits[:, 1]), rtol=1e-5)
    written_out = way.make().explain(images, targets=_sigmoid_of(1))
    np.testing.assert_allclose(labels.saliency, written_out.saliency, atol=1e-4)
    softmax_scored = way.make().explain(images, targets=1)
    assert np.abs(labels.group_scores - softmax_scored.group_scores).max() > 1e-3


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_several_layers_are_explained_from_one_gradient_pass(way, blob_net, photos, fusion) -> None:
    images = way.images(photos)
    with pytest.raises(ConfigError, match="empty list"):
        way.make(target_layer=[])
    if way.fused_layers is None:
        with pytest.raises(BackendError, match="explains the output of features_fn"):
            way.make(target_layer=["features", "head"])  # one split point: one layer
        return
    first, last = way.fused_layers
    both = way.make(target_layer=[first, last], layer_fusion=fusion).explain(images)
    alone = {name: way.make(target_layer=name).explain(images) for name in (first, last)}
    assert both.layer == f"{first}, {last}"
    assert list(both.layer_saliency) == [first, last]
    for name, single in alone.items():
        np.testing.assert_allclose(both.layer_saliency[name], single.saliency, atol=1e-6)
    np.testing.assert_allclose(
        both.group_scores,
        np.concatenate([alone[first].group_scores, alone[last].group_scores], axis=1),
        atol=1e-6,  # XLA compiles the one- and two-layer programs apart: a few float32 ulps
    )
    stacked = np.stack([alone[first].saliency, alone[last].saliency])
    fused = stacked.mean(axis=0) if fusion == "mean" else stacked.max(axis=0)
    low = fused.min(axis=(1, 2), keepdims=True)
    high = fused.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(both.saliency, (fused - low) / (high - low), atol=1e-5)
    # One gradient pass, one shared baseline: 1 + 1 + the groups of both layers.
    assert (both.forward_passes == 2 + (~both.skipped_groups).sum(axis=1)).all()
    in_torch = TorchGroupCAM(blob_net, ["5", "6"], groups=8, layer_fusion=fusion)
    np.testing.assert_allclose(
        both.saliency, in_torch.explain(_torch_images(photos)).saliency, atol=1e-4
    )


def _as_tokens(channels_first: bool):
    """A layer's ``(B, K, u, v)`` or ``(B, u, v, K)`` map as ViT-style ``(B, u * v, K)`` tokens."""

    def transform(activations):
        xp = namespace_of(activations)
        permute = getattr(xp, "permute_dims", None) or xp.transpose
        grid = permute(activations, (0, 2, 3, 1)) if channels_first else activations
        batch, rows, cols, channels = grid.shape
        return xp.reshape(grid, (batch, rows * cols, channels))

    return transform


def test_reshape_transform_is_applied_to_the_layer_output(way, photos) -> None:
    """Tokens made of the map and turned back by tokens_to_grid explain the map itself."""
    images = way.images(photos)
    plain = way.make().explain(images)
    to_tokens = _as_tokens(way.layout == "channels_first")
    back = tokens_to_grid(skip_tokens=0, layout=way.layout)  # inside a lambda: say the layout
    roundtrip = way.make(reshape_transform=lambda a: back(to_tokens(a))).explain(images)
    np.testing.assert_allclose(roundtrip.saliency, plain.saliency, atol=1e-5)
    np.testing.assert_allclose(roundtrip.group_scores, plain.group_scores, atol=1e-6)
    with pytest.raises(TargetLayerError, match=r"tokens_to_grid\(\)"):
        way.make(reshape_transform=to_tokens).explain(images)  # tokens, no grid


def test_kmeans_grouping_gives_the_torch_maps(way, blob_net, photos) -> None:
    expected = TorchGroupCAM(blob_net, "6", groups=8, grouping="kmeans").explain(
        _torch_images(photos)
    )
    found = way.make(grouping="kmeans").explain(way.images(photos))
    np.testing.assert_array_equal(found.skipped_groups, expected.skipped_groups)
    np.testing.assert_allclose(found.group_scores, expected.group_scores, atol=1e-5)
    np.testing.assert_allclose(found.saliency, expected.saliency, atol=1e-4)
    contiguous = way.make().explain(way.images(photos))
    assert not np.allclose(found.group_scores, contiguous.group_scores, atol=1e-3)


@pytest.mark.parametrize(
    ("method", "options"), [("grad-cam", {}), ("score-cam", {}), ("rise", {"masks": 64})]
)
def test_comparison_methods_give_the_torch_maps(way, blob_net, photos, method, options) -> None:
    found = run_method(method, way.make(), way.images(photos), **options)
    expected = run_method(method, TorchGroupCAM(blob_net, "6"), _torch_images(photos), **options)
    np.testing.assert_array_equal(found.targets, expected.targets)
    np.testing.assert_array_equal(found.forward_passes, expected.forward_passes)
    np.testing.assert_allclose(found.saliency, expected.saliency, atol=1e-4)


def test_metrics_give_the_torch_curves(way, blob_net, photos) -> None:
    cam = way.make()
    images = way.images(photos)
    saliency = cam(images)
    reference = TorchGroupCAM(blob_net, "6")
    for metric in (metrics.insertion, metrics.deletion):
        found = metric(cam, images, saliency, step=64)
        expected = metric(reference, _torch_images(photos), saliency, step=64)
        np.testing.assert_array_equal(found.targets, expected.targets)
        np.testing.assert_allclose(found.curves, expected.curves, atol=1e-5)
        assert found.curves.shape == (4, 64 * 64 // 64 + 1)
    drop = metrics.average_drop_and_increase(cam, images, saliency)
    reference_drop = metrics.average_drop_and_increase(reference, _torch_images(photos), saliency)
    np.testing.assert_allclose(drop.drops, reference_drop.drops, atol=1e-5)
