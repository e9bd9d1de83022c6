"""``fast=True``: how an adapter runs the masked forward passes when speed matters most.

Group-CAM's cost is almost all the G + 1 masked forward passes per image. With
``fast=True`` an adapter runs those passes in the device's low-precision mode
(bfloat16 with channels-last tensors on CPUs with native bfloat16 and on recent
GPUs, float16 on older GPUs) if, timed on the model itself at the first
explanation of each input shape, that mode is faster (:func:`faster_mode`);
otherwise in the exact mode. The gradient pass (step 1) and groupcam's own
arithmetic (masks, blurs, softmax, scores, merge) stay in float32 either way;
docs/benchmarks.md gives the measured speed-ups and how close the maps stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from .errors import ConfigError, warn

__all__ = [
    "EXACT",
    "FastMode",
    "check_fast",
    "cpu_has_native_bfloat16",
    "faster_mode",
    "gpu_fast_mode",
]

#: The fast mode must be at least this much faster than the exact passes to be used.
REQUIRED_SPEEDUP = 1.05


@dataclass(frozen=True)
class FastMode:
    """What ``fast=True`` does to the masked forward passes on one device.

    Attributes
    ----------
    dtype
        ``"bfloat16"`` or ``"float16"``: the precision the network runs in up to
        the target layer; ``None``: the model's own precision.
    channels_last
        The masked inputs are handed to the model channels-last in memory (torch).
    head_float32
        What runs after the target layer's last call (the classifier head, whose
        logits become the scores) runs in float32.
    reason
        Why this mode was chosen, in words.
    """

    dtype: str | None = None
    channels_last: bool = False
    head_float32: bool = False
    reason: str = "exact passes"

    @property
    def active(self) -> bool:
        """Whether anything differs from the exact passes."""
        return self.dtype is not None or self.channels_last


#: The exact passes: the model as it is.
EXACT = FastMode(reason="fast=False: the model's own precision and layout")


def check_fast(value: Any) -> bool:
    """``value`` if it is a bool, else :class:`~groupcam_core.ConfigError`."""
    if not isinstance(value, bool):
        raise ConfigError(f"fast must be True or False, got {value!r}")
    return value


@lru_cache(maxsize=1)
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (x86 AVX-512 BF16 or AMX-BF16).

    Read from ``/proc/cpuinfo``; ``False`` where that cannot be read (other
    systems), so that ``fast=True`` keeps the exact passes there.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def gpu_fast_mode(capability: tuple[int, int] | None, channels_last: bool = False) -> FastMode:
    """The fast mode for an NVIDIA GPU of compute ``capability`` (``None``: not known).

    bfloat16 from compute capability 8.0 (Ampere) on; float16 on 7.x (Volta,
    Turing), whose tensor cores have no bfloat16; exact passes below.
    """
    if capability is None:
        return FastMode(reason="unknown accelerator: exact passes")
    if capability[0] >= 8:
        return FastMode("bfloat16", channels_last, True, "bfloat16 tensor cores (compute 8+)")
    if capability[0] == 7:
        return FastMode("float16", channels_last, True, "float16 tensor cores (compute 7.x)")
    return FastMode(reason="no tensor cores (compute capability below 7): exact passes")


def faster_mode(
    candidate: FastMode,
    run: Callable[[FastMode], Any],
    repeats: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> FastMode:
    """``candidate`` if it runs a chunk of masked passes faster than the exact mode, else exact.

    Whether low precision pays depends on the model as well as the device
    (docs/benchmarks.md has a model it slows down on a device it speeds up
    others on), so the adapters measure it on the model: each mode runs once to warm up
    (compilation, caches), then ``repeats`` times alternately; the fastest run
    of each counts. ``candidate`` must be :data:`REQUIRED_SPEEDUP` times faster.
    A model that fails in ``candidate`` (an operation without a low-precision
    kernel, say) keeps the exact passes too; the reason says why.

    Parameters
    ----------
    candidate
        The device's fast mode.
    run
        Runs one chunk of masked passes in the mode given.
    repeats
        Timed runs of each mode.
    clock
        Seconds, monotonic.
    """
    if not candidate.active:
        return candidate
    modes = (EXACT, candidate)
    run(EXACT)
    try:
        run(candidate)
    except Exception as error:  # the model cannot run in low precision: keep it exact
        fallback = FastMode(
            reason=f"{candidate.dtype or 'channels-last'} passes failed on this model "
            f"({type(error).__name__}: {error}): exact passes"
        )
        warn(f"fast=True: {fallback.reason}")
        return fallback
    best = {mode: float("inf") for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            start = clock()
            run(mode)
            best[mode] = min(best[mode], clock() - start)
    speedup = best[EXACT] / max(best[candidate], 1e-12)
    if speedup >= REQUIRED_SPEEDUP:
        reason = f"{candidate.reason}; {speedup:.2f}x the exact passes here"
        return replace(candidate, reason=reason)
    return FastMode(
        reason=f"{candidate.dtype or 'channels-last'} passes measured no faster on this model "
        f"({speedup:.2f}x): exact passes"
    )
