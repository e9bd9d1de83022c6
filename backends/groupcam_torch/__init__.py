"""groupcam_torch: Group-CAM for PyTorch models.

>>> from groupcam_torch import GroupCAM
>>> maps = GroupCAM(model, target_layer="layer4")(images)   # doctest: +SKIP
"""

from groupcam_core import Explanation, GroupCAMConfig

from ._backend import DEFAULT_BATCH_SIZES, TorchBackend, select_output
from .cam import GroupCAM, evaluation_mode
from .randomization import cascading_randomization, randomizable_layers

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Explanation",
    "GroupCAM",
    "GroupCAMConfig",
    "TorchBackend",
    "cascading_randomization",
    "evaluation_mode",
    "randomizable_layers",
    "select_output",
]
