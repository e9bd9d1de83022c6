"""groupcam_keras: Group-CAM for Keras 3 models (TensorFlow, JAX and PyTorch backends).

>>> from groupcam_keras import GroupCAM
>>> maps = GroupCAM(model, target_layer="conv5_block3_out")(images)   # doctest: +SKIP

The modules are those of every adapter: ``cam`` (``GroupCAM``), ``backend``
(the core's backend protocol, one class per Keras backend), ``layers``
(finding and patching target layers), ``gradients`` (step 1's gradient pass on
each Keras backend), ``fast`` (``fast=True`` and mixed precision); and
``compiled`` (one compiled forward per model, shared by its explainers).
"""

from groupcam_core import Explanation, GroupCAMConfig

from .backend import DEFAULT_BATCH_SIZES, KerasBackend, make_backend, select_output
from .cam import GroupCAM
from .fast import fast_mode

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Explanation",
    "GroupCAM",
    "GroupCAMConfig",
    "KerasBackend",
    "fast_mode",
    "make_backend",
    "select_output",
]
