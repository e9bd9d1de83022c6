"""Step 1 on each Keras backend: the gradient of the target scores at the layers' outputs.

TensorFlow records a ``GradientTape``; JAX differentiates a stateless call of
the model with respect to a perturbation of the layers' outputs (with
``groupcam_jax.gradients``); PyTorch uses autograd (with
``groupcam_torch.gradients``). These two imports are the declared exception to
the independence of the adapters (pyproject's import contract).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from groupcam_core.errors import layer_not_called, layer_not_connected
from groupcam_core.protocol import GradientPass, Objective
from groupcam_core.targets import check_framework_scores

if TYPE_CHECKING:
    from .backend import JaxKeras, TensorFlowKeras, TorchKeras

__all__ = ["jax_gradient_pass", "tensorflow_gradient_pass", "torch_gradient_pass"]


def tensorflow_gradient_pass(
    backend: TensorFlowKeras, x: np.ndarray, objective: Objective
) -> GradientPass:
    """Step 1 on TensorFlow: one GradientTape that watches only the target tensors."""
    tf = backend.tf
    captured: dict[str, Any] = {}
    # Only the target tensors are watched, not the variables: the tape records
    # nothing below the layer, and the backward pass stops at the layer (as
    # torch's no_grad below the layer does) instead of running through the
    # whole network to every weight.
    with tf.GradientTape(watch_accessed_variables=False) as tape:

        def make(path: str) -> Callable[[Any], Any]:
            def capture(output: Any) -> Any:
                tape.watch(output)
                captured[path] = output  # the last call's output wins
                return output

            return capture

        with backend.logits(), backend.routed(make):
            outputs = backend.select(
                backend.run_model(lambda: backend.model(tf.constant(x), **backend.call_kwargs), x)
            )
    for path in backend.layer_names:
        if path not in captured:
            raise layer_not_called(path)
    outputs_np = np.asarray(outputs)
    targets = objective(outputs_np)
    with tape:
        scores = objective.scores(outputs, targets)
        check_framework_scores(scores, outputs, getattr(objective, "name", "class targets"))
        score = tf.reduce_sum(scores)
    tensors = [captured[path] for path in backend.layer_names]
    gradients = tape.gradient(score, tensors)
    for path, gradient in zip(backend.layer_names, gradients, strict=True):
        if gradient is None:
            raise layer_not_connected(path)
    return backend.pass_result(
        [np.asarray(t) for t in tensors],
        [np.asarray(g) for g in gradients],
        outputs_np,
        targets,
    )


def _stateless_split(
    backend: JaxKeras,
    trainable: Any,
    frozen: Any,
    x: Any,
    deltas: tuple[Any, ...] | None,
    perturbed_calls: tuple[int, ...] | None = None,
) -> tuple[Any, tuple[Any, ...], dict[str, int]]:
    """Outputs and the targets' activations, with ``deltas`` added at one call of each.

    A layer called several times is explained at its last call (as on the
    other backends): ``perturbed_calls`` are those calls' indices, learned
    from a first, abstract pass that only counts calls (``deltas=None``).
    """
    captured: dict[str, Any] = {}
    calls: dict[str, int] = dict.fromkeys(backend.layer_names, 0)

    def make(path: str) -> Callable[[Any], Any]:
        number = backend.layer_names.index(path)

        def perturb(output: Any) -> Any:
            index = calls[path]
            calls[path] += 1
            if perturbed_calls is not None and index != perturbed_calls[number]:
                return output
            captured[path] = output
            return output if deltas is None else output + deltas[number]

        return perturb

    with backend.logits(), backend.routed(make):
        outputs, _ = backend.model.stateless_call(trainable, frozen, x, **backend.call_kwargs)
    for path in backend.layer_names:
        if path not in captured:
            raise layer_not_called(path)
    return backend.select(outputs), tuple(captured[p] for p in backend.layer_names), calls


def jax_gradient_pass(backend: JaxKeras, x: Any, objective: Objective) -> GradientPass:
    """Step 1 on JAX: a stateless split at the layers, differentiated by one ``jax.vjp``.

    The target layers' outputs get an additive perturbation ``delta``; the
    gradient with respect to ``delta`` at zero is the gradient with respect to
    the activations (:func:`groupcam_jax.gradients.gradient_by_perturbation`).
    """
    from groupcam_jax.gradients import gradient_by_perturbation

    trainable, frozen = backend.variables()
    counted: dict[str, int] = {}

    def count(x: Any) -> Any:
        _, activations, calls = _stateless_split(backend, trainable, frozen, x, None)
        counted.update(calls)
        return activations  # of the last calls: their shapes are the deltas' shapes

    shapes = backend.run_model(lambda: backend.jax.eval_shape(count, x), x)
    last = tuple(counted[path] - 1 for path in backend.layer_names)
    result = backend.run_model(
        lambda: gradient_by_perturbation(
            lambda deltas: _stateless_split(backend, trainable, frozen, x, deltas, last)[:2],
            tuple(shapes),
            objective,
        ),
        x,
    )
    return backend.pass_result(result.activations, result.gradients, result.outputs, result.targets)


def torch_gradient_pass(backend: TorchKeras, x: Any, objective: Objective) -> GradientPass:
    """Step 1 on PyTorch: autograd at the layers' outputs, no_grad below them."""
    from groupcam_torch.gradients import gradient_at_layers

    def run(x: Any, capture_for: Any) -> Any:
        with backend.logits(), backend.routed(capture_for):
            return backend.select(
                backend.run_model(lambda: backend.model(x, **backend.call_kwargs), x)
            )

    return gradient_at_layers(run, x, objective, list(backend.layer_names))
