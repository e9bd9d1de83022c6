"""groupcam_core: the framework-neutral heart of groupcam.

Grouping, denoising, resampling, blurring, masked batches, merging and results
for Group-CAM (Zhang, Rao and Yang, 2021); the comparison methods Grad-CAM,
Score-CAM and RISE (:mod:`groupcam_core.methods`); faithfulness and
localization metrics (:mod:`groupcam_core.metrics`); synthetic scenes with
ground truth (:mod:`groupcam_core.synthetic`). Framework adapters live in
``groupcam_torch``, ``groupcam_keras`` and ``groupcam_jax``; this package
imports none of those frameworks.
"""

from ._version import __version__
from .config import VARIANTS, GroupCAMConfig, make_config
from .engine import explain_group_cam
from .errors import (
    BackendError,
    ConfigError,
    GroupCAMError,
    GroupCAMWarning,
    InputError,
    LayerNotFoundError,
    ModelOutputError,
    TargetError,
    TargetLayerError,
)
from .methods import (
    METHODS,
    MethodResult,
    explain_with,
    grad_cam,
    rise,
    rise_masks,
    run_method,
    score_cam,
)
from .metrics import (
    CausalCurves,
    ConfidenceChange,
    EnergyPointingGame,
    PointingGame,
    RandomizationCorrelations,
    average_drop_and_increase,
    curve_auc,
    deletion,
    energy_pointing_game,
    insertion,
    pointing_game,
    rank_correlations,
    sanity_check,
)
from .protocol import Backend, GradientPass, Layout
from .result import Explanation
from .targets import ClassLogit, ClassProbability, RegressionOutput, SegmentationClass
from .transforms import tokens_to_grid

__all__ = [
    "METHODS",
    "VARIANTS",
    "Backend",
    "BackendError",
    "ClassLogit",
    "ClassProbability",
    "CausalCurves",
    "ConfidenceChange",
    "EnergyPointingGame",
    "ConfigError",
    "Explanation",
    "GradientPass",
    "GroupCAMConfig",
    "GroupCAMError",
    "GroupCAMWarning",
    "InputError",
    "LayerNotFoundError",
    "Layout",
    "MethodResult",
    "ModelOutputError",
    "PointingGame",
    "RegressionOutput",
    "SegmentationClass",
    "RandomizationCorrelations",
    "TargetError",
    "TargetLayerError",
    "__version__",
    "average_drop_and_increase",
    "curve_auc",
    "deletion",
    "energy_pointing_game",
    "explain_group_cam",
    "explain_with",
    "grad_cam",
    "insertion",
    "make_config",
    "pointing_game",
    "rank_correlations",
    "rise",
    "rise_masks",
    "run_method",
    "sanity_check",
    "score_cam",
    "tokens_to_grid",
]
