"""The library's exceptions and warnings, and the messages more than one adapter raises.

Every error is a :class:`GroupCAMError`; each concrete error also subclasses the
built-in exception a Python user would reach for first (``ValueError``,
``TypeError``, ``KeyError``), so code that already catches those keeps working.
Messages that several adapters give (a layer never called, a model that failed
on the batch, outputs that look like probabilities) are built here, once, so
that every framework words them the same way.
"""

from __future__ import annotations

import sys
import warnings

__all__ = [
    "PROBABILITIES_WARNING",
    "BackendError",
    "ConfigError",
    "GroupCAMError",
    "GroupCAMWarning",
    "InputError",
    "LayerNotFoundError",
    "ModelOutputError",
    "TargetError",
    "TargetLayerError",
    "layer_not_called",
    "layer_not_connected",
    "layout_hint",
    "model_failed",
    "warn",
]


class GroupCAMError(Exception):
    """Base class of every error raised by groupcam."""


class ConfigError(GroupCAMError, ValueError):
    """An explanation setting (groups, percentile, blur, variant, ...) is invalid."""


class InputError(GroupCAMError, ValueError):
    """The input batch has the wrong rank, channel count or size, is empty, or is not finite."""


class TargetError(GroupCAMError, ValueError):
    """The requested target classes are out of range or do not match the batch."""


class ModelOutputError(GroupCAMError, ValueError):
    """The model's output cannot be read as a ``(batch, classes)`` array of scores."""


class TargetLayerError(GroupCAMError, ValueError):
    """The target layer exists but cannot be explained (wrong output rank, never called, ...)."""


class LayerNotFoundError(TargetLayerError, KeyError):
    """No layer of the model has the requested name or identity."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class BackendError(GroupCAMError, TypeError):
    """An object handed to an adapter is not of a type it can work with."""


class GroupCAMWarning(UserWarning):
    """Something about the model or the call is probably not what the user meant."""


#: The one warning every adapter gives when the model's outputs look like
#: probabilities although the explainer was told (or assumed) they are logits.
PROBABILITIES_WARNING = (
    "the model's outputs look like probabilities (non-negative rows summing to 1); if it ends "
    "in a softmax, pass model_outputs='probabilities' so that Group-CAM does not apply "
    "softmax a second time"
)

_OUR_PACKAGES = ("groupcam_core", "groupcam_torch", "groupcam_keras", "groupcam_jax", "groupcam")


def _outside_groupcam_stacklevel() -> int:
    """The ``stacklevel`` of the first frame that is not groupcam's (nor contextlib's)."""
    frame = sys._getframe(2)  # the caller of warn()
    level = 2
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module.split(".")[0] in _OUR_PACKAGES or module == "contextlib"):
            return level
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = GroupCAMWarning) -> None:
    """Issue a warning attributed to the user's line that called into groupcam."""
    warnings.warn(message, category, stacklevel=_outside_groupcam_stacklevel())


def layer_not_called(layer: str) -> TargetLayerError:
    """The error for a target layer that did not run during the forward pass."""
    return TargetLayerError(f"target layer {layer!r} was not called during the forward pass")


def layer_not_connected(layer: str) -> TargetLayerError:
    """The error for a target layer the model's output does not depend on."""
    return TargetLayerError(
        f"the model's output does not depend on target layer {layer!r} "
        "through differentiable operations"
    )


def layout_hint(shape: tuple[int, ...], layout: str, channels: int | None = None) -> str:
    """A hint when a 4-D batch looks like the other layout, else an empty string.

    Parameters
    ----------
    shape
        The batch's shape.
    layout
        ``"channels_first"`` or ``"channels_last"``: what the model expects.
    channels
        The number of input channels the model takes, when known; otherwise a
        batch "looks" channels-first or -last when one end has 1 or 3 channels
        and the other does not.
    """
    if len(shape) != 4:
        return ""
    first, last = shape[1], shape[3]
    if channels is not None:
        looks_first, looks_last = first == channels != last, last == channels != first
    else:
        looks_first = first in (1, 3) and last not in (1, 3)
        looks_last = last in (1, 3) and first not in (1, 3)
    if layout == "channels_last" and looks_first:
        return "; the batch looks channels-first: transpose it to (B, H, W, C)"
    if layout == "channels_first" and looks_last:
        return "; the batch looks channels-last: use x.permute(0, 3, 1, 2) (B, C, H, W)"
    return ""


def model_failed(
    description: str, shape: tuple[int, ...], layout: str, error: BaseException
) -> InputError:
    """The error for a model that raised on the user's batch (chain ``error`` to it).

    Parameters
    ----------
    description
        What failed, e.g. ``"the model"`` or a class name.
    shape
        The batch's shape.
    layout
        The layout the batch was given in.
    error
        The model's own exception.
    """
    return InputError(
        f"{description} failed on a batch of shape {tuple(shape)} ({layout}"
        f"{layout_hint(tuple(shape), layout)}): {type(error).__name__}: {error}"
    )
