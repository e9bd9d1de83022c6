"""groupcam_core: the framework-neutral heart of groupcam.

Grouping, denoising, resampling, blurring, masked batches, merging and results
for Group-CAM (Zhang, Rao and Yang, 2021). Framework adapters live in
``groupcam_torch`` (and, later, ``groupcam_keras`` and ``groupcam_jax``); this
package imports none of those frameworks.
"""

from ._version import __version__
from .config import VARIANTS, GroupCAMConfig, make_config
from .engine import explain
from .errors import (
    BackendError,
    ConfigError,
    GroupCAMError,
    InputError,
    LayerNotFoundError,
    ModelOutputError,
    TargetError,
    TargetLayerError,
)
from .protocol import Backend, GradientPass, Layout
from .result import Explanation

__all__ = [
    "VARIANTS",
    "Backend",
    "BackendError",
    "ConfigError",
    "Explanation",
    "GradientPass",
    "GroupCAMConfig",
    "GroupCAMError",
    "InputError",
    "LayerNotFoundError",
    "Layout",
    "ModelOutputError",
    "TargetError",
    "TargetLayerError",
    "__version__",
    "explain",
    "make_config",
]
