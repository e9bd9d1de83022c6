"""benchmarks/gpu_check.py's JAX part, on the CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_check


def test_without_a_gpu_jax_is_skipped() -> None:
    row = gpu_check.check_jax(batch=2, runs=1, cpu=False)
    assert row.device == "none"
    assert "skipped" in row.note


@pytest.mark.slow
def test_the_jax_check_measures_and_finds_nothing_leaving_early() -> None:
    row = gpu_check.check_jax(batch=2, runs=1, cpu=True)
    assert row.on_device
    assert row.exact_s > 0
    assert row.own_s > 0
    assert row.fast_spearman > 0.9
