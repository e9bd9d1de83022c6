"""The core's backend protocol for Keras 3, one small class per Keras backend.

Each class imports its framework only when it is built, so importing
``groupcam_keras`` pulls in nothing but Keras itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np

from groupcam_core.errors import BackendError, InputError, ModelOutputError, TargetLayerError
from groupcam_core.explainer import floating_batch
from groupcam_core.protocol import GradientPass, TargetResolver

from ._layers import logits_instead_of_softmax, patched_call

__all__ = ["DEFAULT_BATCH_SIZE", "KerasBackend", "make_backend"]

#: Rows per masked forward pass on CPU, by Keras backend, and on accelerators
#: (see docs/benchmarks.md): TensorFlow's CPU kernels want large batches, eager
#: PyTorch small ones.
DEFAULT_BATCH_SIZE = {"tensorflow": 32, "jax": 16, "torch": 4, "accelerator": 64}


def select_output(outputs: Any) -> Any:
    """The single ``(B, classes)`` output of a Keras model."""
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ModelOutputError(
                f"the model returned a dict with keys {sorted(outputs)}; "
                "Group-CAM needs a model with one (batch, classes) output"
            )
        outputs = next(iter(outputs.values()))
    if isinstance(outputs, (list, tuple)):
        if not outputs:
            raise ModelOutputError("the model returned an empty list")
        outputs = outputs[0]
    return outputs


class KerasBackend:
    """What every Keras backend shares: layout, dtype, input checks, softmax stripping."""

    fixed_batch_shape = True

    def __init__(
        self,
        model: keras.Model,
        layer: keras.Layer,
        layer_name: str,
        softmax_layer: keras.Layer | None,
        outputs_probabilities: bool,
    ) -> None:
        self.model = model
        self.layer = layer
        self.layer_name = layer_name
        self.softmax_layer = softmax_layer
        self.outputs_probabilities = outputs_probabilities
        self.input_layout = keras.config.image_data_format()
        self.feature_layout = self.input_layout
        self.dtype = getattr(model, "input_dtype", None) or keras.config.floatx()
        self.call_kwargs = _training_kwargs(model)
        self._compiled: Any = None

    @property
    def default_batch_size(self) -> int:
        if _has_accelerator():
            return DEFAULT_BATCH_SIZE["accelerator"]
        return DEFAULT_BATCH_SIZE[keras.backend.backend()]

    @contextmanager
    def logits(self) -> Iterator[None]:
        with logits_instead_of_softmax(self.softmax_layer):
            yield

    def _as_numpy(self, x: Any) -> np.ndarray:
        array = floating_batch(
            x,
            lambda x: np.asarray(x if isinstance(x, np.ndarray) else keras.ops.convert_to_numpy(x)),
            lambda dtype: np.issubdtype(dtype, np.floating),
            "an array",
        )
        array = array.astype(self.dtype, copy=False)
        self._check_channels(array)
        return array

    def _check_channels(self, x: np.ndarray) -> None:
        try:
            shape = self.model.input_shape
        except (AttributeError, ValueError):
            return
        if x.ndim != 4 or not isinstance(shape, tuple) or len(shape) != 4:
            return
        axis = 3 if self.input_layout == "channels_last" else 1
        expected = shape[axis]
        if expected is not None and x.shape[axis] != expected:
            other = 1 if axis == 3 else 3
            hint = (
                f"; it looks {'channels-first' if axis == 3 else 'channels-last'}"
                if x.shape[other] == expected
                else ""
            )
            raise InputError(
                f"the model takes {expected} channels ({self.input_layout}, input shape {shape}) "
                f"but the batch has shape {tuple(x.shape)}{hint}"
            )

    def _not_connected(self) -> TargetLayerError:
        return TargetLayerError(
            f"the model's output does not depend on target layer {self.layer_name!r}"
        )

    def _capture_missing(self) -> TargetLayerError:
        return TargetLayerError(
            f"target layer {self.layer_name!r} was not called during the forward pass"
        )


def _training_kwargs(model: keras.Model) -> dict[str, bool]:
    try:
        parameters = inspect.signature(model.call).parameters
    except (TypeError, ValueError):
        return {}
    accepts = "training" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    return {"training": False} if accepts else {}


def _has_accelerator() -> bool:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    return False


class TensorFlowKeras(KerasBackend):
    """TensorFlow: a GradientTape for step 1, a tf.function for the masked passes.

    The core computes on numpy arrays here (TensorFlow tensors are not array-API
    arrays); only the model's passes run in TensorFlow.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import tensorflow as tf

        self.tf = tf

    def prepare_input(self, x: Any) -> np.ndarray:
        return self._as_numpy(x)

    def gradient_pass(self, x: np.ndarray, resolve_targets: TargetResolver) -> GradientPass:
        tf = self.tf
        captured: dict[str, Any] = {}
        with tf.GradientTape() as tape:

            def capture(output: Any) -> Any:
                tape.watch(output)
                captured["activations"] = output
                return output

            with self.logits(), patched_call(self.layer, capture):
                outputs = select_output(self.model(tf.constant(x), **self.call_kwargs))
        if "activations" not in captured:
            raise self._capture_missing()
        outputs_np = np.asarray(outputs)
        targets = resolve_targets(outputs_np)
        with tape:
            score = tf.reduce_sum(tf.gather(outputs, targets, axis=1, batch_dims=1))
        gradients = tape.gradient(score, captured["activations"])
        if gradients is None:
            raise self._not_connected()
        return GradientPass(
            np.asarray(captured["activations"]), np.asarray(gradients), outputs_np, targets
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self._compiled is None:
            tf = self.tf
            model, kwargs = self.model, self.call_kwargs
            self._compiled = tf.function(
                lambda batch: select_output(model(batch, **kwargs)), reduce_retracing=True
            )
        with self.logits():
            return np.asarray(self._compiled(self.tf.constant(x)))

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)


class JaxKeras(KerasBackend):
    """JAX: a stateless, differentiable split at the layer; jit-compiled masked passes.

    The target layer's output gets an additive perturbation ``delta``; the
    gradient of the target scores with respect to ``delta`` at zero is the
    gradient with respect to the activations (one jax.vjp: one forward, one
    backward).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

    def _variables(self) -> tuple[list[Any], list[Any]]:
        return (
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
        )

    def prepare_input(self, x: Any) -> Any:
        return self.jnp.asarray(self._as_numpy(x))

    def _split(
        self, trainable: Any, frozen: Any, x: Any, delta: Any, perturbed_call: int = -1
    ) -> tuple[Any, Any, int]:
        """Outputs and the layer's activations, with ``delta`` added at one call.

        A layer called several times is explained at its last call (as on the
        other backends): ``perturbed_call`` is that call's index, learned from a
        first, abstract pass that only counts calls.
        """
        captured: dict[str, Any] = {}
        calls = [0]

        def perturb(output: Any) -> Any:
            index = calls[0]
            calls[0] += 1
            if index != perturbed_call and perturbed_call >= 0:
                return output
            captured["activations"] = output
            return output if delta is None else output + delta

        with self.logits(), patched_call(self.layer, perturb):
            outputs, _ = self.model.stateless_call(trainable, frozen, x, **self.call_kwargs)
        if "activations" not in captured:
            raise self._capture_missing()
        return select_output(outputs), captured["activations"], calls[0]

    def gradient_pass(self, x: Any, resolve_targets: TargetResolver) -> GradientPass:
        jax, jnp = self.jax, self.jnp
        trainable, frozen = self._variables()
        counted: dict[str, int] = {}

        def count(x: Any) -> Any:
            _, activations, calls = self._split(trainable, frozen, x, None)
            counted["calls"] = calls
            return activations  # of the last call: its shape is the shape of delta

        shape = jax.eval_shape(count, x)
        last = counted["calls"] - 1
        delta = jnp.zeros(shape.shape, shape.dtype)
        outputs, pullback, activations = jax.vjp(
            lambda d: self._split(trainable, frozen, x, d, last)[:2], delta, has_aux=True
        )
        targets = resolve_targets(outputs)
        cotangent = jax.nn.one_hot(targets, outputs.shape[1], dtype=outputs.dtype)
        (gradients,) = pullback(cotangent)
        return GradientPass(activations, gradients, outputs, targets)

    def forward(self, x: Any) -> Any:
        if self._compiled is None:
            model, kwargs = self.model, self.call_kwargs

            def run(trainable: Any, frozen: Any, batch: Any) -> Any:
                outputs, _ = model.stateless_call(trainable, frozen, batch, **kwargs)
                return select_output(outputs)

            self._compiled = self.jax.jit(run)
        trainable, frozen = self._variables()
        with self.logits():
            return self._compiled(trainable, frozen, x)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)


class TorchKeras(KerasBackend):
    """PyTorch: autograd with respect to the layer's output, no_grad below it."""

    fixed_batch_shape = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import torch

        self.torch = torch

    def prepare_input(self, x: Any) -> Any:
        return keras.ops.convert_to_tensor(self._as_numpy(x))

    def gradient_pass(self, x: Any, resolve_targets: TargetResolver) -> GradientPass:
        from groupcam_torch._autograd import gradient_at_layer

        def run(x: Any, capture: Any) -> Any:
            with self.logits(), patched_call(self.layer, capture):
                return select_output(self.model(x, **self.call_kwargs))

        return gradient_at_layer(run, x, resolve_targets, self.layer_name)

    def forward(self, x: Any) -> Any:
        with self.torch.no_grad(), self.logits():
            return select_output(self.model(x, **self.call_kwargs))

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.detach().cpu().numpy()


_BACKENDS: dict[str, type[KerasBackend]] = {
    "tensorflow": TensorFlowKeras,
    "jax": JaxKeras,
    "torch": TorchKeras,
}


def make_backend(*args: Any, **kwargs: Any) -> KerasBackend:
    """The adapter class for the Keras backend in use (``keras.backend.backend()``)."""
    name = keras.backend.backend()
    if name not in _BACKENDS:
        raise BackendError(f"Keras backend {name!r} is not supported; use tensorflow, jax or torch")
    return _BACKENDS[name](*args, **kwargs)
