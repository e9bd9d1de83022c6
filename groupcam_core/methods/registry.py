"""One call for any method: :func:`run_method` and :func:`explain_with`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import GroupCAMConfig, make_config
from ..engine import explain_group_cam
from ..errors import ConfigError
from ..forward import resolve_batch_size
from ..kit.explainer import ExplainerBase, as_backend, preferred_batch_size
from ..targets import TargetSpec
from .grad_cam import grad_cam, run_grad_cam
from .result import MethodResult
from .rise import rise, run_rise
from .score_cam import run_score_cam, score_cam

__all__ = ["METHODS", "explain_with", "run_group_cam", "run_method"]

#: The method names :func:`explain_with` and :func:`run_method` accept.
METHODS: tuple[str, ...] = ("group-cam", "grad-cam", "score-cam", "rise")


def run_group_cam(
    explainer: Any,
    x: Any,
    targets: TargetSpec = None,
    config: GroupCAMConfig | str | None = None,
    batch_size: int | None = None,
) -> MethodResult:
    """Group-CAM maps as a :class:`MethodResult` (for comparisons with the other methods).

    ``config`` defaults to the explainer's configuration (else the "paper"
    preset) and ``batch_size`` to the explainer's (else the backend's).
    """
    if config is None:
        config = explainer.config if isinstance(explainer, ExplainerBase) else GroupCAMConfig()
    else:
        config = make_config(config)
    with as_backend(explainer, x) as backend:
        size = resolve_batch_size(batch_size, backend, preferred_batch_size(explainer))
        explanation = explain_group_cam(backend, x, targets=targets, config=config, batch_size=size)
    return MethodResult(
        saliency=explanation.saliency,
        targets=explanation.targets,
        forward_passes=explanation.forward_passes,
        degenerate=explanation.degenerate,
        method="group-cam",
    )


def _options(method: Callable[..., Any]) -> dict[str, Any]:
    """A method's options and their defaults: its parameters after ``explainer, x, targets``."""
    parameters = list(inspect.signature(method).parameters.values())[3:]
    return {parameter.name: parameter.default for parameter in parameters}


# Each runner with the options of the public function users read (one place for defaults).
_RUNNERS: dict[str, tuple[Callable[..., MethodResult], dict[str, Any]]] = {
    "group-cam": (run_group_cam, _options(run_group_cam)),
    "grad-cam": (run_grad_cam, _options(grad_cam)),
    "score-cam": (run_score_cam, _options(score_cam)),
    "rise": (run_rise, _options(rise)),
}


def run_method(
    method: str, explainer: Any, x: Any, targets: TargetSpec = None, **options: Any
) -> MethodResult:
    """Explain a batch with any method of :data:`METHODS`; maps, targets and costs.

    Parameters
    ----------
    method
        ``"group-cam"``, ``"grad-cam"``, ``"score-cam"`` or ``"rise"`` (case and
        underscores are forgiven: ``"Score_CAM"`` works).
    explainer
        A groupcam explainer or a :class:`~groupcam_core.Backend`.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.
    **options
        The method's options. ``"group-cam"``: ``config`` (a
        :class:`~groupcam_core.GroupCAMConfig` or a variant name; default: the
        explainer's configuration, else the "paper" preset) and ``batch_size``
        (default: the explainer's, else the backend's). ``"score-cam"``:
        ``batch_size``. ``"rise"``: ``masks``, ``cell``, ``keep``, ``seed``,
        ``batch_size`` (see :func:`~groupcam_core.methods.rise`). ``"grad-cam"``: none.

    Returns
    -------
    MethodResult
    """
    if not isinstance(method, str):
        raise ConfigError(f"method must be a name, one of {list(METHODS)}; got {method!r}")
    name = method.strip().lower().replace("_", "-")
    if name not in _RUNNERS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    runner, defaults = _RUNNERS[name]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        known = ", ".join(defaults) if defaults else "none"
        raise ConfigError(
            f"{name} has no option {', '.join(repr(u) for u in unknown)}; its options are: {known}"
        )
    return runner(explainer, x, targets, **{**defaults, **options})


def explain_with(
    method: str, explainer: Any, x: Any, targets: TargetSpec = None, **options: Any
) -> np.ndarray:
    """Saliency maps of a batch with any method of :data:`METHODS`.

    The same as ``run_method(method, explainer, x, targets, **options).saliency``;
    see :func:`run_method` for the parameters.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1].
    """
    return run_method(method, explainer, x, targets, **options).saliency
