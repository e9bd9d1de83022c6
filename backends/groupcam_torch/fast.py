"""The precision of a torch model's passes: ``fast=True``'s mode, and the caller's autocast.

``fast=True`` runs the masked passes under bfloat16 (or float16) autocast with
channels-last inputs where :func:`fast_mode` finds the device computes them
natively; :class:`Autocast` keeps the caller's own ``torch.autocast`` for the
model's passes while groupcam's arithmetic runs in float32.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from groupcam_core.fast import FastMode, gpu_fast_mode

__all__ = [
    "LOW_PRECISION_DTYPES",
    "LOW_PRECISION_MISMATCH",
    "Autocast",
    "fast_mode",
    "set_autocast",
]


def _cpu_has(feature: str) -> bool:
    """A CPU feature test of ``torch.cpu`` (private helpers that older torch lacks)."""
    test = getattr(torch.cpu, feature, None)
    try:
        return bool(test()) if test is not None else False
    except Exception:  # pragma: no cover - a helper that fails means "unknown"
        return False


def fast_mode(device: torch.device, dtype: torch.dtype = torch.float32) -> FastMode:
    """The mode ``fast=True`` runs a model's masked passes in, on ``device``.

    On a CPU with native bfloat16 arithmetic (AVX-512 BF16 or AMX) and oneDNN:
    bfloat16 autocast with channels-last inputs (without native bfloat16 the
    CPU would emulate it: exact passes). On CUDA: bfloat16 from compute
    capability 8.0 on, float16 on 7.x. Other devices, and models that are not
    float32, keep the exact passes. docs/benchmarks.md has the measurements.
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


#: torch's dtype for each low-precision dtype name of :class:`~groupcam_core.fast.FastMode`.
LOW_PRECISION_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: What a dtype mismatch between a half-precision tensor and a float32 one says.
LOW_PRECISION_MISMATCH = re.compile(r"BFloat16|Half|bfloat16|float16")


def set_autocast(device_type: str, enabled: bool) -> None:
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
