"""Models and preprocessing functions for ``groupcam explain MODULE:CALLABLE`` tests.

Each function imports its framework when called, so this module imports in any
test session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Input size of the blob-net tests.
SIZE = 32


def torch_blob_net() -> Any:
    """The trained torch blob net (channels-first, 4 classes)."""
    from _support.torch_models import trained_blob_net

    return trained_blob_net()


def keras_blob_net() -> Any:
    """The blob net ported to Keras, same weights."""
    from _support.keras_models import keras_blob_net as port

    return port(torch_blob_net())


def linen_blob_net() -> tuple[Any, Any]:
    """The blob net in Flax linen, as ``(module, variables)``."""
    from _support.jax_models import LinenBlobNet, linen_blob_variables

    return LinenBlobNet(), linen_blob_variables(torch_blob_net())


def nnx_blob_net() -> Any:
    """The blob net in Flax NNX."""
    from _support.jax_models import nnx_blob_net as port

    return port(torch_blob_net())


def blob_input(image: np.ndarray) -> np.ndarray:
    """A ``--preprocess`` function: the image squeezed to 32 x 32, channels-first, [-1, 1]."""
    from PIL import Image

    small = np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR), np.float32)
    return ((small / 127.5) - 1.0).transpose(2, 0, 1)


def reference_input(path: str, size: int = SIZE, how: str = "imagenet") -> np.ndarray:
    """What ``groupcam explain`` feeds the model for ``path``: ``(1, size, size, 3)`` float32."""
    from groupcam.jobs.images import decode_image, fit_to_size, normalize

    return normalize(fit_to_size(decode_image(path), (size, size)).pixels, how)[None]


def torch_lite0_map(path: str, size: int = 64, groups: int = 8) -> np.ndarray:
    """The map ``groupcam explain efficientnet-lite0`` gives ``path`` in torch, as the reference."""
    import torch

    from groupcam.zoo.lite0_torch import efficientnet_lite0
    from groupcam_torch import GroupCAM

    x = reference_input(path, size, "inception").transpose(0, 3, 1, 2).copy()
    return GroupCAM(efficientnet_lite0(), groups=groups)(torch.from_numpy(x))[0]
