"""The torch implementation of the core's backend protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from groupcam_core.errors import GroupCAMError, note_model_failure
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

from .fast import LOW_PRECISION_DTYPES, LOW_PRECISION_MISMATCH, Autocast, set_autocast
from .gradients import Capture, gradient_at_layers

__all__ = ["DEFAULT_BATCH_SIZES", "TorchBackend", "model_device_and_dtype", "select_output"]

#: Rows per masked forward pass when the user gives no ``batch_size``, by device
#: type (any other accelerator: ``"accelerator"``). On a CPU small chunks keep
#: the working set in cache and are as fast per image as large ones (see
#: docs/benchmarks.md); accelerators want large chunks.
DEFAULT_BATCH_SIZES: dict[str, int] = {"cpu": 4, "mps": 32, "accelerator": 64}


def select_output(raw: Any, selector: OutputSelector) -> torch.Tensor:
    """Pick the ``(B, classes)`` tensor from whatever the model returned."""
    return select_class_scores(raw, selector, torch.is_tensor, "torch.Tensor")


def model_device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (or buffer)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _as_tensor(x: Any) -> torch.Tensor:
    return x.detach() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))


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
        model_outputs: ModelOutputs = "logits",
        autocast: Autocast | None = None,
        call_counts: dict[str, int] | None = None,
    ) -> None:
        self.model = model
        if isinstance(layer, nn.Module):
            self.layers = [(str(layer_name), layer)]
        else:
            self.layers = list(zip(list(layer_name), list(layer), strict=True))
        self.layer = self.layers[0][1]
        self.layer_name = ", ".join(name for name, _ in self.layers)
        self.output = output
        self.model_outputs = model_outputs
        self.device, self.dtype = model_device_and_dtype(model)
        self.autocast = autocast or Autocast(self.device.type, False, None)
        #: How the masked passes run (set by ``GroupCAM(fast=True)`` for an explanation).
        self.fast: FastMode = EXACT
        # Calls of each target layer in the gradient pass: the fast passes switch to
        # float32 after the last one.
        self.layer_calls: dict[str, int] = {}
        # The explainer's record of those counts from earlier explanations: the next
        # gradient pass starts its graph at each layer's last call.
        self.call_counts = call_counts if call_counts is not None else {}

    @property
    def default_batch_size(self) -> int:
        return default_batch_size(DEFAULT_BATCH_SIZES, self.device.type)

    def prepare_input(self, x: Any) -> torch.Tensor:
        tensor = floating_batch(x, _as_tensor, lambda dtype: dtype.is_floating_point, "a tensor")
        return cast_input(tensor, lambda t: t.to(device=self.device, dtype=self.dtype))

    def run_model(self, x: torch.Tensor) -> Any:
        """The model's raw output on ``x``; its own errors keep their type, with a note."""
        try:
            with self.autocast.model_passes():
                return self.model(x)
        except GroupCAMError:
            raise
        except Exception as error:
            description = f"the model ({type(self.model).__name__})"
            note_model_failure(error, description, tuple(x.shape), self.input_layout)
            raise

    def gradient_pass(self, x: torch.Tensor, objective: Objective) -> GradientPass:
        calls = dict.fromkeys((name for name, _ in self.layers), 0)

        def run(x: torch.Tensor, capture_for: Callable[[str], Capture]) -> torch.Tensor:
            handles = []
            calls.update(dict.fromkeys(calls, 0))  # a pass run again counts afresh
            try:
                for name, layer in self.layers:
                    capture = capture_for(name)

                    def hook(
                        _module: Any,
                        _inputs: Any,
                        out: Any,
                        name: str = name,
                        capture: Capture = capture,
                    ) -> Any:
                        calls[name] += 1
                        return capture(out)

                    # First among the layer's hooks: a model that records the layer's
                    # output in its own hook (transformers' backbones) records ours.
                    handles.append(layer.register_forward_hook(hook, prepend=True))
                raw = self.run_model(x)
            finally:
                for handle in handles:
                    handle.remove()
            return select_output(raw, self.output)

        names = [name for name, _ in self.layers]
        expected = {n: self.call_counts[n] for n in names if self.call_counts.get(n, 0) > 1}
        result = gradient_at_layers(run, x, objective, names, expected or None)
        self.layer_calls = dict(calls)
        self.call_counts.update(calls)
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The gradient pass has run the model on this batch already: an error here
        # is not the input's fault (out of memory, say), so it is passed on as it is.
        if self.fast.dtype is not None:
            return self._fast_forward(x)
        with torch.inference_mode(), self.autocast.model_passes():
            if self.fast.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return select_output(self.model(x), self.output)

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        """A masked pass in ``self.fast``'s precision, the head in float32 where it can be."""
        dtype = LOW_PRECISION_DTYPES[str(self.fast.dtype)]
        if self.fast.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        head = self.fast.head_float32 and bool(self.layer_calls)
        with torch.inference_mode():
            if head:
                try:
                    with (
                        torch.autocast(self.device.type, dtype=dtype),
                        self._float32_after_layers(),
                    ):
                        return select_output(self.model(x), self.output)
                except RuntimeError as error:
                    if not LOW_PRECISION_MISMATCH.search(str(error)):
                        raise
                    # A tensor made below the layer reaches the head in low precision
                    # (a skip connection, say): run the head in low precision too.
                    self.layer_calls = {}
            with torch.autocast(self.device.type, dtype=dtype):
                return select_output(self.model(x), self.output)

    @contextmanager
    def _float32_after_layers(self) -> Iterator[None]:
        """Switch autocast off, and the layer's output to float32, after the last target call."""
        left = dict(self.layer_calls)
        device_type = self.device.type

        def hook(module: Any, inputs: Any, out: Any, name: str) -> Any:
            left[name] -= 1
            if left[name] == 0 and not any(left.values()):
                set_autocast(device_type, False)  # the autocast block restores it
                if torch.is_tensor(out) and out.is_floating_point():
                    return out.float()
            return out

        handles = [
            layer.register_forward_hook(
                lambda module, inputs, out, name=name: hook(module, inputs, out, name),
                prepend=True,
            )
            for name, layer in self.layers
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def to_numpy(self, array: Any) -> np.ndarray:
        if not torch.is_tensor(array):
            return np.asarray(array)
        array = array.detach().cpu()
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()  # numpy has no bfloat16
        return array.numpy()
