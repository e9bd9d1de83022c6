"""groupcam_core: the framework-neutral heart of groupcam.

Grouping, denoising, resampling, blurring, masked batches, merging and results
for Group-CAM (Zhang, Rao and Yang, 2021); the comparison methods Grad-CAM,
Score-CAM and RISE (:mod:`groupcam_core.methods`); faithfulness and
localization metrics (:mod:`groupcam_core.metrics`); synthetic scenes with
ground truth (:mod:`groupcam_core.synthetic`); agreement measures between maps
(:mod:`groupcam_core.agreement`); overlays (:mod:`groupcam_core.visualization`).
The framework adapters ``groupcam_torch``, ``groupcam_keras`` and
``groupcam_jax`` build on the backend protocol (:mod:`groupcam_core.protocol`)
and the adapter kit (:mod:`groupcam_core.kit`); the application ``groupcam``
(the command line, jobs, Ray, the model zoo) builds on them. This package
imports none of those frameworks and nothing of the adapters or the application.
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
    LayerNotConnectedError,
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
from .protocol import Backend, FastBackend, GradientPass, Layout, Objective
from .result import Explanation
from .targets import (
    ClassLogit,
    ClassProbability,
    DetectionBox,
    EmbeddingSimilarity,
    RegressionOutput,
    SegmentationClass,
)
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
    "DetectionBox",
    "EmbeddingSimilarity",
    "Explanation",
    "FastBackend",
    "GradientPass",
    "GroupCAMConfig",
    "GroupCAMError",
    "GroupCAMWarning",
    "InputError",
    "LayerNotConnectedError",
    "LayerNotFoundError",
    "Layout",
    "MethodResult",
    "ModelOutputError",
    "Objective",
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
