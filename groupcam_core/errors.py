"""The library's exceptions: one family, rooted at :class:`GroupCAMError`.

Each concrete error also subclasses the built-in exception a Python user would
reach for first (``ValueError``, ``TypeError``, ``KeyError``), so code that
already catches those keeps working.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "GroupCAMError",
    "InputError",
    "LayerNotFoundError",
    "ModelOutputError",
    "TargetError",
    "TargetLayerError",
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
