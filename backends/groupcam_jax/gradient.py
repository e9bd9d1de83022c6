"""Step 1 in JAX: the gradient at a layer's output from one forward and one backward pass.

Shared by :mod:`groupcam_jax` and ``groupcam_keras`` on Keras' JAX backend. The
model is run as a function of an additive perturbation ``delta`` of the target
layer's output; the gradient of the target scores with respect to ``delta`` at
zero is the gradient with respect to the activations. ``jax.vjp`` gives the
outputs (to resolve the targets) and then the gradient: one forward and one
backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from groupcam_core.protocol import GradientPass, TargetResolver

__all__ = ["gradient_by_perturbation"]


def gradient_by_perturbation(
    split: Callable[[Any], tuple[Any, Any]],
    delta_shape: jax.ShapeDtypeStruct,
    resolve_targets: TargetResolver,
) -> GradientPass:
    """Outputs, activations and the gradient of the target scores at one layer.

    Parameters
    ----------
    split
        ``split(delta) -> (outputs, activations)``: the model on the batch with
        ``delta`` added to the target layer's output; ``outputs`` are the
        ``(B, classes)`` scores and ``activations`` the layer's output (before
        ``delta`` is added).
    delta_shape
        Shape and dtype of the layer's output.
    resolve_targets
        The core's resolver from outputs to target classes.
    """
    delta = jnp.zeros(delta_shape.shape, delta_shape.dtype)
    outputs, pullback, activations = jax.vjp(split, delta, has_aux=True)
    targets = resolve_targets(outputs)
    cotangent = jax.nn.one_hot(targets, outputs.shape[1], dtype=outputs.dtype)
    (gradients,) = pullback(cotangent)
    return GradientPass(activations, gradients, outputs, targets)
