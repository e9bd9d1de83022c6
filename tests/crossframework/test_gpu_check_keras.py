"""benchmarks/gpu_check.py measures Keras in a child process (with --cpu, on Keras-torch).

Here rather than in tests/keras: the child picks its own backend, so one run is enough.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_check


@pytest.mark.slow
def test_keras_runs_in_a_child_process() -> None:
    row = gpu_check.keras_in_child("torch", batch=2, runs=1, cpu=True)
    assert row.framework == "keras-torch"
    assert row.on_device, row.note
