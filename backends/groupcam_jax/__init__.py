"""groupcam_jax: Group-CAM for JAX models (Flax linen, Flax NNX, plain functions).

>>> from groupcam_jax import GroupCAM
>>> maps = GroupCAM.from_linen(module, variables, target_layer="stage4")(images)  # doctest: +SKIP
"""

from groupcam_core import Explanation, GroupCAMConfig

from ._backend import DEFAULT_BATCH_SIZE, JaxBackend
from ._models import FunctionPair, LayerCallback, LinenModel, ModelWayIn, NnxModel
from .cam import GroupCAM
from .gradient import gradient_by_perturbation

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Explanation",
    "FunctionPair",
    "GroupCAM",
    "GroupCAMConfig",
    "JaxBackend",
    "LayerCallback",
    "LinenModel",
    "ModelWayIn",
    "NnxModel",
    "gradient_by_perturbation",
]
