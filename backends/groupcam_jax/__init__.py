"""groupcam_jax: Group-CAM for JAX models (Flax linen, Flax NNX, plain functions).

>>> from groupcam_jax import GroupCAM
>>> maps = GroupCAM.from_linen(module, variables, target_layer="stage4")(images)  # doctest: +SKIP

The modules are those of every adapter: ``cam`` (``GroupCAM``), ``backend``
(the core's backend protocol), ``layers`` (recording layer calls for the
default layer), ``gradients`` (step 1's gradient pass), ``fast``
(``fast=True``); and ``models`` (the ways into a JAX model: linen, NNX, a pair
of functions).
"""

from groupcam_core import Explanation, GroupCAMConfig

from .backend import DEFAULT_BATCH_SIZES, JaxBackend
from .cam import GroupCAM
from .fast import fast_mode
from .gradients import gradient_by_perturbation
from .models import FunctionPair, LayerCallback, LinenModel, ModelWayIn, NnxModel

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Explanation",
    "FunctionPair",
    "GroupCAM",
    "GroupCAMConfig",
    "JaxBackend",
    "LayerCallback",
    "LinenModel",
    "ModelWayIn",
    "NnxModel",
    "fast_mode",
    "gradient_by_perturbation",
]
