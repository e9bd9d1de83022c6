"""groupcam: the application built on the adapters and the core.

The ``groupcam`` command (``python -m groupcam``): ``groupcam demo``,
``groupcam compare`` and ``groupcam explain``; explain jobs over image files
and folders, locally (:func:`explain_images`) or on Ray Data
(:func:`explain_dataset`); the comparison of one model across frameworks
(:func:`compare`); the model zoo (:mod:`groupcam.zoo`: EfficientNet-Lite0 with
ImageNet weights in every framework) and offline sample photos
(:mod:`groupcam.samples`).

To explain your own model in Python, use an adapter: ``groupcam_torch``,
``groupcam_keras`` or ``groupcam_jax``. This package imports no framework until
a job, a comparison or a zoo model needs one.
"""

from groupcam_core import __version__

from .compare import Comparison, compare
from .errors import ModelLoadError, SettingsError, UsageError
from .jobs import ExplainJob, JobReport, ModelSource, explain_images, find_images
from .jobs.ray_runner import explain_dataset, explain_images_on_ray

__all__ = [
    "Comparison",
    "ExplainJob",
    "JobReport",
    "ModelLoadError",
    "ModelSource",
    "SettingsError",
    "UsageError",
    "__version__",
    "compare",
    "explain_dataset",
    "explain_images",
    "explain_images_on_ray",
    "find_images",
]
