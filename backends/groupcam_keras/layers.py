"""Finding and patching the target of a Keras 3 model: a layer, a graph operation, or an input.

A target is the output of a *layer* (any model kind), the output of a non-layer
*operation* of a functional graph (``x + y``, ``keras.ops.relu(x)``: Keras makes
one ``keras.Operation`` per such call when it builds the graph), or the first
input of a layer, spelled ``"<layer>:input"`` (the tensor as that layer receives
it; the only way to reach a tensor made by ``x + y`` inside a subclassed model's
``call``, which creates no operation).

Keras 3 looks ``call`` up on the instance each time it runs a layer or an
operation, on every backend, so an instance attribute routes a tensor through
groupcam for the duration of one block, whatever the model kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, NamedTuple

import keras

from groupcam_core.errors import BackendError, LayerNotFoundError, TargetLayerError
from groupcam_core.kit import LayerCall, LayerCallRecorder, LayerKind, unknown_layer_error
from groupcam_core.model_outputs import ModelOutputs

__all__ = [
    "CONVOLUTIONS",
    "INPUT_SUFFIX",
    "Target",
    "all_layers",
    "final_activation",
    "record_layer_calls",
    "logits_instead_of_activation",
    "output_layer",
    "patched_call",
    "patched_input",
    "resolve_layer",
]

CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)

POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)

#: Appended to a layer's path to name the tensor that layer receives.
INPUT_SUFFIX = ":input"


class Target(NamedTuple):
    """Where the explained feature map is taken.

    Attributes
    ----------
    path
        The name the user sees: ``"outer/inner"``, or ``"outer/inner:input"``.
    operation
        The layer or functional-graph operation whose ``call`` is routed.
    at_input
        ``True``: the operation's first input; ``False``: its output.
    """

    path: str
    operation: keras.Operation
    at_input: bool = False

    def routed(self, transform: Callable[[Any], Any]) -> AbstractContextManager[None]:
        """Route the target tensor through ``transform`` while the block runs."""
        if self.at_input:
            return patched_input(self.operation, transform, self.path)
        return patched_call(self.operation, transform)


def _children(operation: Any) -> list[Any]:
    """The layers and, in a functional graph, the other operations directly inside.

    A model lists its ``layers``; any other layer, the sublayers it tracks (the
    blocks of a keras-hub backbone's encoder, the projections of a
    ``MultiHeadAttention``), which Keras 3 keeps in the attributes it assigns.
    """
    if isinstance(operation, keras.Function):
        return operation.operations
    layers = getattr(operation, "layers", None)
    if layers:
        return list(layers)
    flatten = getattr(operation, "_flatten_layers", None)  # Keras 3's own walk of tracked layers
    if callable(flatten):
        return list(flatten(include_self=False, recursive=False))
    return []


def all_layers(model: Any, prefix: str = "") -> Iterator[tuple[str, keras.Operation]]:
    """Every layer and graph operation below ``model``, depth first, as ``("outer/inner", op)``.

    Functional models (``keras.Function``) list their operations, which holds
    their layers and the non-layer operations of their graph in topological
    order; Sequential and subclassed models list their layers. Nested models are
    walked too, their contents prefixed with their path.
    """
    for operation in _children(model):
        path = f"{prefix}{operation.name}"
        yield path, operation
        if _children(operation):
            yield from all_layers(operation, prefix=f"{path}/")


def resolve_layer(model: keras.Model, target: str | keras.Operation) -> Target:
    """The :class:`Target` for a name, a path, ``"<name or path>:input"``, or an object.

    Raises
    ------
    LayerNotFoundError
        Nothing of that name or identity is in the model, or the name is ambiguous.
    BackendError
        ``target`` is neither a string nor a Keras operation.
    """
    layers = list(all_layers(model))
    if isinstance(target, str):
        name, at_input = target, False
        if target.endswith(INPUT_SUFFIX):
            name, at_input = target[: -len(INPUT_SUFFIX)], True
        path, operation = _by_name(name, layers)
        return Target(path + INPUT_SUFFIX if at_input else path, operation, at_input)
    if isinstance(target, keras.Operation):
        for path, operation in layers:
            if operation is target:
                return Target(path, operation)
        raise LayerNotFoundError(f"layer {target.name!r} is not part of the model")
    raise BackendError(
        "target_layer must be a layer or operation name (str, optionally ending in "
        f"{INPUT_SUFFIX!r}), a keras Layer or Operation of the model, or None; "
        f"got {type(target).__name__}"
    )


def _by_name(name: str, layers: list[tuple[str, keras.Operation]]) -> tuple[str, keras.Operation]:
    exact = [(path, operation) for path, operation in layers if path == name]
    if exact:
        return exact[0]
    by_name = [(path, operation) for path, operation in layers if operation.name == name]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise LayerNotFoundError(
            f"{len(by_name)} layers are named {name!r}: "
            f"{', '.join(path for path, _ in by_name)}; pass the full path"
        )
    names = [path for path, _ in layers] + [operation.name for _, operation in layers]
    raise unknown_layer_error(name, names)


@contextmanager
def replaced_call(operation: keras.Operation, call: Callable[..., Any]) -> Iterator[None]:
    """Make ``operation`` run ``call`` instead of its own ``call`` while the block runs.

    Keras 3 looks ``call`` up on the instance at every call on all backends, for
    layers and for the other operations of a functional graph, so an instance
    attribute takes effect everywhere; it is removed on exit (or the caller's own
    instance attribute is put back).
    """
    had_own = "call" in operation.__dict__
    previous = operation.__dict__.get("call")
    operation.call = call
    try:
        yield
    finally:
        if had_own:
            operation.call = previous
        else:
            del operation.call


def patched_call(
    operation: keras.Operation, transform: Callable[[Any], Any]
) -> AbstractContextManager[None]:
    """Route ``operation``'s output through ``transform`` while the block runs."""
    original = operation.call

    def call(*args: Any, **kwargs: Any) -> Any:
        return transform(original(*args, **kwargs))

    return replaced_call(operation, call)


def patched_input(
    operation: keras.Operation, transform: Callable[[Any], Any], path: str = ""
) -> AbstractContextManager[None]:
    """Route the first input ``operation``'s ``call`` receives through ``transform``.

    Raises
    ------
    TargetLayerError
        (when the model runs) The operation was called without a positional
        input, or with a list of tensors (a merge layer) instead of one tensor.
    """
    original = operation.call
    name = path or f"{operation.name}{INPUT_SUFFIX}"

    def call(*args: Any, **kwargs: Any) -> Any:
        if not args:
            raise TargetLayerError(
                f"target {name!r}: {operation.name!r} was called without a positional input"
            )
        first = args[0]
        if not (hasattr(first, "shape") and hasattr(first, "dtype")):
            raise TargetLayerError(
                f"target {name!r}: {operation.name!r} receives a {type(first).__name__}, not "
                "one tensor; name the layer or operation that makes the tensor you want"
            )
        return original(transform(first), *args[1:], **kwargs)

    return replaced_call(operation, call)


def _kind(operation: keras.Operation) -> LayerKind:
    if isinstance(operation, CONVOLUTIONS):
        return "convolution"
    if isinstance(operation, POOLING):
        return "pooling"
    if _children(operation):
        return "container"
    return "other"


def record_layer_calls(model: keras.Model, run: Callable[[], Any]) -> tuple[list[LayerCall], Any]:
    """Every layer's, operation's and layer input's last call in one run, and the run's output.

    ``run`` calls the model once (eagerly or on abstract values) while every
    layer and graph operation is patched to record its calls;
    :func:`groupcam_core.kit.pick_last_feature_layer` chooses among them. A layer's
    first input that no recorded operation made (a tensor computed by ``x + y``
    in a subclassed model's ``call``) is recorded too, as ``"<layer>:input"``,
    when that layer's call starts.

    Examples of the choice on ``keras.applications``: ``block5_conv3`` for
    VGG16, ``conv5_block3_out`` for ResNet50, the final residual ``Add``
    operation for ConvNeXt (a non-layer operation of the graph), and inside a
    nested base model, the layer or operation within it.
    """
    layers = list(all_layers(model))
    kinds = {path: _kind(operation) for path, operation in layers}
    recorder = LayerCallRecorder(keras.config.image_data_format())
    made: set[int] = set()  # ids of the tensors recorded operations returned
    keep_alive: list[Any] = []  # ...kept alive, so that ids stay unique during the run

    def record(name: str, value: Any, kind: LayerKind) -> None:
        shape = getattr(value, "shape", None)
        floating = "float" in str(getattr(value, "dtype", ""))  # float16/32/64 and bfloat16
        recorder.record(name, None if shape is None else tuple(shape), floating, kind)

    def make(path: str, operation: keras.Operation) -> Callable[..., Any]:
        original = operation.call

        def call(*args: Any, **kwargs: Any) -> Any:
            if args and hasattr(args[0], "shape") and id(args[0]) not in made:
                record(path + INPUT_SUFFIX, args[0], "other")
            output = original(*args, **kwargs)
            record(path, output, kinds[path])
            for tensor in keras.tree.flatten(output):
                made.add(id(tensor))
                keep_alive.append(tensor)
            return output

        return call

    with ExitStack() as stack:
        for path, operation in layers:
            stack.enter_context(replaced_call(operation, make(path, operation)))
        output = run()
    return list(recorder.finished.values()), output


def output_layer(model: keras.Layer) -> keras.Layer | None:
    """The layer that makes the model's only output (inside nested models), if one can be seen."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None)
    if isinstance(layer, keras.Model):
        return output_layer(layer) or layer
    return layer


def final_activation(model: keras.Model) -> tuple[keras.Layer | None, ModelOutputs]:
    """The layer that applies the model's final softmax or sigmoid, if one can be seen,
    and how the logits it is given are scored: ``"logits"`` (softmax) or ``"sigmoid"``;
    ``(None, "logits")`` when there is no such layer."""
    try:
        layer = output_layer(model)
    except (AttributeError, ValueError):
        layer = None
    if layer is None:
        return None, "logits"
    if isinstance(layer, keras.layers.Softmax):
        return layer, "logits"
    activation = getattr(layer, "activation", None)
    if activation is keras.activations.softmax:
        return layer, "logits"
    if activation is keras.activations.sigmoid:
        return layer, "sigmoid"
    return None, "logits"


@contextmanager
def logits_instead_of_activation(layer: keras.Layer | None) -> Iterator[None]:
    """Make the model output the logits before its final softmax or sigmoid while the
    block runs."""
    if layer is None:
        yield
        return
    if isinstance(layer, keras.layers.Softmax):
        with _identity_call(layer):
            yield
        return
    previous = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = previous


def _identity_call(layer: keras.Layer) -> Any:
    def call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        return inputs

    return replaced_call(layer, call)
