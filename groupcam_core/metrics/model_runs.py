"""What the model-running metrics share: host batches and chunked passes for probabilities."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ..batches import to_channels_first, to_channels_last, validate_input
from ..forward import forward_in_chunks, resolve_batch_size
from ..kit.explainer import ExplainerBase, as_backend, preferred_batch_size
from ..protocol import Backend
from ..targets import ClassObjective, TargetSpec, target_probabilities
from .checks import check_maps

__all__ = [
    "ExplainerLike",
    "MetricRun",
    "clean_pass",
    "host_batch",
    "metric_run",
    "scores",
]

#: A core backend or a groupcam explainer (any ``ExplainerBase``).
ExplainerLike = Backend | ExplainerBase


@dataclass(frozen=True)
class MetricRun:
    """A metric's model and inputs: the backend, its chunk size, the images and the maps.

    ``images`` are channels-first host numpy in the model's input dtype, ``maps``
    float64 ``(B, H, W)`` checked against them.
    """

    backend: Backend
    chunk: int
    images: np.ndarray
    maps: np.ndarray


@contextmanager
def metric_run(
    explainer: ExplainerLike, x: Any, saliency: Any, batch_size: int | None
) -> Iterator[MetricRun]:
    """The explainer's model as a backend, with the batch and maps checked, while the block runs."""
    with as_backend(explainer, x) as backend:
        chunk = resolve_batch_size(batch_size, backend, preferred_batch_size(explainer))
        images = host_batch(backend, x)
        shape = (images.shape[0], *images.shape[2:])
        yield MetricRun(backend, chunk, images, check_maps(saliency, shape))


def host_batch(backend: Backend, x: Any) -> np.ndarray:
    """The batch as channels-first host numpy, in the model's input dtype, validated."""
    prepared = backend.prepare_input(x)
    layout = backend.input_layout
    validate_input(prepared, layout, array_namespace(prepared))
    host = np.asarray(backend.to_numpy(prepared))
    return np.asarray(to_channels_first(host, layout, array_namespace(host)))


def _to_layout(chunk: np.ndarray, backend: Backend) -> np.ndarray:
    if backend.input_layout == "channels_last":
        return np.ascontiguousarray(to_channels_last(chunk, array_namespace(chunk)))
    return chunk


def _host_outputs(
    backend: Backend, count: int, batch_size: int, build: Callable[[int, int], np.ndarray]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """:func:`~groupcam_core.forward.forward_in_chunks` on channels-first host rows.

    ``build(start, stop)`` returns the rows ``start:stop``; yields ``(start,
    stop, outputs)`` with float64 host outputs.
    """
    chunks = forward_in_chunks(
        backend,
        count,
        batch_size,
        lambda start, stop: backend.prepare_input(_to_layout(build(start, stop), backend)),
        "the model (on metric inputs)",
    )
    for start, stop, outputs in chunks:
        yield start, stop, np.asarray(backend.to_numpy(outputs), dtype=np.float64)


def _probabilities(backend: Backend, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return target_probabilities(
        outputs, targets, backend.model_outputs, np.float64, array_namespace(outputs)
    )


def clean_pass(
    backend: Backend, images: np.ndarray, targets: TargetSpec, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Targets (given or predicted) and their probabilities on the clean images."""
    outputs = np.concatenate(
        [
            out
            for _, _, out in _host_outputs(
                backend, images.shape[0], batch_size, lambda a, b: images[a:b]
            )
        ]
    )
    objective = ClassObjective(targets, images.shape[0], backend.model_outputs)
    resolved = np.asarray(objective(outputs), dtype=np.int64)
    return resolved, _probabilities(backend, outputs, resolved)


def scores(
    backend: Backend,
    count: int,
    batch_size: int,
    build: Callable[[int, int], np.ndarray],
    row_targets: np.ndarray,
) -> np.ndarray:
    """Probability of ``row_targets[r]`` on each built row ``r``."""
    found = np.empty(count, dtype=np.float64)
    for start, stop, outputs in _host_outputs(backend, count, batch_size, build):
        found[start:stop] = _probabilities(backend, outputs, row_targets[start:stop])
    return found
