"""The torch implementation of the core's backend protocol."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from groupcam_core.errors import (
    InputError,
)
from groupcam_core.protocol import GradientPass, TargetResolver
from groupcam_core.targets import OutputSelector, select_class_scores

from ._autograd import Capture, gradient_at_layer
from ._layers import first_convolution

__all__ = ["DEFAULT_BATCH_SIZES", "OutputSelector", "TorchBackend", "select_output"]

#: Rows per masked forward pass when the user gives no ``batch_size``, by device
#: type. On a CPU small chunks keep the working set in cache and are as fast per
#: image as large ones (see docs/benchmarks.md); accelerators want large chunks.
DEFAULT_BATCH_SIZES: dict[str, int] = {"cpu": 4, "cuda": 64, "mps": 32, "xpu": 64}


def select_output(raw: Any, selector: OutputSelector) -> torch.Tensor:
    """Pick the ``(B, classes)`` tensor from whatever the model returned."""
    return select_class_scores(raw, selector, torch.is_tensor, "torch.Tensor")


def model_device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (or buffer)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _look_like_probabilities(outputs: torch.Tensor) -> bool:
    if outputs.shape[1] < 2:
        return False
    values = outputs.float()  # not double: MPS has no float64
    return bool(
        (values >= 0).all()
        and torch.allclose(values.sum(dim=1), torch.ones_like(values[:, 0]), atol=1e-4)
    )


class TorchBackend:
    """One torch model and one target layer, seen through the core's protocol."""

    input_layout = "channels_first"
    feature_layout = "channels_first"
    fixed_batch_shape = False

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        layer_name: str,
        output: OutputSelector = None,
        outputs_probabilities: bool = False,
    ) -> None:
        self.model = model
        self.layer = layer
        self.layer_name = layer_name
        self.output = output
        self.outputs_probabilities = outputs_probabilities
        self.device, self.dtype = model_device_and_dtype(model)

    @property
    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZES.get(self.device.type, 32)

    def prepare_input(self, x: Any) -> torch.Tensor:
        if torch.is_tensor(x):
            tensor = x.detach()
        else:
            try:
                tensor = torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError) as error:
                raise InputError(
                    f"cannot turn the input of type {type(x).__name__} into a tensor: {error}"
                ) from error
        if not tensor.is_floating_point():
            raise InputError(
                f"expected a floating-point batch, got dtype {tensor.dtype}; "
                "convert and normalise images the way the model was trained"
            )
        tensor = tensor.to(device=self.device, dtype=self.dtype)
        self._check_channels(tensor)
        return tensor

    def _check_channels(self, tensor: torch.Tensor) -> None:
        found = first_convolution(self.model)
        if tensor.ndim != 4 or found is None:
            return
        name, convolution = found
        expected = convolution.in_channels
        if tensor.shape[1] != expected:
            hint = (
                "; it looks channels-last, use x.permute(0, 3, 1, 2)"
                if tensor.shape[3] == expected
                else ""
            )
            raise InputError(
                f"the model's first convolution {name!r} takes {expected} channels but the batch "
                f"has shape {tuple(tensor.shape)}; expected (B, {expected}, H, W){hint}"
            )

    def gradient_pass(self, x: torch.Tensor, resolve_targets: TargetResolver) -> GradientPass:
        def run(x: torch.Tensor, capture: Capture) -> torch.Tensor:
            handle = self.layer.register_forward_hook(lambda module, inputs, out: capture(out))
            try:
                raw = self.model(x)
            finally:
                handle.remove()
            return select_output(raw, self.output)

        result = gradient_at_layer(run, x, resolve_targets, self.layer_name)
        if not self.outputs_probabilities and _look_like_probabilities(result.outputs):
            warnings.warn(
                "the model's outputs look like probabilities (non-negative rows summing to 1); "
                "if its last layer applies softmax, pass model_outputs='probabilities' so that "
                "Group-CAM does not apply softmax a second time",
                stacklevel=4,
            )
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return select_output(self.model(x), self.output)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)
