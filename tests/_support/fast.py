"""Forcing an explainer's fast mode, whatever this device's own mode and timings are."""

from __future__ import annotations

from typing import Any

from groupcam_core.fast import FastMode

#: The mode the tests force unless they say otherwise.
FORCED_BFLOAT16 = FastMode("bfloat16", False, True, "forced by the test")


def force_fast_mode(cam: Any, mode: FastMode = FORCED_BFLOAT16) -> Any:
    """Make ``cam`` (a ``fast=True`` explainer) run its masked passes in ``mode``.

    Replaces the device's mode and skips the timing that would keep the exact
    passes where ``mode`` is not faster; returns ``cam``.
    """
    cam._fast_mode = lambda x=None: mode
    cam._measured_fast_mode = lambda backend, x, candidate: candidate
    return cam
