"""groupcam_keras: Group-CAM for Keras 3 models (TensorFlow, JAX and PyTorch backends).

>>> from groupcam_keras import GroupCAM
>>> maps = GroupCAM(model, target_layer="conv5_block3_out")(images)   # doctest: +SKIP
"""

from groupcam_core import Explanation, GroupCAMConfig

from ._backend import DEFAULT_BATCH_SIZE, KerasBackend, make_backend
from .cam import GroupCAM

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Explanation",
    "GroupCAM",
    "GroupCAMConfig",
    "KerasBackend",
    "make_backend",
]
