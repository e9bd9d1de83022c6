"""The torch implementation of the core's backend protocol."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from groupcam_core.errors import GroupCAMError, InputError, model_failed
from groupcam_core.fast import EXACT, FastMode, gpu_fast_mode
from groupcam_core.plumbing import cast_input
from groupcam_core.protocol import GradientPass, TargetResolver
from groupcam_core.targets import OutputSelector, select_class_scores

from .autograd import Capture, gradient_at_layers

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Autocast",
    "OutputSelector",
    "TorchBackend",
    "fast_mode_for",
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


def _cpu_has(feature: str) -> bool:
    """A CPU feature test of ``torch.cpu`` (private helpers that older torch lacks)."""
    test = getattr(torch.cpu, feature, None)
    try:
        return bool(test()) if test is not None else False
    except Exception:  # pragma: no cover - a helper that fails means "unknown"
        return False


def fast_mode_for(device: torch.device, dtype: torch.dtype = torch.float32) -> FastMode:
    """The mode ``fast=True`` runs a model's masked passes in, on ``device``.

    Measured in docs/benchmarks.md: on a CPU with native bfloat16 arithmetic
    (AVX-512 BF16 or AMX) and oneDNN, bfloat16 autocast with channels-last
    inputs was 2 to 3 times faster than float32; without native bfloat16 the
    CPU would emulate it, so the passes stay exact. On CUDA: bfloat16 from
    compute capability 8.0 (Ampere) on, float16 on 7.x (Volta, Turing), whose
    tensor cores lack bfloat16. Other devices, and models that are not
    float32, keep the exact passes.
    """
    if dtype != torch.float32:
        return FastMode(reason=f"the model is {str(dtype).replace('torch.', '')}: exact passes")
    if device.type == "cpu":
        native = _cpu_has("_is_avx512_bf16_supported") or _cpu_has("_is_amx_tile_supported")
        if native and torch.backends.mkldnn.is_available():
            return FastMode(
                "bfloat16", True, True, "this CPU computes bfloat16 natively (AVX-512 BF16 or AMX)"
            )
        return FastMode(reason="this CPU has no native bfloat16 arithmetic: exact passes")
    if device.type == "cuda" and torch.cuda.is_available():
        return gpu_fast_mode(torch.cuda.get_device_capability(device), channels_last=True)
    return FastMode(reason=f"no fast mode measured on {device.type}: exact passes")


_TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# What a dtype mismatch between a half-precision tensor and a float32 one says.
_LOW_PRECISION_NAMES = re.compile(r"BFloat16|Half|bfloat16|float16")


def _set_autocast(device_type: str, enabled: bool) -> None:
    """``torch.set_autocast_enabled`` for one device type (torch < 2.4 had one per type)."""
    try:
        torch.set_autocast_enabled(device_type, enabled)
    except TypeError:  # pragma: no cover - torch < 2.4
        if device_type == "cpu":
            torch.set_autocast_cpu_enabled(enabled)
        else:
            torch.set_autocast_enabled(enabled)


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
        self.outputs_probabilities = outputs_probabilities
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

                    handles.append(layer.register_forward_hook(hook))
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
        dtype = _TORCH_DTYPES[str(self.fast.dtype)]
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
                    if not _LOW_PRECISION_NAMES.search(str(error)):
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
                _set_autocast(device_type, False)  # the autocast block restores it
                if torch.is_tensor(out) and out.is_floating_point():
                    return out.float()
            return out

        handles = [
            layer.register_forward_hook(
                lambda module, inputs, out, name=name: hook(module, inputs, out, name)
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
