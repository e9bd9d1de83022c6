"""groupcam_torch: Group-CAM for PyTorch models.

>>> from groupcam_torch import GroupCAM
>>> maps = GroupCAM(model, target_layer="layer4")(images)   # doctest: +SKIP

The modules are those of every adapter: ``cam`` (``GroupCAM``), ``backend``
(the core's backend protocol), ``layers`` (finding target layers),
``gradients`` (step 1's gradient pass), ``fast`` (``fast=True`` and autocast);
and ``randomization`` (cascading randomization for the sanity check).
"""

from groupcam_core import Explanation, GroupCAMConfig

from .backend import DEFAULT_BATCH_SIZES, TorchBackend, select_output
from .cam import GroupCAM, evaluation_mode
from .fast import fast_mode
from .randomization import cascading_randomization, randomizable_layers

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Explanation",
    "GroupCAM",
    "GroupCAMConfig",
    "TorchBackend",
    "cascading_randomization",
    "evaluation_mode",
    "fast_mode",
    "randomizable_layers",
    "select_output",
]
