"""Explaining datasets on Ray Data: the same job as ``groupcam explain``, on a pool of actors.

Ray (``pip install "groupcam[ray]"``) is imported when these functions run,
never when this module is imported.

>>> import ray
>>> from groupcam import explain_dataset
>>> from groupcam.jobs import ExplainJob, ModelSource
>>> job = ExplainJob(ModelSource.parse("efficientnet-lite0"), groups=32)
>>> images = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)  # doctest: +SKIP
>>> results = explain_dataset(images, job, workers=8)  # doctest: +SKIP
>>> results.select_columns(["path", "target_name", "probability"]).show()  # doctest: +SKIP

Every actor loads the model once (:class:`~groupcam.jobs.worker.JobWorker`)
and explains one image at a time, exactly as the local runner does, so the maps
are the local run's (bit for bit when both use the same number of threads per
worker: ``ExplainJob.threads``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, SettingsError, UsageError
from .inputs import ImageInput, image_name, readable_part
from .runner import JobReport, explain_images
from .settings import ExplainJob
from .worker import RESULT_COLUMNS, JobWorker, Outcome

__all__ = [
    "OUTPUT_COLUMNS",
    "ExplainActor",
    "explain_dataset",
    "explain_images_on_ray",
    "ray_outcomes",
]

#: Columns of :func:`explain_dataset`'s result: the ``results.csv`` row, the bytes
#: of ``maps/<name>.npy`` and ``overlays/<name>.png`` (empty for an error), when
#: the worker finished the image (``time.time()``) and the digest of its model's
#: weights (see :func:`groupcam.jobs.models.weights_digest`).
OUTPUT_COLUMNS: tuple[str, ...] = (
    *RESULT_COLUMNS,
    "map_npy",
    "overlay_png",
    "finished",
    "weights",
)

#: At most this many images per block of the dataset ``groupcam explain --ray``
#: makes: results come back a block at a time, so a run stopped by Ctrl-C loses
#: at most the blocks in flight.
IMAGES_PER_BLOCK = 4


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise UsageError(f"--ray needs Ray Data ({error}); pip install 'groupcam[ray]'") from error
    return ray


def _name_for(path: str, image: Any) -> str:
    if path:
        file = Path(path)
        return image_name(path, readable_part(file, file.parent))
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]
    return f"image-{digest}"


class ExplainActor:
    """A Ray Data actor: loads the job's model once, explains the rows of each batch.

    A batch's columns: ``path`` (str) and optionally ``name`` (unique output
    names; made from the path when missing), ``index``, and the image as
    ``bytes`` (an encoded file, as ``ray.data.read_binary_files`` gives it) or
    ``image`` (a decoded ``(H, W, 3)`` array, as ``ray.data.read_images``
    gives it). Without either, the file at ``path`` is read.
    """

    def __init__(self, job: ExplainJob) -> None:
        self.worker = JobWorker(job)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Explain each row of ``batch``; return the :data:`OUTPUT_COLUMNS`."""
        count = len(next(iter(batch.values())))
        paths = batch.get("path", np.asarray([""] * count, dtype=object))
        columns: dict[str, list[Any]] = {column: [] for column in OUTPUT_COLUMNS}
        for row in range(count):
            path = str(paths[row])
            data = None
            if "bytes" in batch:
                data = bytes(batch["bytes"][row])
            elif "image" in batch:
                data = np.asarray(batch["image"][row])
            if "name" in batch:
                name = str(batch["name"][row])
            else:
                name = _name_for(path, data if data is not None else path)
            index = int(batch["index"][row]) if "index" in batch else row
            outcome = self.worker.explain(ImageInput(index, path, name), data)
            for column in RESULT_COLUMNS:
                columns[column].append(outcome.row.get(column, ""))
            columns["map_npy"].append(outcome.map_npy or b"")
            columns["overlay_png"].append(outcome.overlay_png or b"")
            columns["finished"].append(outcome.finished)
            columns["weights"].append(outcome.weights or "")
        return {column: _column(column, values) for column, values in columns.items()}


#: Columns held as float64 (NaN where a row has no value; ``degenerate`` as 0 or 1).
_NUMERIC = frozenset(
    ("target", "probability", "degenerate", "insertion_auc", "deletion_auc", "seconds", "finished")
)


def _column(name: str, values: list[Any]) -> np.ndarray:
    # One type per column in every batch, so that Arrow blocks always concatenate.
    if name in ("map_npy", "overlay_png"):
        return np.asarray(values, dtype=object)
    if name in _NUMERIC:
        return np.asarray(
            [np.nan if value in ("", None) else float(value) for value in values], np.float64
        )
    return np.asarray([str(value) for value in values], dtype=object)


def _runtime_env(job: ExplainJob) -> dict[str, Any]:
    env = {}
    if job.keras_backend:
        env["KERAS_BACKEND"] = job.keras_backend
    return {"runtime_env": {"env_vars": env}} if env else {}


def explain_dataset(
    dataset: Any,
    job: ExplainJob,
    *,
    workers: int = 1,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float = 0.0,
    images_per_call: int = 1,
) -> Any:
    """Explain every image of a Ray Dataset; a lazy Dataset of results.

    Parameters
    ----------
    dataset
        A ``ray.data.Dataset`` with a ``path`` column and, optionally, ``name``
        (unique output names), ``bytes`` (the encoded file) or ``image`` (a
        decoded ``(H, W, 3)`` array); see :class:`ExplainActor`.
    job
        The settings (:class:`~groupcam.jobs.settings.ExplainJob`).
    workers
        Actors in the pool; each loads the model once.
    cpus_per_worker
        CPUs Ray reserves for each actor; ``None`` for ``job.threads`` or 1.
    gpus_per_worker
        GPUs Ray reserves for each actor (a torch model from ``module:callable``
        must then move itself to the GPU).
    images_per_call
        Rows handed to an actor at a time (each is still explained alone).

    Returns
    -------
    ray.data.Dataset
        One row per input with :data:`OUTPUT_COLUMNS`: a broken or unreadable
        image is a row with ``status`` ``"error"``, never a failed job.
    """
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    cpus = cpus_per_worker if cpus_per_worker is not None else float(job.threads or 1)
    ray = _ray()
    return dataset.map_batches(
        ExplainActor,
        fn_constructor_kwargs={"job": job},
        batch_size=images_per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus_per_worker,
        **_runtime_env(job),
    )


def _outcome(row: dict[str, Any]) -> Outcome:
    fields = {column: row.get(column, "") for column in RESULT_COLUMNS}
    for column, value in fields.items():
        if isinstance(value, float) and np.isnan(value):
            fields[column] = ""
        elif column == "target" and isinstance(value, float):
            fields[column] = int(value)
        elif column == "degenerate" and isinstance(value, float):
            fields[column] = bool(value)
        elif isinstance(value, np.generic):
            fields[column] = value.item()
    finished = float(row.get("finished") or time.time())
    weights = str(row.get("weights") or "") or None
    return Outcome(
        fields, row.get("map_npy") or None, row.get("overlay_png") or None, finished, weights
    )


def ray_outcomes(
    job: ExplainJob,
    pending: list[ImageInput],
    *,
    workers: int = 1,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float = 0.0,
) -> Iterator[Outcome]:
    """Explain ``pending`` on the running Ray runtime; outcomes as they arrive.

    The images are a dataset of ``(index, path, name)`` rows; each actor reads
    its images' files itself, so an unreadable file is an ``error`` row like a
    broken one (the files must be at the same path on every node: a shared
    filesystem on a cluster).
    """
    if not pending:
        return
    ray = _ray()
    items = [{"index": image.index, "path": image.path, "name": image.name} for image in pending]
    blocks = max(-(-len(items) // IMAGES_PER_BLOCK), min(len(items), workers * 4))
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    results = explain_dataset(
        dataset,
        job,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )
    try:
        for row in results.iter_rows():
            yield _outcome(dict(row))
    except Exception as error:  # Ray wraps an actor's failure to start in its own errors
        text = str(error)
        for kind, what in (
            (ModelLoadError, "the Ray workers could not load the model"),
            (SettingsError, "the Ray workers could not explain with these settings"),
        ):
            marker = f"{kind.__module__}.{kind.__name__}: "
            if marker in text:
                message = text.split(marker, 1)[1].splitlines()[0]
                raise kind(f"{what}: {message}") from error
        raise


def explain_images_on_ray(
    job: ExplainJob,
    images: list[ImageInput],
    out: str | Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Any = None,
    on_start: Any = None,
) -> JobReport:
    """``groupcam explain --ray``: the job on Ray Data, written to the same folder layout.

    Parameters
    ----------
    job, images, out, overwrite, progress, on_start
        As for :func:`groupcam.jobs.runner.explain_images`.
    address
        ``None`` or ``"local"`` to start a local Ray runtime (or use the one
        this process already started), else the address of a cluster to join
        (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``).
    workers
        Actors in the pool; ``None`` for as many as the runtime's CPUs allow
        at ``job.threads`` (or 1) CPUs each.
    """
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        ray.init(
            address="local" if address in (None, "local") else address,
            include_dashboard=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
        started_here = True
    import ray.data  # configures Ray Data's loggers, which we then quieten

    console = [
        handler
        for handler in logging.getLogger("ray.data").handlers
        if "file" not in type(handler).__name__.lower()
    ]
    levels = [handler.level for handler in console]
    try:
        for handler in console:  # our progress bar and summary replace Ray Data's
            handler.setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        cpus = float(job.threads or 1)
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))

        def runner(job: ExplainJob, pending: list[ImageInput]) -> Iterator[Outcome]:
            return ray_outcomes(job, pending, workers=workers, cpus_per_worker=cpus)

        info = {"runner": "ray", "workers": workers, "address": address or "local"}
        return explain_images(
            job,
            images,
            out,
            overwrite=overwrite,
            runner=runner,
            progress=progress,
            run_info=info,
            on_start=on_start,
        )
    finally:
        for handler, level in zip(console, levels, strict=True):
            handler.setLevel(level)
        if started_here:
            ray.shutdown()
