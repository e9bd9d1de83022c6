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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = [
    "PROBABILITIES_WARNING",
    "BackendError",
    "ConfigError",
    "GroupCAMError",
    "GroupCAMWarning",
    "InputError",
    "LayerNotConnectedError",
    "LayerNotFoundError",
    "ModelOutputError",
    "TargetError",
    "TargetLayerError",
    "is_out_of_memory",
    "layer_not_called",
    "layer_not_connected",
    "layout_hint",
    "naming_the_users_batch",
    "note_model_failure",
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


#: What the frameworks' out-of-memory errors are called or say: torch's
#: ``OutOfMemoryError`` (CUDA, MPS) and its CPU allocator's message, TensorFlow's
#: ``ResourceExhaustedError``, XLA's ``RESOURCE_EXHAUSTED`` (JAX, Keras on JAX).
_OUT_OF_MEMORY_TYPES = ("OutOfMemoryError", "ResourceExhaustedError")
_OUT_OF_MEMORY_TEXT = ("RESOURCE_EXHAUSTED", "out of memory", "can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a framework's out-of-memory error (by type name or message;
    the core imports no framework)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names.intersection(_OUT_OF_MEMORY_TYPES):
        return True
    text = str(error)
    return any(marker in text for marker in _OUT_OF_MEMORY_TEXT)


def layer_not_called(layer: str) -> TargetLayerError:
    """The error for a target layer that did not run during the forward pass."""
    return TargetLayerError(f"target layer {layer!r} was not called during the forward pass")


class LayerNotConnectedError(TargetLayerError):
    """The model's output does not depend on the target layer (a branch its output
    does not use, such as a segmentation model's auxiliary head)."""


def layer_not_connected(layer: str) -> LayerNotConnectedError:
    """The error for a target layer the model's output does not depend on."""
    return LayerNotConnectedError(
        f"the model's output does not depend on target layer {layer!r} "
        "through differentiable operations"
    )


def layout_hint(shape: tuple[int, ...], layout: str, channels: int | None = None) -> str:
    """A hint when a 4-D batch looks like the other layout, or a 3-D one may be a single
    image without its batch axis; else an empty string.

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
    if len(shape) == 3:
        single = "(C, H, W)" if layout == "channels_first" else "(H, W, C)"
        signals = "(B, C, L)" if layout == "channels_first" else "(B, L, C)"
        return (
            f"; a 3-D batch reads as signals {signals}: if it is one image {single}, add a "
            "batch axis (x[None])"
        )
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


def note_model_failure(
    error: BaseException, description: str, shape: tuple[int, ...], layout: str
) -> None:
    """Add a note (PEP 678) to an exception the user's model raised on the batch.

    The exception keeps its type (a ``RuntimeError`` stays one, and so does
    ``torch.OutOfMemoryError``): callers re-raise it with a bare ``raise``. The
    note names the batch's shape, the layout it was given in, and a hint when
    it looks like the other layout.

    Parameters
    ----------
    error
        The model's own exception.
    description
        What failed, e.g. ``"the model"`` or a class name.
    shape
        The batch's shape.
    layout
        The layout the batch was given in.
    """
    shape = _users_batch_shape.get() or tuple(shape)
    error.add_note(
        f"groupcam: {description} failed on a batch of shape {shape} ({layout}"
        f"{layout_hint(shape, layout)})"
    )


#: The shape of the batch the user gave, while groupcam runs the model on part of it.
_users_batch_shape: ContextVar[tuple[int, ...] | None] = ContextVar(
    "groupcam_users_batch_shape", default=None
)


@contextmanager
def naming_the_users_batch(shape: tuple[int, ...]) -> Iterator[None]:
    """While the block runs, :func:`note_model_failure` names ``shape``, the user's batch.

    The default-layer probe runs the model on two rows of the user's batch; a
    failure there is about the batch the user gave, and the note says so.
    """
    token = _users_batch_shape.set(tuple(shape))
    try:
        yield
    finally:
        _users_batch_shape.reset(token)
