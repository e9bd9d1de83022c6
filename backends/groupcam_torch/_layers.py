"""Finding the target layer of a torch model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from groupcam_core.errors import BackendError, LayerNotFoundError
from groupcam_core.explainer import pick_last_feature_layer, unknown_layer_error

__all__ = ["find_last_feature_layer", "first_convolution", "resolve_layer"]

_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


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


def first_convolution(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``nn.Conv2d`` in registration order with a known input channel count."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and not isinstance(
            module, nn.modules.lazy.LazyModuleMixin
        ):
            return name, module
    return None


def find_last_feature_layer(model: nn.Module, probe: Any) -> str:
    """Name of the last module, in execution order, that outputs a spatial feature map.

    Runs ``model`` once on ``probe`` with forward hooks on every submodule and
    picks, among modules whose last call comes at or after the last call of a
    convolution, the last one to finish whose output is a 4-D floating tensor
    larger than 1x1 (so global pooling and the classifier are passed over). For
    a torchvision ResNet that is ``layer4``; for EfficientNet the activation
    after ``_conv_head``.
    """
    last_call: dict[str, tuple[int, bool]] = {}
    counter = [0]
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            counter[0] += 1
            spatial = (
                torch.is_tensor(output)
                and output.ndim == 4
                and output.is_floating_point()
                and output.shape[2] * output.shape[3] > 1
            )
            last_call[name] = (counter[0], bool(spatial))

        return hook

    modules = _module_names(model)
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        with torch.inference_mode():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()

    return pick_last_feature_layer(
        last_call, [name for name, module in modules.items() if isinstance(module, _CONVOLUTIONS)]
    )
