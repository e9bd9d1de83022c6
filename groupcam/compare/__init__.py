"""The same model explained in several ways, and how far the maps agree.

:func:`compare` explains one batch with several explainers (any adapters) and
returns a :class:`Comparison`: a table of cost and agreement, and a figure.
``groupcam compare`` runs EfficientNet-Lite0 in every way into groupcam, each
in its own process (:mod:`groupcam.compare.child`). The agreement measures
themselves are framework-free and live in :mod:`groupcam_core.agreement`.
"""

from .comparison import Agreement, Comparison, WayRun, compare

__all__ = ["Agreement", "Comparison", "WayRun", "compare"]
