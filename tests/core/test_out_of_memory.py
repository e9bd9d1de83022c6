"""Out of memory: chunks of masked passes and of the gradient pass are halved and retried."""

from __future__ import annotations

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend

from groupcam_core import GroupCAMWarning, explain_group_cam, make_config, run_method
from groupcam_core.errors import is_out_of_memory


class OutOfMemoryError(RuntimeError):
    """Named as torch's is (the core tells out-of-memory errors by name and message)."""


class _SmallMemory(FakeNumpyBackend):
    """Runs at most ``forward_rows`` masked rows and ``gradient_rows`` images at a time."""

    def __init__(self, forward_rows: int, gradient_rows: int, error=OutOfMemoryError, **kw):
        super().__init__(**kw)
        self.forward_rows, self.gradient_rows, self.error = forward_rows, gradient_rows, error
        self.gradient_sizes: list[int] = []

    def forward(self, x):
        if x.shape[0] > self.forward_rows:
            raise self.error(f"CUDA out of memory. Tried to allocate for {x.shape[0]} rows")
        return super().forward(x)

    def gradient_pass(self, x, resolve_targets):
        self.gradient_sizes.append(x.shape[0])
        if x.shape[0] > self.gradient_rows:
            raise self.error("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return super().gradient_pass(x, resolve_targets)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(4).normal(size=(5, 3, 16, 16))


def test_chunks_are_halved_until_they_fit_and_the_maps_are_the_same(images) -> None:
    config = make_config("paper", groups=4)
    plenty = explain_group_cam(FakeNumpyBackend(), images, config=config, batch_size=16)
    small = _SmallMemory(forward_rows=5, gradient_rows=2)
    with pytest.warns(GroupCAMWarning) as caught:
        found = explain_group_cam(small, images, config=config, batch_size=16)
    messages = [str(w.message) for w in caught]
    assert any(
        "masked inputs): out of memory in chunks of 16 rows; ran in chunks of 4" in m
        for m in messages
    ), messages
    assert any(
        "gradient pass of Group-CAM: out of memory in chunks of 5 rows; ran in chunks of 2" in m
        for m in messages
    ), messages
    assert max(small.chunk_rows) <= 5
    assert small.gradient_sizes[:3] == [5, 2, 2]  # the whole batch, then halves
    np.testing.assert_allclose(found.saliency, plenty.saliency, atol=1e-12)
    np.testing.assert_allclose(found.group_scores, plenty.group_scores, atol=1e-12)


def test_other_methods_halve_too(images) -> None:
    plenty = run_method("score-cam", FakeNumpyBackend(), images, batch_size=16)
    with pytest.warns(GroupCAMWarning, match="ran in chunks of 4"):
        found = run_method("score-cam", _SmallMemory(4, 8), images, batch_size=16)
    np.testing.assert_allclose(found.saliency, plenty.saliency, atol=1e-12)


def test_one_row_that_does_not_fit_and_other_errors_are_raised_as_they_are(images) -> None:
    with pytest.raises(OutOfMemoryError, match="CUDA out of memory"):
        explain_group_cam(_SmallMemory(0, 8), images, config=make_config("paper", groups=4))
    refusing = _SmallMemory(1, 8, error=lambda message: ValueError("one row at most"))
    with pytest.raises(ValueError, match="one row at most"):  # not memory: not retried
        explain_group_cam(refusing, images[:2], config=make_config("paper", groups=4))
    assert refusing.chunk_rows == []


def test_out_of_memory_errors_are_told_by_name_and_message() -> None:
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(type("ResourceExhaustedError", (Exception,), {})("x"))
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 GB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
