"""The framework-neutral part of ``fast=True``."""

from __future__ import annotations

import pytest

from groupcam_core import ConfigError, GroupCAMWarning
from groupcam_core.fast import (
    EXACT,
    FastMode,
    check_fast,
    cpu_has_native_bfloat16,
    faster_mode,
    gpu_fast_mode,
)


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


class _Clock:
    """A clock that each run advances by the seconds its mode costs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("exact_s", "fast_s", "chosen"),
    [(1.0, 0.5, "bfloat16"), (1.0, 0.99, None), (1.0, 1.3, None), (1.0, 0.94, "bfloat16")],
)
def test_faster_mode_keeps_low_precision_only_where_it_is_measured_faster(
    exact_s: float, fast_s: float, chosen: str | None
) -> None:
    clock = _Clock()
    candidate = FastMode("bfloat16", False, True, "native bfloat16")
    runs: list[FastMode] = []

    def run(mode: FastMode) -> None:
        runs.append(mode)
        clock.now += fast_s if mode.active else exact_s

    found = faster_mode(candidate, run, repeats=2, clock=clock)
    assert found.dtype == chosen
    assert len(runs) == 6  # one warm-up and two timed runs of each mode, alternating
    assert [mode.active for mode in runs] == [False, True] * 3
    if chosen is None:
        assert "measured no faster" in found.reason
        assert not found.active
    else:
        assert found.reason.startswith("native bfloat16; ")
        assert f"{exact_s / fast_s:.2f}x" in found.reason


def test_faster_mode_runs_nothing_for_the_exact_mode() -> None:
    def run(mode: FastMode) -> None:
        raise AssertionError("no run expected")

    assert faster_mode(EXACT, run) is EXACT


def test_a_model_that_fails_in_low_precision_keeps_the_exact_passes() -> None:
    def run(mode: FastMode) -> None:
        if mode.active:
            raise RuntimeError("no bfloat16 kernel for this op")

    with pytest.warns(GroupCAMWarning, match="fast=True: bfloat16 passes failed") as caught:
        found = faster_mode(FastMode("bfloat16", reason="native"), run)
    assert caught[0].filename == __file__  # attributed to the caller's line
    assert not found.active
    assert "failed on this model (RuntimeError: no bfloat16 kernel for this op)" in found.reason
