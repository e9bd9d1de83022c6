"""Step 1 in JAX: the gradient at a layer's output from one forward and one backward pass.

Shared by :mod:`groupcam_jax` and ``groupcam_keras`` on Keras' JAX backend (the
one import between adapters, declared in pyproject's import contract). The
model is run as a function of an additive perturbation ``delta`` of the target
layer's output; the gradient of the target scores with respect to ``delta`` at
zero is the gradient with respect to the activations. ``jax.vjp`` gives the
outputs (to resolve the targets) and then the gradient: one forward and one
backward pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from groupcam_core.protocol import GradientPass, Objective

__all__ = ["PerturbationTap", "gradient_by_perturbation"]


def gradient_by_perturbation(
    split: Callable[[Any], tuple[Any, Any]],
    delta_shapes: jax.ShapeDtypeStruct | Sequence[jax.ShapeDtypeStruct],
    objective: Objective,
) -> GradientPass:
    """Outputs, activations and the gradient of the target scores at one or more layers.

    Parameters
    ----------
    split
        ``split(deltas) -> (outputs, activations)``: the model on the batch with
        ``deltas`` added to the target layers' outputs; ``outputs`` are what the
        objective reads and ``activations`` the layers' outputs (before the
        deltas are added). For one layer (``delta_shapes`` a single shape),
        ``deltas`` and ``activations`` are single arrays; otherwise tuples.
    delta_shapes
        Shape and dtype of each layer's output.
    objective
        The core's objective: ``objective(outputs)`` resolves the targets on the
        clean outputs, ``objective.scores(outputs, targets)`` is differentiated.

    Notes
    -----
    The cotangent handed to the pullback is the gradient of the summed scores
    with respect to the outputs (for class targets, a one-hot row per image), so
    any target function is differentiated by the same single backward pass.
    """
    deltas = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), delta_shapes)
    outputs, pullback, activations = jax.vjp(split, deltas, has_aux=True)
    targets = objective(outputs)
    cotangent = jax.grad(lambda out: jnp.sum(objective.scores(out, targets)))(outputs)
    (gradients,) = pullback(cotangent)
    return GradientPass(activations, gradients, outputs, targets)


class PerturbationTap:
    """Adds a ``delta`` to the output of one call of each target layer and keeps that output."""

    def __init__(self, deltas: dict[str, Any], calls: dict[str, int]) -> None:
        self.deltas = deltas
        self.calls = calls
        self.seen: Counter[str] = Counter()
        self.activations: dict[str, Any] = {}

    def __call__(self, path: str, module: Any, output: Any) -> Any:
        index = self.seen[path]
        self.seen[path] += 1
        if path not in self.deltas or index != self.calls[path]:
            return output
        self.activations[path] = output
        return output + self.deltas[path]
