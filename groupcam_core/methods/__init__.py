"""Comparison methods on the backend protocol: Grad-CAM, Score-CAM and RISE.

Each method explains one batch through the same :class:`~groupcam_core.Backend`
as Group-CAM, so that any model an adapter serves can be explained by any of
them with one call::

    from groupcam_core.methods import explain_with, run_method

    maps = explain_with("score-cam", cam, x)            # cam: a groupcam GroupCAM
    result = run_method("rise", cam, x, masks=4000)     # maps, targets, pass counts

``explainer`` is either a backend or a groupcam explainer (``groupcam_torch.GroupCAM``
and its Keras and JAX siblings); an explainer lends its backend, target layer,
batch size and evaluation-mode handling. Masked inputs of every image stream
through ``backend.forward`` together, in chunks of ``batch_size`` rows (the last
chunk padded for backends with a fixed batch shape), and the masks are built
chunk by chunk in the backend's array namespace, on its device.

Every map is float32 ``(B, H, W)`` in [0, 1]; a constant map (nothing to
explain) is returned as zeros, never NaN.
"""

from .grad_cam import grad_cam, run_grad_cam
from .registry import METHODS, explain_with, run_group_cam, run_method
from .result import MethodResult
from .rise import rise, rise_masks, run_rise
from .score_cam import run_score_cam, score_cam

__all__ = [
    "METHODS",
    "MethodResult",
    "explain_with",
    "grad_cam",
    "rise",
    "rise_masks",
    "run_grad_cam",
    "run_group_cam",
    "run_method",
    "run_rise",
    "run_score_cam",
    "score_cam",
]
