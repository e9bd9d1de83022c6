"""Jobs: Group-CAM over folders of images, with resumable, atomic outputs.

What ``groupcam explain`` runs, as an API. :class:`ExplainJob` describes a job
(model, layer, targets, preprocessing, settings); :func:`find_images` lists the
inputs with unique names; :func:`explain_images` explains the ones not done yet
and writes the output folder (:mod:`~groupcam.jobs.outputs`). The same job
runs on Ray Data with :mod:`groupcam.jobs.ray_runner`. Nothing here imports a
framework until a job's model is loaded.

>>> from groupcam.jobs import ExplainJob, ModelSource, explain_images, find_images
>>> job = ExplainJob(ModelSource.parse("efficientnet-lite0"), groups=32)
>>> report = explain_images(job, find_images(["photos/"]), "explained")  # doctest: +SKIP
"""

from ..errors import ModelLoadError, SettingsError, UsageError
from .inputs import IMAGE_SUFFIXES, ImageInput, find_images
from .models import LoadedModel, load_model
from .outputs import OutputFolder
from .runner import JobReport, explain_images, local_outcomes
from .settings import ExplainJob, ModelSource
from .worker import RESULT_COLUMNS, JobWorker, Outcome

__all__ = [
    "IMAGE_SUFFIXES",
    "RESULT_COLUMNS",
    "ExplainJob",
    "ImageInput",
    "JobReport",
    "JobWorker",
    "LoadedModel",
    "ModelLoadError",
    "ModelSource",
    "SettingsError",
    "Outcome",
    "OutputFolder",
    "UsageError",
    "explain_images",
    "find_images",
    "load_model",
    "local_outcomes",
]
