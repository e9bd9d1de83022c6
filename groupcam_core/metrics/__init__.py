"""Evaluation metrics for saliency maps, run through any framework's adapter.

Causal metrics (deletion and insertion, as RISE and the Group-CAM paper ran
them; :mod:`~groupcam_core.metrics.causal`), localization metrics (the pointing
game and its energy-based variant; :mod:`~groupcam_core.metrics.pointing`),
faithfulness by confidence (average drop and increase in confidence, as in
Grad-CAM++ and Score-CAM; :mod:`~groupcam_core.metrics.confidence`) and the
model-randomization sanity check (Adebayo et al., 2018;
:mod:`~groupcam_core.metrics.sanity`).

Inputs are built on the host in numpy; models run through the
:class:`~groupcam_core.protocol.Backend` protocol, in chunks of ``batch_size``
rows over all images and steps together. Every function that runs a model
accepts either a backend or a groupcam explainer (``groupcam_torch.GroupCAM``,
``groupcam_keras.GroupCAM``, ``groupcam_jax.GroupCAM``); the explainer's model
is then prepared as for an explanation (evaluation mode) while the metric runs.

Saliency maps are ``(B, H, W)`` arrays matching the spatial size of the batch.
Only the pointing-game variants and :func:`rank_correlations` need no model.
"""

from ..kit.explainer import as_backend
from .causal import DEFAULT_STEPS, CausalCurves, curve_auc, deletion, insertion
from .confidence import ConfidenceChange, average_drop_and_increase
from .pointing import EnergyPointingGame, PointingGame, energy_pointing_game, pointing_game
from .sanity import RandomizationCorrelations, rank_correlations, sanity_check

__all__ = [
    "DEFAULT_STEPS",
    "CausalCurves",
    "ConfidenceChange",
    "EnergyPointingGame",
    "PointingGame",
    "RandomizationCorrelations",
    "as_backend",
    "average_drop_and_increase",
    "curve_auc",
    "deletion",
    "energy_pointing_game",
    "insertion",
    "pointing_game",
    "rank_correlations",
    "sanity_check",
]
