"""What ``groupcam explain`` needs from Keras: loading model files, building the explainer.

A :class:`~groupcam.loaders.FileLoader`; :mod:`groupcam.jobs.models` imports it
when a job's model is a Keras one. Keras picks its backend (``KERAS_BACKEND``)
once per process, before this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from groupcam_core.protocol import Layout
from groupcam_keras import GroupCAM

from ..errors import UsageError
from ..jobs.settings import ExplainJob

__all__ = [
    "FRAMEWORK",
    "input_layout",
    "input_size",
    "load_file",
    "make_explainer",
    "owns",
    "set_threads",
    "weights",
]

FRAMEWORK = "keras"


def load_file(path: str, trust_model: bool) -> keras.Model:
    """Load a ``.keras`` file with Keras' safe mode on (a legacy ``.h5`` only if trusted).

    Safe mode refuses to deserialize Python code (``Lambda`` layers' bytecode);
    groupcam never turns it off. Legacy HDF5 files have no safe mode.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".h5" and not trust_model:
        raise UsageError(
            f"model: {path} is a legacy HDF5 Keras file, which Keras loads without its safe mode "
            "(a Lambda layer in it would run code from the file); pass --trust-model if you "
            "trust it, or save the model as .keras"
        )
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError) as error:
        raise UsageError(f"model: Keras could not load {path}: {error}") from error
    if not isinstance(model, keras.Model):
        raise UsageError(f"model: {path} holds a {type(model).__name__}, not a keras.Model")
    return model


def owns(model: Any) -> bool:
    """Whether ``model`` is a Keras model."""
    return isinstance(model, keras.Model)


def input_layout(model: Any) -> Layout:
    """Keras' ``image_data_format()``, which ``groupcam_keras.GroupCAM`` reads too."""
    return (
        "channels_first"
        if keras.config.image_data_format() == "channels_first"
        else "channels_last"
    )


def input_size(model: Any) -> tuple[int, int] | None:
    """``(height, width)`` from the model's declared input shape, if fixed."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if not isinstance(shape, tuple) or len(shape) != 4:
        return None
    spatial = shape[2:4] if input_layout(model) == "channels_first" else shape[1:3]
    if all(isinstance(side, int) for side in spatial):
        return (int(spatial[0]), int(spatial[1]))
    return None


def make_explainer(model: keras.Model, job: ExplainJob, sample: np.ndarray) -> GroupCAM:
    """``GroupCAM`` for ``model`` with the job's settings."""
    return GroupCAM(
        model,
        target_layer=job.layer,
        groups=job.groups,
        variant=job.variant,
        batch_size=job.batch_size,
    )


def set_threads(threads: int) -> None:
    """Use ``threads`` threads for the backend's kernels, where it can still be set."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow has started: its pools are fixed
            pass
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def weights(model: keras.Model) -> Iterator[tuple[str, np.ndarray]]:
    """The model's variables, by path."""
    for variable in model.weights:
        yield str(variable.path), np.asarray(keras.ops.convert_to_numpy(variable))
