"""Finding and patching the target layer of a Keras 3 model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import keras

from groupcam_core.errors import BackendError, LayerNotFoundError
from groupcam_core.explainer import (
    LayerCall,
    LayerKind,
    pick_last_feature_layer,
    unknown_layer_error,
)

__all__ = [
    "CONVOLUTIONS",
    "all_layers",
    "find_last_feature_layer",
    "patched_call",
    "resolve_layer",
]

CONVOLUTIONS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
)


def all_layers(model: keras.Layer, prefix: str = "") -> Iterator[tuple[str, keras.Layer]]:
    """Every layer below ``model``, depth first, as ``("outer/inner", layer)`` paths."""
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        yield path, layer
        if getattr(layer, "layers", None):
            yield from all_layers(layer, prefix=f"{path}/")


def resolve_layer(model: keras.Model, target: str | keras.Layer) -> tuple[str, keras.Layer]:
    """Return ``(path, layer)`` for a target given by name, path or layer object."""
    layers = list(all_layers(model))
    if isinstance(target, str):
        exact = [(path, layer) for path, layer in layers if path == target]
        if exact:
            return exact[0]
        by_name = [(path, layer) for path, layer in layers if layer.name == target]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise LayerNotFoundError(
                f"{len(by_name)} layers are named {target!r}: "
                f"{', '.join(p for p, _ in by_name)}; pass the full path"
            )
        names = [path for path, _ in layers] + [layer.name for _, layer in layers]
        raise unknown_layer_error(target, names)
    if isinstance(target, keras.Layer):
        for path, layer in layers:
            if layer is target:
                return path, layer
        raise LayerNotFoundError(f"layer {target.name!r} is not part of the model")
    raise BackendError(
        "target_layer must be a layer name (str), a keras Layer of the model, or None; "
        f"got {type(target).__name__}"
    )


@contextmanager
def replaced_call(layer: keras.Layer, call: Callable[..., Any]) -> Iterator[None]:
    """Make ``layer`` run ``call`` instead of its own ``call`` while the block runs.

    Keras 3 looks ``call`` up on the instance at every call on all backends, so
    an instance attribute takes effect everywhere; it is removed on exit (or the
    caller's own instance attribute is put back).
    """
    had_own = "call" in layer.__dict__
    previous = layer.__dict__.get("call")
    layer.call = call
    try:
        yield
    finally:
        if had_own:
            layer.call = previous
        else:
            del layer.call


def patched_call(layer: keras.Layer, transform: Callable[[Any], Any]) -> Any:
    """Route ``layer``'s output through ``transform`` while the block runs."""
    original = layer.call

    def call(*args: Any, **kwargs: Any) -> Any:
        return transform(original(*args, **kwargs))

    return replaced_call(layer, call)


@contextmanager
def patched_calls(
    layers: list[tuple[str, keras.Layer]], make: Callable[[str], Callable[[Any], Any]]
) -> Iterator[None]:
    """Patch each ``(path, layer)`` with ``make(path)`` (see :func:`patched_call`)."""
    with ExitStack() as stack:
        for path, layer in layers:
            stack.enter_context(patched_call(layer, make(path)))
        yield


POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)


def _kind(layer: keras.Layer) -> LayerKind:
    if isinstance(layer, CONVOLUTIONS):
        return "convolution"
    if isinstance(layer, POOLING):
        return "pooling"
    if getattr(layer, "layers", None):
        return "container"
    return "other"


def find_last_feature_layer(model: keras.Model, run: Callable[[], Any]) -> str:
    """Path of the last layer, in call order, that outputs a spatial feature map.

    ``run`` calls the model once while every layer is patched to record its
    calls; :func:`groupcam_core.explainer.pick_last_feature_layer` chooses
    (``conv5_block3_out`` for keras.applications' ResNet50, ``block5_conv3``
    for VGG16; inside a nested model, the layer within it).
    """
    layers = list(all_layers(model))
    last_call: dict[str, LayerCall] = {}
    counter = [0]
    channels_last = keras.config.image_data_format() == "channels_last"
    kinds = {path: _kind(layer) for path, layer in layers}

    def make(path: str) -> Callable[[Any], Any]:
        def record(output: Any) -> Any:
            counter[0] += 1
            shape = tuple(getattr(output, "shape", ()))
            spatial = len(shape) == 4 and (
                shape[1] * shape[2] > 1 if channels_last else shape[2] * shape[3] > 1
            )
            last_call[path] = LayerCall(path, counter[0], bool(spatial), kinds[path], shape)
            return output

        return record

    with patched_calls(layers, make):
        run()
    return pick_last_feature_layer(list(last_call.values()))


def _output_layer(model: keras.Layer) -> keras.Layer | None:
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None)
    if isinstance(layer, keras.Model):
        return _output_layer(layer) or layer
    return layer


def final_softmax(model: keras.Model) -> keras.Layer | None:
    """The layer that applies the model's final softmax, if one can be seen."""
    try:
        layer = _output_layer(model)
    except (AttributeError, ValueError):
        layer = None
    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return layer
    if getattr(layer, "activation", None) is keras.activations.softmax:
        return layer
    return None


@contextmanager
def logits_instead_of_softmax(layer: keras.Layer | None) -> Iterator[None]:
    """Make the model output pre-softmax logits while the block runs."""
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
