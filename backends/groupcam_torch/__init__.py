"""groupcam_torch: Group-CAM for PyTorch models.

>>> from groupcam_torch import GroupCAM
>>> maps = GroupCAM(model, target_layer="layer4")(images)   # doctest: +SKIP
"""

from groupcam_core import Explanation, GroupCAMConfig

from ._backend import DEFAULT_BATCH_SIZES, TorchBackend, select_output
from .cam import GroupCAM, evaluation_mode

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Explanation",
    "GroupCAM",
    "GroupCAMConfig",
    "TorchBackend",
    "evaluation_mode",
    "select_output",
]
