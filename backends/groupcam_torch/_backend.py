"""The torch implementation of the core's backend protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from groupcam_core.errors import GroupCAMError, InputError, model_failed
from groupcam_core.plumbing import cast_input
from groupcam_core.protocol import GradientPass, TargetResolver
from groupcam_core.targets import OutputSelector, select_class_scores

from .autograd import Capture, gradient_at_layers

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Autocast",
    "OutputSelector",
    "TorchBackend",
    "select_output",
]

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


@dataclass(frozen=True)
class Autocast:
    """The caller's ``torch.autocast`` state for one device type, to run the model under.

    The core's own arithmetic runs with autocast off (masks, blurs and scores in
    float32 or better); the model's passes run as the caller asked.
    """

    device_type: str
    enabled: bool
    dtype: torch.dtype | None

    @classmethod
    def ambient(cls, device_type: str) -> Autocast:
        """The autocast state in force now for ``device_type``."""
        try:
            enabled = torch.is_autocast_enabled(device_type)
            dtype = torch.get_autocast_dtype(device_type) if enabled else None
        except TypeError:  # torch < 2.4 has one function per device type
            if device_type == "cpu":
                enabled = torch.is_autocast_cpu_enabled()
                dtype = torch.get_autocast_cpu_dtype() if enabled else None
            else:
                enabled = torch.is_autocast_enabled()
                dtype = torch.get_autocast_gpu_dtype() if enabled else None
        return cls(device_type, bool(enabled), dtype)

    @contextmanager
    def model_passes(self) -> Iterator[None]:
        """Run the model under the caller's autocast (nothing to do when it was off)."""
        if not self.enabled:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    @contextmanager
    def core_arithmetic(self) -> Iterator[None]:
        """Switch the caller's autocast off for the core's arithmetic."""
        if not self.enabled:
            yield
            return
        with torch.autocast(self.device_type, enabled=False):
            yield


class TorchBackend:
    """One torch model and its target layer(s), seen through the core's protocol.

    ``layer`` and ``layer_name`` are one module and its name, or sequences of
    modules and names for several target layers (one gradient pass for all).
    """

    input_layout = "channels_first"
    feature_layout = "channels_first"
    fixed_batch_shape = False

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | Sequence[nn.Module],
        layer_name: str | Sequence[str],
        output: OutputSelector = None,
        outputs_probabilities: bool = False,
        autocast: Autocast | None = None,
    ) -> None:
        self.model = model
        if isinstance(layer, nn.Module):
            self.layers = [(str(layer_name), layer)]
        else:
            self.layers = list(zip(list(layer_name), list(layer), strict=True))
        self.layer = self.layers[0][1]
        self.layer_name = ", ".join(name for name, _ in self.layers)
        self.output = output
        self.outputs_probabilities = outputs_probabilities
        self.device, self.dtype = model_device_and_dtype(model)
        self.autocast = autocast or Autocast(self.device.type, False, None)

    @property
    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZES.get(self.device.type, 32)

    def prepare_input(self, x: Any) -> torch.Tensor:
        if torch.is_tensor(x):
            tensor = x.detach()
        else:
            try:
                tensor = torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError, RuntimeError) as error:
                raise InputError(
                    f"cannot turn the input of type {type(x).__name__} into a tensor: {error}"
                ) from error
        if not tensor.is_floating_point():
            raise InputError(
                f"expected a floating-point batch, got dtype {tensor.dtype}; "
                "convert and normalize images the way the model was trained"
            )
        return cast_input(tensor, lambda t: t.to(device=self.device, dtype=self.dtype))

    def run_model(self, x: torch.Tensor) -> Any:
        """The model's raw output on ``x``; its own errors become :class:`InputError`."""
        try:
            with self.autocast.model_passes():
                return self.model(x)
        except GroupCAMError:
            raise
        except Exception as error:
            raise model_failed(
                f"the model ({type(self.model).__name__})",
                tuple(x.shape),
                self.input_layout,
                error,
            ) from error

    def gradient_pass(self, x: torch.Tensor, objective: TargetResolver) -> GradientPass:
        def run(x: torch.Tensor, capture_for: Callable[[str], Capture]) -> torch.Tensor:
            handles = []
            try:
                for name, layer in self.layers:
                    capture = capture_for(name)
                    handles.append(
                        layer.register_forward_hook(
                            lambda module, inputs, out, capture=capture: capture(out)
                        )
                    )
                raw = self.run_model(x)
            finally:
                for handle in handles:
                    handle.remove()
            return select_output(raw, self.output)

        return gradient_at_layers(run, x, objective, [name for name, _ in self.layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The gradient pass has run the model on this batch already: an error here
        # is not the input's fault (out of memory, say), so it is passed on as it is.
        with torch.inference_mode(), self.autocast.model_passes():
            return select_output(self.model(x), self.output)

    def to_numpy(self, array: Any) -> np.ndarray:
        if not torch.is_tensor(array):
            return np.asarray(array)
        array = array.detach().cpu()
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()  # numpy has no bfloat16
        return array.numpy()
