"""The framework-neutral part of ``fast=True``."""

from __future__ import annotations

import pytest

from groupcam_core import ConfigError
from groupcam_core.fast import EXACT, FastMode, check_fast, cpu_has_native_bfloat16, gpu_fast_mode


def test_exact_is_inactive_and_low_precision_is_active() -> None:
    assert not EXACT.active
    assert FastMode("bfloat16").active
    assert FastMode(channels_last=True).active


@pytest.mark.parametrize(
    ("capability", "dtype"),
    [((9, 0), "bfloat16"), ((8, 0), "bfloat16"), ((7, 5), "float16"), ((6, 1), None), (None, None)],
)
def test_gpu_modes_follow_the_compute_capability(capability, dtype) -> None:
    mode = gpu_fast_mode(capability)
    assert mode.dtype == dtype
    assert mode.head_float32 == (dtype is not None)
    assert mode.reason


def test_fast_must_be_a_bool() -> None:
    assert check_fast(True) is True
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="fast must be True or False"):
            check_fast(bad)


def test_the_cpu_test_answers_a_bool() -> None:
    assert isinstance(cpu_has_native_bfloat16(), bool)
