"""A small CNN for the synthetic localization benchmark (``groupcam_core.synthetic``).

The network classifies the shape of the single object in a 64 x 64 synthetic
scene. It takes ``(N, 3, 64, 64)`` float32 images with values in ``[0, 1]``,
exactly as :func:`groupcam_core.synthetic.make_scenes` produces them after
:func:`groupcam_core.synthetic.channels_first`. The model subtracts each image's
mean color itself (the scenes' background colors vary widely); no other
normalization.

Layout at 64 x 64 input::

    (x - per-image, per-channel mean)
    features.block1   conv 2x2 stride 2,   3 -> 32    32 x 32
    features.block2   conv 3x3 stride 1,  32 -> 32    32 x 32
    features.block3   conv 2x2 stride 2,  32 -> 64    16 x 16
    features.block4   conv 3x3 stride 1,  64 -> 64    16 x 16
    features.block5   conv 2x2 stride 2,  64 -> 128    8 x 8
    features.block6   conv 3x3 stride 1, 128 -> 128    8 x 8   <- TARGET_LAYER
    pool              global average pooling
    head              linear 128 -> 5

Each block is conv (no bias), BatchNorm and ReLU. The Group-CAM target layer is
``TARGET_LAYER = "features.block6"``: the last block before pooling, an 8 x 8
feature map with 128 channels at 64 x 64 input.

Downsampling uses non-overlapping 2 x 2 stride-2 convolutions, so feature cell
``j`` covers input pixels ``8j .. 8j + 7`` and is centered where Group-CAM's
half-pixel-center upsampling puts it. (The common 3 x 3 stride-2 convolution
with padding 1 centers cell ``j`` on pixel ``8j`` instead: three of them shift
every map by 3.5 pixels down and right, which a pointing game notices.)

>>> from groupcam_torch import GroupCAM                         # doctest: +SKIP
>>> model = load_synthetic_cnn()                                # doctest: +SKIP
>>> maps = GroupCAM(model, target_layer=TARGET_LAYER, groups=16)(x)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "NUM_CLASSES",
    "TARGET_LAYER",
    "WEIGHTS_PATH",
    "SyntheticCNN",
    "load_synthetic_cnn",
]

#: Number of shape classes (``groupcam_core.synthetic.SYNTHETIC_CLASSES``).
NUM_CLASSES: int = 5

#: Dotted name of the Group-CAM target layer: the last block before pooling (8 x 8 x 128).
TARGET_LAYER: str = "features.block6"

#: The trained weights (a ``state_dict``) written by ``evaluation/train_synthetic.py``.
WEIGHTS_PATH: Path = Path(__file__).resolve().with_name("synthetic_cnn.pt")

# (in channels, out channels, stride) of each block; stride 2 blocks use 2 x 2 kernels.
_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (3, 32, 2),
    (32, 32, 1),
    (32, 64, 2),
    (64, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
)


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    kernel, padding = (2, 0) if stride == 2 else (3, 1)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SyntheticCNN(nn.Module):
    """Per-image color centring, six conv-BN-ReLU blocks, global average pooling, linear head.

    Parameters
    ----------
    num_classes
        Number of output logits.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict((f"block{i + 1}", _block(*spec)) for i, spec in enumerate(_BLOCKS))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(_BLOCKS[-1][1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` images in ``[0, 1]`` to ``(N, num_classes)`` logits."""
        x = x - x.mean(dim=(2, 3), keepdim=True)  # per-image color centring
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def load_synthetic_cnn(path: str | Path | None = None) -> SyntheticCNN:
    """Build :class:`SyntheticCNN` and load the trained weights, on the CPU, in eval mode.

    Parameters
    ----------
    path
        A ``state_dict`` file; defaults to :data:`WEIGHTS_PATH`.

    Returns
    -------
    SyntheticCNN
        The model in evaluation mode.
    """
    model = SyntheticCNN()
    state = torch.load(path or WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
