"""The torch EfficientNet-Lite0 on the four sample photos: the reference for its ports."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: The settings of the cross-framework map tests: 8 groups (10 passes per image) on
#: the head's ReLU6, the four sample photos at 224 x 224, chunks of 20 rows.
MAP_SETTINGS = {"groups": 8, "batch_size": 20}


@lru_cache(maxsize=1)
def torch_model() -> Any:
    """The torch EfficientNet-Lite0 with its ImageNet weights, in eval mode (built once)."""
    import torch

    from groupcam.zoo.lite0_torch import efficientnet_lite0

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return efficientnet_lite0()


@lru_cache(maxsize=1)
def torch_reference() -> tuple[np.ndarray, np.ndarray]:
    """``(images, logits)``: the sample photos as ``(4, 224, 224, 3)`` float32,
    normalized as ``groupcam.zoo.lite0_torch.photos_to_batch`` does, and the
    torch model's ``(4, 1000)`` logits for them.
    """
    import torch

    from groupcam.samples import load_sample_photos
    from groupcam.zoo.lite0_torch import photos_to_batch

    batch = photos_to_batch(list(load_sample_photos().values()))
    model = torch_model()  # built outside inference mode: its weights must stay normal tensors
    with torch.inference_mode():
        logits = model(batch).numpy()
    images = np.ascontiguousarray(batch.numpy().transpose(0, 2, 3, 1))
    images.setflags(write=False)
    logits.setflags(write=False)
    return images, logits


def torch_cam(variant: str) -> Any:
    """``groupcam_torch.GroupCAM`` on the torch model's head ReLU6 (``_swish``), MAP_SETTINGS."""
    from groupcam_torch import GroupCAM

    return GroupCAM(torch_model(), "_swish", variant=variant, **MAP_SETTINGS)


#: Tolerances of the cross-framework map tests: a few times above what was measured
#: (the test modules' docstrings give the figures).
MAX_DIFFERENCE = 2e-5
MEAN_DIFFERENCE = 2e-6
MIN_SPEARMAN = 0.99999
MIN_TOP_IOU = 0.999
PROBABILITY_DIFFERENCE = 1e-5


def assert_agrees_with_torch(result: Any, way: str, variant: str) -> None:
    """The maps of ``way`` in a ``groupcam.compare`` result agree with ``"torch"``'s."""
    found = result.agreement(way)
    worst = found.summary()
    print(way, variant, worst)  # shown with -s: the numbers the docstrings quote
    assert result.runs[way].layout == "channels_last"
    assert found.same_target.all()
    np.testing.assert_array_equal(
        result.runs[way].explanation.skipped_groups, result.runs["torch"].explanation.skipped_groups
    )
    assert worst["max_abs_difference"] <= MAX_DIFFERENCE
    assert worst["mean_abs_difference"] <= MEAN_DIFFERENCE
    assert worst["min_spearman"] >= MIN_SPEARMAN
    assert worst["min_top_iou"] >= MIN_TOP_IOU
    assert worst["max_probability_difference"] <= PROBABILITY_DIFFERENCE
