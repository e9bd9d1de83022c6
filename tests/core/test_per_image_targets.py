"""Per-image targets, DetectionBox and EmbeddingSimilarity in the core (numpy, no framework).

Each score is checked against an explicit numpy function that computes what the
docstrings say; per-image lists against explaining each image alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend

from groupcam_core import (
    ClassLogit,
    DetectionBox,
    EmbeddingSimilarity,
    ModelOutputError,
    TargetError,
    explain_group_cam,
    make_config,
    run_method,
)
from groupcam_core.per_image import target_groups
from groupcam_core.protocol import GradientPass
from groupcam_core.targets import box_iou


class ClassLogitBackend(FakeNumpyBackend):
    """The fake model, differentiating a ClassLogit target function as it does a class."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gradient_batches: list[int] = []

    def gradient_pass(self, x, objective):
        self.gradient_batches.append(len(x))
        if objective.kind == "class":
            return super().gradient_pass(x, objective)
        category = objective.function.category
        result = super().gradient_pass(x, lambda outputs: np.full(len(outputs), category))
        assert objective(result.outputs) is None
        return GradientPass(result.activations, result.gradients, result.outputs, None)


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(count, 3, 32, 32))


CONFIG = make_config("paper", groups=4)


def test_a_per_image_list_equals_explaining_each_image_alone() -> None:
    backend = ClassLogitBackend(channels=10)
    x = images(5)
    targets = [1, ClassLogit(2), 3, ClassLogit(2), ClassLogit(0)]
    together = explain_group_cam(backend, x, targets=targets, config=CONFIG, batch_size=6)
    for index, target in enumerate(targets):
        alone = explain_group_cam(
            backend, x[index : index + 1], targets=target, config=CONFIG, batch_size=6
        )
        np.testing.assert_allclose(together.saliency[index], alone.saliency[0], atol=1e-6)
        np.testing.assert_allclose(together.group_scores[index], alone.group_scores[0], atol=1e-7)
        assert together.targets[index] == alone.targets[0]
        np.testing.assert_equal(together.target_probabilities[index], alone.target_probabilities[0])
        np.testing.assert_allclose(together.target_scores[index], alone.target_scores[0])
    assert list(together.targets) == [1, -1, 3, -1, -1]
    assert together.objective == "per-image"


def test_images_that_share_a_target_share_their_passes() -> None:
    """Equal target functions form one group: one gradient pass per group, not per image."""
    backend = ClassLogitBackend(channels=10)
    x = images(5, seed=1)
    explain_group_cam(
        backend, x, targets=[ClassLogit(2), 4, ClassLogit(2), 0, ClassLogit(2)], config=CONFIG
    )
    assert sorted(backend.gradient_batches) == [2, 3]  # the classes, then the three ClassLogit(2)
    backend.gradient_batches.clear()
    same = explain_group_cam(backend, x, targets=[ClassLogit(1)] * 5, config=CONFIG)
    assert backend.gradient_batches == [5]  # one group: the batch as it is
    assert same.objective == "ClassLogit"


def test_grouping_and_its_errors() -> None:
    def scorer(outputs):
        return outputs[:, 0]

    groups = target_groups([scorer, 3, ClassLogit(1), scorer, 7, ClassLogit(1)], 6)
    assert [(group.images, group.targets) for group in groups] == [
        ((0, 3), scorer),
        ((1, 4), [3, 7]),
        ((2, 5), ClassLogit(1)),
    ]
    assert target_groups([1, 2, 3], 3) is None  # plain class targets keep their own path
    assert target_groups(scorer, 3) is None
    with pytest.raises(TargetError, match="got 2 targets for a batch of 3"):
        target_groups([scorer, 1], 3)
    with pytest.raises(TargetError, match="target 1 is 'cat'; each entry"):
        target_groups([scorer, "cat"], 2)
    with pytest.raises(TargetError, match="target 0 is True"):
        target_groups([True, scorer], 2)


def test_methods_take_per_image_lists_too() -> None:
    """Grad-CAM and Score-CAM (RISE scores classes only, as ever)."""
    backend = ClassLogitBackend(channels=10)
    x = images(3, seed=2)
    targets = [ClassLogit(3), 1, ClassLogit(0)]
    for method in ("grad-cam", "score-cam"):
        together = run_method(method, backend, x, targets)
        for index, target in enumerate(targets):
            alone = run_method(method, backend, x[index : index + 1], target)
            np.testing.assert_allclose(together.saliency[index], alone.saliency[0], atol=1e-6)
            assert together.forward_passes[index] == alone.forward_passes[0]
        assert list(together.targets) == [-1, 1, -1]


# -- DetectionBox -----------------------------------------------------------------------


def iou_loop(boxes: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """IoU by the textbook formula, one box at a time."""
    found = np.zeros(boxes.shape[:-1])
    for index in np.ndindex(*boxes.shape[:-1]):
        x1, y1, x2, y2 = boxes[index]
        ix = max(0.0, min(x2, box[2]) - max(x1, box[0]))
        iy = max(0.0, min(y2, box[3]) - max(y1, box[1]))
        area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        union = area + (box[2] - box[0]) * (box[3] - box[1]) - ix * iy
        found[index] = ix * iy / union
    return found


def dense_detections(batch: int = 3, boxes: int = 6, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 24, size=(batch, boxes, 2))
    size = rng.uniform(2, 12, size=(batch, boxes, 2))
    scores = rng.uniform(size=(batch, boxes, classes))
    return np.concatenate([corner, corner + size, scores], axis=-1)


def test_box_iou_is_the_textbook_formula() -> None:
    boxes = dense_detections()[..., :4]
    box = (5.0, 6.0, 17.0, 15.0)
    np.testing.assert_allclose(box_iou(boxes, box), iou_loop(boxes, box), rtol=1e-12)
    assert box_iou(np.array([[0.0, 0.0, 0.0, 0.0]]), box)[0] == 0.0  # no area, no overlap


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5])
def test_detection_box_on_dense_outputs_is_the_documented_sum(threshold: float) -> None:
    outputs = dense_detections()
    box, label = (5.0, 6.0, 17.0, 15.0), 2
    outputs[0, 0, :4] = (6.0, 6.0, 17.0, 14.0)  # one close match
    iou = iou_loop(outputs[..., :4], box)
    expected = np.where(iou >= threshold, iou * outputs[..., 4 + label], 0.0).sum(axis=1)
    found = DetectionBox(box, label, iou_threshold=threshold)(outputs)
    np.testing.assert_allclose(found, expected, rtol=1e-12)
    assert (found > 0).any()


def test_detection_box_on_per_image_dicts_counts_its_label_only() -> None:
    outputs = dense_detections(batch=2, seed=4)
    rng = np.random.default_rng(5)
    dicts = [
        {"boxes": image[:, :4], "scores": image[:, 4], "labels": rng.integers(0, 3, len(image))}
        for image in outputs
    ]
    box, label = (4.0, 4.0, 20.0, 18.0), 1
    expected = []
    for found in dicts:
        iou = iou_loop(found["boxes"], box)
        keep = (iou >= 0.2) & (found["labels"] == label)
        expected.append(np.where(keep, iou * found["scores"], 0.0).sum())
    np.testing.assert_allclose(DetectionBox(box, label, 0.2)(dicts), expected, rtol=1e-12)


def test_detection_box_refuses_what_it_cannot_score() -> None:
    with pytest.raises(TargetError, match="x2 > x1"):
        DetectionBox((5, 5, 1, 9), 0)
    with pytest.raises(TargetError, match=r"box must be \(x1, y1, x2, y2\)"):
        DetectionBox((1, 2, 3), 0)
    with pytest.raises(TargetError, match="iou_threshold must be in"):
        DetectionBox((0, 0, 1, 1), 0, iou_threshold=1.5)
    with pytest.raises(TargetError, match="label 4 is out of range for outputs with 4 classes"):
        DetectionBox((0, 0, 1, 1), 4)(dense_detections())
    with pytest.raises(ModelOutputError, match="needs dense outputs"):
        DetectionBox((0, 0, 1, 1), 0)(np.zeros((2, 5)))
    assert DetectionBox((0, 0, 1, 1), 0) == DetectionBox([0, 0, 1, 1], 0)


# -- EmbeddingSimilarity ---------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_embedding_similarity_is_the_cosine_to_the_reference() -> None:
    rng = np.random.default_rng(0)
    outputs, reference = rng.normal(size=(4, 6)), rng.normal(size=6)
    found = EmbeddingSimilarity(reference)(outputs)
    np.testing.assert_allclose(found, [cosine(row, reference) for row in outputs], rtol=1e-12)
    per_image = rng.normal(size=(4, 6))
    rows = EmbeddingSimilarity(per_image)(outputs)
    expected = [cosine(row, ref) for row, ref in zip(outputs, per_image, strict=True)]
    np.testing.assert_allclose(rows, expected, rtol=1e-12)


def test_a_reference_per_image_explains_each_image_for_its_own() -> None:
    """One reference per image: the batch is split by image, as per-image targets are."""

    class Backend(FakeNumpyBackend):
        def gradient_pass(self, x, objective):
            # The fake model's outputs as embeddings: no closed-form gradient, so the
            # gradient pass stands in with class 0's and the test checks the scores.
            result = super().gradient_pass(x, lambda outputs: np.zeros(len(outputs), int))
            return GradientPass(result.activations, result.gradients, result.outputs, None)

    backend = Backend(channels=10)
    x = images(3, seed=3)
    references = np.random.default_rng(1).normal(size=(3, 5))
    together = explain_group_cam(backend, x, EmbeddingSimilarity(references), config=CONFIG)
    outputs = backend.head(backend.features(x))
    expected = [cosine(row, ref) for row, ref in zip(outputs, references, strict=True)]
    np.testing.assert_allclose(together.target_scores, expected, rtol=1e-6)
    for index in range(3):
        alone = explain_group_cam(
            backend, x[index : index + 1], EmbeddingSimilarity(references[index]), config=CONFIG
        )
        np.testing.assert_allclose(together.saliency[index], alone.saliency[0], atol=1e-6)
    with pytest.raises(TargetError, match="reference holds 3 embeddings for a batch of 2"):
        explain_group_cam(backend, x[:2], EmbeddingSimilarity(references), config=CONFIG)


def test_embedding_similarity_refuses_what_it_cannot_compare() -> None:
    with pytest.raises(TargetError, match="must not be all zeros"):
        EmbeddingSimilarity(np.zeros(4))
    with pytest.raises(TargetError, match="must be an embedding"):
        EmbeddingSimilarity(np.zeros((2, 2, 2)) + 1)
    with pytest.raises(ModelOutputError, match=r"embeddings of shape \(B, 4\)"):
        EmbeddingSimilarity(np.ones(4))(np.ones((2, 5)))
    with pytest.raises(TargetError, match="must be finite"):
        EmbeddingSimilarity([1.0, float("nan")])


def test_ready_made_targets_refuse_indices_beyond_the_outputs() -> None:
    from groupcam_core import RegressionOutput, SegmentationClass

    with pytest.raises(TargetError, match=r"class 7 is out of range .* \(its axis 1 has 3\)"):
        SegmentationClass(7)(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TargetError, match="its axis -1 has 3"):
        SegmentationClass(3, channel_axis=-1)(np.zeros((2, 4, 4, 3)))
    with pytest.raises(TargetError, match="output 2 is out of range"):
        RegressionOutput(2)(np.zeros((2, 2)))
    np.testing.assert_array_equal(ClassLogit(1)(np.arange(6.0).reshape(2, 3)), [1.0, 4.0])


def test_segmentation_class_takes_the_explainers_layout_unless_told() -> None:
    from groupcam_core import SegmentationClass
    from groupcam_core.targets import make_objective

    rng = np.random.default_rng(5)
    last = rng.normal(size=(2, 4, 4, 3))  # (B, H, W, classes)
    target = SegmentationClass(2)
    bound = make_objective(target, 2, "logits", "channels_last").function
    assert bound.channel_axis == -1
    assert target.channel_axis is None  # a copy is bound, the user's target is unchanged
    np.testing.assert_allclose(bound(last), last[..., 2].sum(axis=(1, 2)))
    first = np.ascontiguousarray(last.transpose(0, 3, 1, 2))
    by_first = make_objective(target, 2, "logits", "channels_first").function
    np.testing.assert_allclose(by_first(first), bound(last))
    told = SegmentationClass(2, channel_axis=1)
    assert make_objective(told, 2, "logits", "channels_last").function is told
    with pytest.raises(TargetError, match="channel_axis must be None, 1 or -1"):
        SegmentationClass(1, channel_axis=2)
    with pytest.raises(TargetError, match="channel_axis must be None, 1 or -1"):
        SegmentationClass(1, channel_axis=True)
