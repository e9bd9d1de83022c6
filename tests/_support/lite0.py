"""The torch EfficientNet-Lite0 on the four sample photos: the reference for its ports."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def torch_reference() -> tuple[np.ndarray, np.ndarray]:
    """``(images, logits)``: the sample photos as ``(4, 224, 224, 3)`` float32,
    normalised as ``groupcam_torch.pretrained.photos_to_batch`` does, and the
    torch model's ``(4, 1000)`` logits for them.
    """
    import torch

    from groupcam_core.samples import load_sample_photos
    from groupcam_torch.pretrained import efficientnet_lite0, photos_to_batch

    batch = photos_to_batch(list(load_sample_photos().values()))
    with torch.inference_mode():
        logits = efficientnet_lite0()(batch).numpy()
    images = np.ascontiguousarray(batch.numpy().transpose(0, 2, 3, 1))
    images.setflags(write=False)
    logits.setflags(write=False)
    return images, logits
