"""Explainers of one model share its compiled forward, which does not keep the model alive."""

from __future__ import annotations

import gc
import logging
import weakref

import keras
import numpy as np
import pytest
from _support.keras_models import functional_cnn

from groupcam_keras import GroupCAM
from groupcam_keras.backend import _BACKENDS, KerasBackend
from groupcam_keras.compiled import _forwards


class _RetracingWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "retracing" in record.getMessage():
            self.messages.append(record.getMessage())


def _traces(compiled) -> int:
    if keras.backend.backend() == "tensorflow":
        return compiled.experimental_get_tracing_count()
    return compiled._cache_size()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(3, 32, 32, 3)).astype(np.float32)


def test_five_explainers_trace_once_per_shape_and_let_the_model_go(images, monkeypatch) -> None:
    if keras.backend.backend() == "torch":  # eager: nothing is compiled or traced
        cam = GroupCAM(functional_cnn(), "features", groups=4)
        cam(images)
        assert cam._backend.fixed_batch_shape is False
        assert cam._backend._compiled is None
        return
    shapes: set[tuple[int, ...]] = set()
    backend_class = _BACKENDS[keras.backend.backend()]
    forward = backend_class.forward

    def recording_forward(self: KerasBackend, x):
        shapes.add(tuple(x.shape))
        return forward(self, x)

    monkeypatch.setattr(backend_class, "forward", recording_forward)
    retracing = _RetracingWarnings()
    logger = logging.getLogger("tensorflow")
    logger.addHandler(retracing)
    try:
        model = functional_cnn(softmax=True)
        cams = [GroupCAM(model, "features", groups=4, batch_size=8) for _ in range(5)]
        maps = [cam(images) for cam in cams]
        compiled = {id(cam._backend._compiled) for cam in cams}
        assert len(compiled) == 1
        assert 1 <= _traces(cams[0]._backend._compiled) <= len(shapes)
        for other in maps[1:]:
            np.testing.assert_array_equal(other, maps[0])
        # What the trace bakes in makes another function: the softmax left on, an output selector.
        kept_softmax = GroupCAM(model, "features", groups=4, model_outputs="probabilities")
        kept_softmax(images[:1])
        selected = GroupCAM(model, "features", groups=4, output=lambda raw: raw)
        np.testing.assert_allclose(selected(images), maps[0], atol=1e-6)
        assert kept_softmax._backend._compiled is not cams[0]._backend._compiled
        assert selected._backend._compiled is not cams[0]._backend._compiled
        assert id(model) in _forwards
    finally:
        logger.removeHandler(retracing)
    assert retracing.messages == []

    collected, identity = weakref.ref(model), id(model)
    del model, cams, kept_softmax, selected, compiled
    gc.collect()
    assert collected() is None
    assert identity not in _forwards  # the cache let go of its entry too
