"""The core's backend protocol for Keras 3, one small class per Keras backend.

Each class imports its framework only when it is built, so importing
``groupcam_keras`` pulls in nothing but Keras itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import keras
import numpy as np

from groupcam_core.dtypes import is_real_floating
from groupcam_core.errors import BackendError, GroupCAMError, InputError, note_model_failure
from groupcam_core.fast import EXACT, FastMode
from groupcam_core.kit import (
    OutputSelector,
    cast_input,
    default_batch_size,
    floating_batch,
    select_class_scores,
)
from groupcam_core.model_outputs import ModelOutputs
from groupcam_core.protocol import GradientPass, Objective

from .compiled import selector_key, shared_forward
from .fast import mixed_precision
from .gradients import jax_gradient_pass, tensorflow_gradient_pass, torch_gradient_pass
from .layers import Target, logits_instead_of_activation

__all__ = ["DEFAULT_BATCH_SIZES", "KerasBackend", "make_backend", "select_output"]

#: Rows per masked forward pass on CPU, by Keras backend (see docs/benchmarks.md):
#: TensorFlow's CPU kernels want large batches, eager PyTorch small ones.
_CPU_BATCH_SIZES = {"tensorflow": 32, "jax": 16, "torch": 4}
#: Rows per masked forward pass when the user gives no ``batch_size``: on a CPU
#: (for the Keras backend this process runs, which Keras fixes at import) and on
#: accelerators.
DEFAULT_BATCH_SIZES: dict[str, int] = {
    "cpu": _CPU_BATCH_SIZES.get(keras.backend.backend(), 32),
    "accelerator": 64,
}


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, dict)


def select_output(raw: Any, selector: OutputSelector = None) -> Any:
    """Pick the ``(B, classes)`` output from what a Keras model returned.

    A tensor is used as it is; otherwise ``selector`` (a key, an attribute name,
    an index or a callable) says where the class scores are, and without one a
    one-entry dict's value or a list's first item is taken.
    """
    return select_class_scores(raw, selector, _is_tensor, "tensor")


class KerasBackend:
    """What every Keras backend shares: layout, dtype, input checks, softmax stripping.

    Parameters
    ----------
    model
        The Keras model.
    layer
        The layer or functional-graph operation whose output (or first input,
        with ``at_input``) is the target feature map; or a sequence of
        :class:`~groupcam_keras.layers.Target` for several target layers
        (``layer_name`` and ``at_input`` are then ignored).
    layer_name
        Its path, as the user sees it (``"outer/inner"``, ``"head_gap:input"``).
    activation_layer
        The layer whose softmax or sigmoid is switched off while the model runs,
        or ``None``.
    model_outputs
        What the outputs (with that activation switched off) are, and so how a
        masked pass scores them (:data:`groupcam_core.model_outputs.ModelOutputs`).
    output
        The ``output=`` selector of the class scores.
    at_input
        The target is the first input ``layer`` receives rather than its output.
    """

    fixed_batch_shape = True

    def __init__(
        self,
        model: keras.Model,
        layer: keras.Operation | Sequence[Target],
        layer_name: str,
        activation_layer: keras.Layer | None,
        model_outputs: ModelOutputs,
        output: OutputSelector = None,
        *,
        at_input: bool = False,
    ) -> None:
        self.model = model
        if isinstance(layer, (list, tuple)):
            self.targets = tuple(layer)
        else:
            self.targets = (Target(layer_name, layer, at_input),)
        self.layer = self.targets[0].operation
        self.layer_names = tuple(target.path for target in self.targets)
        self.layer_name = ", ".join(self.layer_names)
        self.activation_layer = activation_layer
        self.model_outputs = model_outputs
        self.output = output
        self.input_layout = keras.config.image_data_format()
        self.feature_layout = self.input_layout
        self.dtype = _input_dtype(model)
        self.call_kwargs = _training_kwargs(model)
        #: How the masked passes run (set by ``GroupCAM(fast=True)`` for an explanation).
        self.fast: FastMode = EXACT
        self._compiled: Any = None  # the exact passes' compiled forward
        self._compiled_fast: dict[str, Any] = {}  # by the dtype of fast passes

    @property
    def default_batch_size(self) -> int:
        return default_batch_size(
            DEFAULT_BATCH_SIZES, "accelerator" if _has_accelerator() else "cpu"
        )

    @contextmanager
    def logits(self) -> Iterator[None]:
        with logits_instead_of_activation(self.activation_layer):
            yield

    def _as_numpy(self, x: Any) -> np.ndarray:
        array = floating_batch(
            x,
            lambda x: np.asarray(x if isinstance(x, np.ndarray) else keras.ops.convert_to_numpy(x)),
            lambda dtype: is_real_floating(dtype, np),
            "an array",
        )
        array = cast_input(array, lambda a: a.astype(self.dtype, copy=False))
        self._check_channels(array)
        return array

    def select(self, raw: Any) -> Any:
        return select_output(raw, self.output)

    @contextmanager
    def routed(self, make: Callable[[str], Callable[[Any], Any]]) -> Iterator[None]:
        """Route every target tensor through ``make(path)`` while the block runs."""
        with ExitStack() as stack:
            for target in self.targets:
                stack.enter_context(target.routed(make(target.path)))
            yield

    def pass_result(
        self, activations: Sequence[Any], gradients: Sequence[Any], outputs: Any, targets: Any
    ) -> GradientPass:
        if len(self.targets) == 1:
            return GradientPass(activations[0], gradients[0], outputs, targets)
        return GradientPass(
            tuple(activations), tuple(gradients), outputs, targets, self.layer_names
        )

    def run_model(self, call: Callable[[], Any], x: Any) -> Any:
        """``call()``, a run of the model on ``x``; its errors keep their type, with a note.

        Every run of the model goes through here: the default-layer probe, the
        gradient pass and the masked forward passes. Subclassed models declare no
        input shape, so a batch in the wrong layout or with the wrong channel
        count is only found when the model runs; the error then names the
        batch's shape, the layout, a hint when the batch looks like the other
        layout, and the channel count the model was built for when known.
        """
        try:
            return call()
        except GroupCAMError:
            raise
        except Exception as error:
            channels = self._built_channels()
            takes = f", which takes {channels} channels" if channels is not None else ""
            description = f"the model ({self.model.name}{takes})"
            note_model_failure(error, description, tuple(x.shape), self.input_layout)
            raise

    def _built_channels(self) -> int | None:
        """The channel count of the batch the model was built on, when it is known."""
        axis = 3 if self.input_layout == "channels_last" else 1
        try:
            shape = self.model.input_shape
        except (AttributeError, ValueError):
            # A subclassed model remembers the shapes it was first called (built) with.
            shapes = getattr(self.model, "_build_shapes_dict", None) or {}
            shape = next(iter(shapes.values())) if len(shapes) == 1 else None
        if isinstance(shape, (tuple, list)) and len(shape) == 4 and isinstance(shape[axis], int):
            return shape[axis]
        return None

    def probe(self, x: Any) -> Any:
        """Run the model once on the probe batch ``x``, for the default-layer search; its
        output (or, run abstractly, the output's shapes)."""
        return self.run_model(lambda: self._probe(x), x)

    def _probe(self, first: Any) -> Any:
        return self.model(first, **self.call_kwargs)

    def _trace_key(self) -> tuple[Any, ...]:
        """What a compiled forward of this backend bakes into its trace."""
        return (
            keras.backend.backend(),
            self.activation_layer is not None,  # switched off while tracing, or not
            tuple(sorted(self.call_kwargs.items())),
            selector_key(self.output),
            self.fast.dtype,  # the mixed-precision policy of the trace (fast=True)
        )

    def _forward_function(self, build: Callable[..., Callable[..., Any]]) -> Callable[..., Any]:
        """The model's shared compiled forward for this backend's trace key.

        ``build(model_reference, call_kwargs, output, dtype)`` makes it when the
        model has none yet; it must not hold the backend (which holds the model).
        """
        dtype = self.fast.dtype
        found = self._compiled if dtype is None else self._compiled_fast.get(dtype)
        if found is None:
            kwargs, output = dict(self.call_kwargs), self.output
            found = shared_forward(
                self.model,
                self._trace_key(),
                output,
                lambda reference: build(reference, kwargs, output, dtype),
            )
            if dtype is None:
                self._compiled = found
            else:
                self._compiled_fast[dtype] = found
        return found

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


def _input_dtype(model: keras.Model) -> str:
    """The dtype batches are handed to the model in.

    The dtype of the model's declared inputs, else its ``input_dtype``; a
    half-precision one (a model under a ``"mixed_bfloat16"`` or
    ``"mixed_float16"`` policy reports its compute dtype) becomes float32: such
    models cast their inputs themselves, and groupcam's masks are made in float32.
    """
    declared = [getattr(tensor, "dtype", None) for tensor in getattr(model, "inputs", None) or []]
    dtype = declared[0] if declared and declared[0] else None
    if dtype is None:
        dtype = getattr(model, "input_dtype", None) or keras.config.floatx()
    name = keras.backend.standardize_dtype(dtype)
    return "float32" if name in ("bfloat16", "float16") else name


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

    def _probe(self, first: Any) -> Any:
        return self.model(self.tf.constant(first), **self.call_kwargs)

    def gradient_pass(self, x: np.ndarray, objective: Objective) -> GradientPass:
        return tensorflow_gradient_pass(self, x, objective)

    def forward(self, x: np.ndarray) -> np.ndarray:
        compiled = self._forward_function(_tensorflow_forward)
        with self.logits():
            return np.asarray(self.run_model(lambda: compiled(self.tf.constant(x)), x))

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

    def variables(self) -> tuple[list[Any], list[Any]]:
        return (
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
        )

    def prepare_input(self, x: Any) -> Any:
        return self.jnp.asarray(self._as_numpy(x))

    def gradient_pass(self, x: Any, objective: Objective) -> GradientPass:
        return jax_gradient_pass(self, x, objective)

    def _probe(self, first: Any) -> None:
        """Abstract (``jax.eval_shape``): shapes only, no arithmetic, for a built model.

        Eager JAX runs a large network op by op, seconds per image on a CPU; the
        layer search needs only the order of the calls and their output shapes.
        An unbuilt model (``stateless_call`` needs its variables) and anything the
        abstract run cannot do, a batch the model refuses included, are run
        eagerly instead, so that a failure is the model's own error on the batch.
        """
        if self.model.built:
            abstract = self._abstract_run(first)
            if abstract is not None:
                return abstract
        return self.model(first, **self.call_kwargs)

    def _abstract_run(self, first: Any) -> Any:
        """``jax.eval_shape`` of the model on ``first`` (the output's shapes); ``None`` if it
        raised."""
        trainable, frozen = self.variables()
        kwargs = self.call_kwargs
        try:
            return self.jax.eval_shape(
                lambda batch: self.model.stateless_call(trainable, frozen, batch, **kwargs)[0],
                first,
            )
        except GroupCAMError:
            raise
        except Exception:
            return None  # the eager run that follows reports real failures

    def forward(self, x: Any) -> Any:
        compiled = self._forward_function(_jax_forward)
        trainable, frozen = self.variables()
        with self.logits():
            return self.run_model(lambda: compiled(trainable, frozen, x), x)

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

    def gradient_pass(self, x: Any, objective: Objective) -> GradientPass:
        return torch_gradient_pass(self, x, objective)

    def _probe(self, first: Any) -> Any:
        with self.torch.no_grad():
            return self.model(first, **self.call_kwargs)

    def forward(self, x: Any) -> Any:
        with self.torch.no_grad(), self.logits(), mixed_precision(self.model, self.fast.dtype):
            return self.select(self.run_model(lambda: self.model(x, **self.call_kwargs), x))

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.detach().cpu().numpy()


def _tensorflow_forward(
    reference: Any, call_kwargs: dict[str, Any], output: OutputSelector, dtype: str | None
) -> Callable[[Any], Any]:
    """A ``tf.function`` of the model that ``reference`` (a weak reference) points to.

    With ``dtype``, the model is traced under the mixed policy of that dtype.
    """
    import tensorflow as tf

    def forward(batch: Any) -> Any:
        model = reference()
        with mixed_precision(model, dtype):
            return select_output(model(batch, **call_kwargs), output)

    return tf.function(forward, reduce_retracing=True)


def _jax_forward(
    reference: Any, call_kwargs: dict[str, Any], output: OutputSelector, dtype: str | None
) -> Callable[[Any, Any, Any], Any]:
    """A ``jax.jit`` of ``stateless_call`` of the model ``reference`` points to."""
    import jax

    def forward(trainable: Any, frozen: Any, batch: Any) -> Any:
        model = reference()
        with mixed_precision(model, dtype):
            outputs, _ = model.stateless_call(trainable, frozen, batch, **call_kwargs)
        return select_output(outputs, output)

    return jax.jit(forward)


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
