"""Finding the target layer of a torch model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from groupcam_core.errors import BackendError, LayerNotFoundError
from groupcam_core.kit import (
    LayerCall,
    LayerCallRecorder,
    LayerKind,
    pick_last_feature_layer,
    unknown_layer_error,
)

__all__ = ["find_last_feature_layer", "record_layer_calls", "resolve_layer"]

_CONVOLUTIONS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.LazyConv1d,
    nn.LazyConv2d,
    nn.LazyConv3d,
    nn.LazyConvTranspose1d,
    nn.LazyConvTranspose2d,
    nn.LazyConvTranspose3d,
)
_POOLING = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.LPPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)


def _module_names(model: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if name}


def resolve_layer(model: nn.Module, target: str | nn.Module) -> tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a target given by name or by module."""
    names = _module_names(model)
    if isinstance(target, str):
        if target in names:
            return target, names[target]
        sample = ", ".join(repr(n) for n in list(names)[-8:])
        raise unknown_layer_error(
            target, list(names), f" (it has {len(names)} named layers; the last ones are {sample})"
        )
    if isinstance(target, nn.Module):
        for name, module in names.items():
            if module is target:
                return name, module
        raise LayerNotFoundError(
            f"the given {type(target).__name__} module is not a submodule of the model"
        )
    raise BackendError(
        "target_layer must be a layer name (str), a torch.nn.Module of the model, or None; "
        f"got {type(target).__name__}"
    )


def _kind(module: nn.Module) -> LayerKind:
    if isinstance(module, _CONVOLUTIONS):
        return "convolution"
    if isinstance(module, _POOLING):
        return "pooling"
    return "other"


def find_last_feature_layer(
    model: nn.Module,
    run: Callable[[], Any],
    layers: Mapping[str, tuple[nn.Module, LayerKind]] | None = None,
) -> str:
    """Name of the last module, in execution order, that outputs a spatial feature map.

    ``run()`` runs ``model`` once (on one probe image) while every submodule has
    a forward hook (:func:`record_layer_calls`);
    :func:`groupcam_core.kit.pick_last_feature_layer` chooses among the
    recorded calls. For a torchvision ResNet that is
    ``layer4``; for EfficientNet the activation after ``_conv_head``; for VGG
    the ReLU before the last max pooling. ``layers`` names the modules to watch
    and their kinds (default: every submodule, its kind from its class).
    """
    calls, _ = record_layer_calls(model, run, layers)
    return pick_last_feature_layer(calls)


def record_layer_calls(
    model: nn.Module,
    run: Callable[[], Any],
    layers: Mapping[str, tuple[nn.Module, LayerKind]] | None = None,
) -> tuple[list[LayerCall], Any]:
    """Every module's last call in one ``run()`` of ``model`` (forward hooks), and its output.

    ``layers`` names the modules to watch and their kinds (default: every
    submodule, its kind from its class).
    """
    recorder = LayerCallRecorder("channels_first")
    handles = []

    def make_hook(name: str, kind: LayerKind) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
                output = output[0]  # explained at its first tensor, as the gradient pass does
            if torch.is_tensor(output):
                recorder.record(name, tuple(output.shape), output.is_floating_point(), kind)
            else:
                recorder.record(name, None, False, kind)

        return hook

    if layers is None:
        layers = {name: (module, _kind(module)) for name, module in _module_names(model).items()}
    try:
        for name, (module, kind) in layers.items():
            handles.append(module.register_forward_hook(make_hook(name, kind)))
        with torch.inference_mode():
            output = run()
    finally:
        for handle in handles:
            handle.remove()
    return list(recorder.finished.values()), output
