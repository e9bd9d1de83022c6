"""The array namespace of a framework's arrays, found without importing any framework.

Arrays of numpy, torch and JAX get their array-API namespace from
``array_api_compat``. TensorFlow tensors (Keras on its TensorFlow backend) are not
array-API arrays; for them the namespace is ``tensorflow.experimental.numpy``,
which has the handful of functions the ready-made targets and
:func:`~groupcam_core.transforms.tokens_to_grid` use (``sum``, ``exp``, ``log``,
``max``, ``where``, ``arange``, ``reshape``, ``transpose``). TensorFlow is looked
up in ``sys.modules`` only: if it is not imported, no array can be a tensor.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from array_api_compat import array_namespace

__all__ = ["is_tensorflow", "namespace_of", "to_host"]


def is_tensorflow(array: Any) -> bool:
    """Whether ``array`` is a TensorFlow tensor or variable."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(array, (tf.Tensor, tf.Variable))


def namespace_of(*arrays: Any) -> Any:
    """The namespace to compute on ``arrays`` with, keeping them in their framework."""
    if any(is_tensorflow(array) for array in arrays):
        return sys.modules["tensorflow"].experimental.numpy
    return array_namespace(*arrays)


def to_host(array: Any) -> np.ndarray:
    """Any framework's array as numpy (tensors are detached and moved to the CPU)."""
    if hasattr(array, "detach"):
        array = array.detach()
    if hasattr(array, "cpu") and callable(array.cpu):
        array = array.cpu()
    return np.asarray(array)
