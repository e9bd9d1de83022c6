"""Per-image targets, detection boxes and embeddings in every way in, with real autodiff.

The detector is the blob net ending in a dense detection head (``_support.detection``,
``(B, 3 boxes, 4 + 4 classes)``), built in each way's framework; the embedding network
is the blob net itself (its logits as embeddings). Each score is checked against an
explicit numpy computation on torch's logits, and per-image lists against explaining
each image alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _support.detection import BOXES, dense_head, dense_head_numpy

from groupcam_core import ClassLogit, ClassProbability, DetectionBox, EmbeddingSimilarity


def iou(box: np.ndarray, other: tuple[float, ...]) -> float:
    width = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    height = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1])
    return width * height / (union - width * height)


@pytest.fixture(scope="module")
def logits(blob_net, photos) -> np.ndarray:
    with torch.no_grad():
        return blob_net(torch.from_numpy(photos.transpose(0, 3, 1, 2).copy())).double().numpy()


def test_a_per_image_list_equals_explaining_each_image_alone(way, photos) -> None:
    images = way.images(photos)
    cam = way.make()
    targets = [1, ClassLogit(2), ClassProbability(0), 1]
    together = cam.explain(images, targets=targets)
    for index, target in enumerate(targets):
        alone = cam.explain(images[index : index + 1], targets=target)
        np.testing.assert_allclose(together.saliency[index], alone.saliency[0], atol=1e-5)
        np.testing.assert_allclose(together.target_scores[index], alone.target_scores[0], rtol=1e-5)
    assert list(together.targets) == [1, -1, -1, 1]
    assert together.objective == "per-image"
    assert not together.degenerate.any()


def test_a_detector_is_explained_for_one_box(way, photos, logits) -> None:
    box, label = (14.0, 16.0, 50.0, 48.0), 2  # IoU 0.40 and 0.42 with two boxes, 0.15 with one
    target = DetectionBox(box, label, iou_threshold=0.3)
    images = way.images(photos)
    explanation = way.make(way.model("detector")).explain(images, targets=target)
    detections = dense_head_numpy(logits)
    weights = np.array([iou(row, box) for row in BOXES])
    weights = np.where(weights >= 0.3, weights, 0.0)
    assert (weights > 0).sum() == 2  # two of the three boxes count
    expected = (weights[None] * detections[:, :, 4 + label]).sum(axis=1)
    np.testing.assert_allclose(explanation.target_scores, expected, rtol=1e-5)
    assert not explanation.degenerate.any()
    assert explanation.saliency.std(axis=(1, 2)).min() > 0.01  # a map, not a constant
    # The head inside the model or inside the target function: the same maps (Keras' own
    # sigmoid in the model differs from the array API's 1 / (1 + exp(-x)) by float32 ulps).
    composed = way.make().explain(images, targets=lambda out: target(dense_head(out)))
    np.testing.assert_allclose(explanation.saliency, composed.saliency, atol=1e-4)


def test_embedding_similarity_shared_and_per_image(way, photos, logits) -> None:
    images = way.images(photos)
    cam = way.make()
    rng = np.random.default_rng(0)
    shared = rng.normal(size=4)
    explanation = cam.explain(images, targets=EmbeddingSimilarity(shared))
    cosine = logits @ shared / np.linalg.norm(logits, axis=1) / np.linalg.norm(shared)
    np.testing.assert_allclose(explanation.target_scores, cosine, rtol=1e-5)
    references = rng.normal(size=(len(photos), 4))
    per_image = cam.explain(images, targets=EmbeddingSimilarity(references))
    expected = (logits * references).sum(axis=1) / (
        np.linalg.norm(logits, axis=1) * np.linalg.norm(references, axis=1)
    )
    np.testing.assert_allclose(per_image.target_scores, expected, rtol=1e-5)
    last = cam.explain(images[-1:], targets=EmbeddingSimilarity(references[-1]))
    np.testing.assert_allclose(per_image.saliency[-1], last.saliency[0], atol=1e-5)


def test_targets_that_cannot_be_scored_are_target_errors(way, photos) -> None:
    """An index beyond the outputs (JAX would clamp it: a silent wrong map) and scores
    computed outside the framework (they cannot be differentiated) are refused by name."""
    from groupcam_core import RegressionOutput, TargetError

    images = way.images(photos)
    cam = way.make()
    for target in (ClassLogit(4), ClassProbability(9), RegressionOutput(4)):
        with pytest.raises(TargetError, match=r"is out of range for outputs of shape \(4, 4\)"):
            cam.explain(images, targets=target)

    def numpy_scores(outputs):
        return np.asarray(outputs)[:, 1]

    with pytest.raises(TargetError, match=r"returned a numpy\.ndarray; it must compute its scores"):
        cam.explain(images, targets=numpy_scores)
