"""groupcam_keras: Group-CAM for Keras 3 models (TensorFlow, JAX and PyTorch backends).

>>> from groupcam_keras import GroupCAM
>>> maps = GroupCAM(model, target_layer="conv5_block3_out")(images)   # doctest: +SKIP
"""

import keras

from groupcam_core import Explanation, GroupCAMConfig
from groupcam_core.protocol import Layout

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


def _input_layout(self: GroupCAM) -> Layout:
    """``keras.config.image_data_format()`` when asked: the layout Keras models take."""
    layout: Layout = keras.config.image_data_format()
    return layout


# GroupCAM.input_layout (see ExplainerBase.input_layout); it may move into cam.py's class.
if "input_layout" not in vars(GroupCAM):
    GroupCAM.input_layout = property(_input_layout)  # type: ignore[assignment]
