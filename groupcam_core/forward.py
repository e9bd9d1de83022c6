"""The chunked forward passes through a :class:`~groupcam_core.protocol.Backend`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from array_api_compat import array_namespace

from .arguments import positive_int
from .errors import ModelOutputError, is_out_of_memory, warn
from .model_outputs import check_outputs, output_rows
from .protocol import Backend

__all__ = [
    "default_batch_size",
    "forward_in_chunks",
    "out_of_memory_warning",
    "padded_rows",
    "resolve_batch_size",
]


def padded_rows(rows: int, batch_size: int) -> int:
    """Rows a chunk is padded to for backends that compile one function per shape.

    Full chunks have ``batch_size`` rows; a shorter last chunk is padded to the
    next power of two (at most ``batch_size``). A compiled forward thus sees at
    most ``log2(batch_size) + 2`` shapes over its lifetime, each traced once,
    and a short tail wastes less than half its rows.
    """
    if rows >= batch_size:
        return rows
    return min(batch_size, 1 << (rows - 1).bit_length())


def forward_in_chunks(
    backend: Backend,
    count: int,
    batch_size: int,
    make_chunk: Callable[[int, int], Any],
    where: str,
    class_scores: bool = True,
) -> Iterator[tuple[int, int, Any]]:
    """Run ``count`` rows through ``backend.forward``, ``batch_size`` at a time.

    ``make_chunk(start, stop)`` builds the model-ready rows ``start:stop``. For
    backends with a fixed batch shape a short last chunk is padded with copies
    of its first row to :func:`padded_rows`. Yields ``(start, stop, outputs)``
    with the outputs of the real rows only; ``where`` names the inputs in the
    error raised for outputs that are not ``(rows, classes)`` (with
    ``class_scores=False``, outputs of any shape with a first axis of ``rows``,
    for target functions).

    A chunk that runs out of memory (the framework's out-of-memory error, see
    :func:`~groupcam_core.errors.is_out_of_memory`) is run again in halves, down
    to one row, and the rest goes in chunks of the size that worked; a warning
    says which. Rows are independent, so the outputs are the same.
    """
    requested, start = batch_size, 0
    while start < count:
        stop = min(start + batch_size, count)
        chunk = make_chunk(start, stop)
        rows = stop - start
        sent = padded_rows(rows, batch_size) if backend.fixed_batch_shape else rows
        if sent > rows:
            xp = array_namespace(chunk)
            filler = xp.broadcast_to(chunk[:1, ...], (sent - rows, *chunk.shape[1:]))
            chunk = xp.concat([chunk, filler], axis=0)
        try:
            outputs = backend.forward(chunk)
        except Exception as error:
            if batch_size == 1 or not is_out_of_memory(error):
                raise
            del chunk
            batch_size = max(1, min(batch_size, rows) // 2)  # the same rows, in halves
            continue
        if class_scores:
            check_outputs(outputs, sent, where=where)
        elif output_rows(outputs) != sent:
            raise ModelOutputError(
                f"{where} returned an output of shape {tuple(getattr(outputs, 'shape', ()))} "
                f"for a batch of {sent}; its first axis must be the batch"
            )
        yield start, stop, (outputs[:rows] if isinstance(outputs, list) else outputs[:rows, ...])
        start = stop
    if batch_size < requested:
        warn(out_of_memory_warning(where, requested, batch_size))


def out_of_memory_warning(where: str, requested: int, worked: int) -> str:
    """The warning for passes that ran out of memory in chunks of ``requested`` rows."""
    return (
        f"{where}: out of memory in chunks of {requested} rows; ran in chunks of {worked} "
        f"(pass batch_size={worked} to start there)"
    )


def resolve_batch_size(batch_size: Any, backend: Backend, preferred: int | None = None) -> int:
    """The chunk size: ``batch_size``, else ``preferred`` (an explainer's), else the backend's."""
    if batch_size is None:
        batch_size = preferred
    if batch_size is None:
        batch_size = backend.default_batch_size
    return positive_int(batch_size, "batch_size")


def default_batch_size(table: Mapping[str, int], device: str) -> int:
    """An adapter's default chunk size on ``device``, from its ``DEFAULT_BATCH_SIZES``.

    Every adapter's table has a ``"cpu"`` and an ``"accelerator"`` entry (and
    may have one per device type); a device without an entry of its own takes
    the ``"accelerator"`` one.
    """
    return table.get(device, table["accelerator"])
