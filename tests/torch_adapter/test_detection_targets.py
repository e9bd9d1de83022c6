"""Detection targets on torch detectors: a dense head ``(B, N, 4 + classes)`` and a
torchvision-style model that returns one dict of ``boxes``, ``scores`` and ``labels`` per
image. Scores are checked against an explicit loop over the model's own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from groupcam_core import DetectionBox, ModelOutputError
from groupcam_torch import GroupCAM

ANCHORS = torch.tensor(
    [
        [4.0, 4.0, 20.0, 20.0],
        [12.0, 10.0, 30.0, 28.0],
        [0.0, 16.0, 16.0, 32.0],
        [8.0, 2.0, 28.0, 14.0],
    ]
)


class DenseDetector(nn.Module):
    """Conv features; per anchor, box offsets from the whole image and class scores from the
    features inside the anchor (a mean over its region, as RoI pooling does), with weights
    that favor strong features: sharp content inside a box raises its scores."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU()
        )
        self.boxes = nn.Linear(12, len(ANCHORS) * 4)
        self.scores = nn.Linear(12, classes)
        with torch.no_grad():
            self.scores.weight.abs_()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        offsets = torch.tanh(self.boxes(features.mean(dim=(2, 3)))).view(-1, len(ANCHORS), 4)
        regions = torch.stack(
            [features[:, :, y1:y2, x1:x2].mean(dim=(2, 3)) for x1, y1, x2, y2 in ANCHORS.int()],
            dim=1,
        )
        scores = torch.sigmoid(self.scores(regions))
        return torch.cat([ANCHORS[None] + 2.0 * offsets, scores], dim=-1)


class DictDetector(nn.Module):
    """The dense detector's outputs as torchvision's detectors give them: a dict per image."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = DenseDetector()

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        found = self.dense(x)
        scores, labels = found[..., 4:].max(dim=-1)
        return [
            {"boxes": image[:, :4], "scores": score, "labels": label}
            for image, score, label in zip(found, scores, labels, strict=True)
        ]


def iou(a: np.ndarray, b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union


def expected_dense(outputs: np.ndarray, box, label: int, threshold: float) -> np.ndarray:
    totals = []
    for image in outputs:
        total = 0.0
        for row in image:
            overlap = iou(row[:4], box)
            if overlap >= threshold:
                total += overlap * row[4 + label]
        totals.append(total)
    return np.array(totals)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


BOX, LABEL = (6.0, 5.0, 22.0, 21.0), 1


def test_a_dense_detector_is_explained_for_one_box(images) -> None:
    model = DenseDetector().eval()
    cam = GroupCAM(model, target_layer="features.2", groups=6)
    explanation = cam.explain(images, targets=DetectionBox(BOX, LABEL, iou_threshold=0.2))
    with torch.no_grad():
        outputs = model(images).double().numpy()
    expected = expected_dense(outputs, BOX, LABEL, 0.2)
    assert (expected > 0).all()
    np.testing.assert_allclose(explanation.target_scores, expected, rtol=1e-5)
    assert not explanation.degenerate.any()
    assert explanation.objective == "DetectionBox"


def test_one_box_per_image_equals_each_image_alone(images) -> None:
    cam = GroupCAM(DenseDetector().eval(), target_layer="features.2", groups=6)
    targets = [DetectionBox(BOX, LABEL), DetectionBox((10, 8, 30, 30), 0), DetectionBox(BOX, LABEL)]
    together = cam.explain(images, targets=targets)
    for index, target in enumerate(targets):
        alone = cam.explain(images[index : index + 1], targets=target)
        np.testing.assert_allclose(together.saliency[index], alone.saliency[0], atol=1e-6)


def test_a_torchvision_style_detector_counts_the_boxes_of_its_label(images) -> None:
    model = DictDetector().eval()
    cam = GroupCAM(model, target_layer="dense.features.2", groups=6)
    with torch.no_grad():
        found = model(images)
    label = int(found[0]["labels"][0])  # the class of the anchor that overlaps BOX most
    explanation = cam.explain(images, targets=DetectionBox(BOX, label, iou_threshold=0.1))
    expected = []
    for image in found:
        total = 0.0
        rows = zip(image["boxes"], image["scores"], image["labels"], strict=True)
        for box, score, predicted in rows:
            overlap = iou(box.double().numpy(), BOX)
            if overlap >= 0.1 and int(predicted) == label:
                total += overlap * float(score)
        expected.append(total)
    np.testing.assert_allclose(explanation.target_scores, expected, rtol=1e-5)
    assert sum(value > 0 for value in expected) >= 1
    with pytest.raises(ModelOutputError, match=r"returned detections .* targets=DetectionBox"):
        cam.explain(images)  # class targets on a detector: an error that says what to do
