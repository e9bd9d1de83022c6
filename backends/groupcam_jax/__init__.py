"""groupcam_jax: Group-CAM for JAX models (Flax linen, Flax NNX, plain functions).

>>> from groupcam_jax import GroupCAM
>>> maps = GroupCAM.from_linen(module, variables, target_layer="stage4")(images)  # doctest: +SKIP
"""

from groupcam_core import Explanation, GroupCAMConfig

from ._backend import DEFAULT_BATCH_SIZE, JaxBackend
from .cam import GroupCAM

__all__ = ["DEFAULT_BATCH_SIZE", "Explanation", "GroupCAM", "GroupCAMConfig", "JaxBackend"]
