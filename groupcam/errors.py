"""The application's errors: a command or job that is wrongly specified (exit status 2).

They belong to the library's one family (:class:`groupcam_core.GroupCAMError`)
and are ``ValueError`` s, like the core's errors.
"""

from __future__ import annotations

from groupcam_core.errors import GroupCAMError

__all__ = ["ModelLoadError", "SettingsError", "UsageError"]


class UsageError(GroupCAMError, ValueError):
    """The command or job is wrongly specified; nothing was explained (exit status 2)."""


class SettingsError(UsageError):
    """The model and the job's settings cannot explain any image (exit status 2).

    Raised at the first image when the explainer refuses the settings themselves
    (more groups than the layer's channels, a layer the model lacks, a class the
    model does not have): every other image would fail the same way.
    """


class ModelLoadError(UsageError):
    """The model could not be loaded or recognized; nothing was explained."""
