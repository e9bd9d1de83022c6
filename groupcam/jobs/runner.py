"""Running a job: the images that are not done yet, through a runner, into the output folder.

:func:`explain_images` is the one loop both runners share: it opens the output
folder (resuming it), asks a runner for outcomes of the pending images, and
writes each one as it arrives. The local runner (:func:`local_outcomes`)
explains them in this process; the Ray runner
(:func:`groupcam.jobs.ray_runner.ray_outcomes`) on a pool of actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError
from .inputs import ImageInput
from .outputs import OutputFolder, file_digest
from .settings import ExplainJob
from .worker import JobWorker, Outcome

__all__ = [
    "JobReport",
    "Progress",
    "Runner",
    "Stopped",
    "explain_images",
    "local_outcomes",
    "model_file_digest",
]

#: ``runner(job, pending_images)`` -> outcomes, in any order.
Runner = Callable[[ExplainJob, list[ImageInput]], Iterator[Outcome]]


class Progress(Protocol):
    """What :func:`explain_images` reports progress to (a tqdm bar fits)."""

    def update(self, n: int = 1) -> Any:
        """``n`` more images finished."""

    def close(self) -> Any:
        """The run ended."""


class Stopped(KeyboardInterrupt):
    """A run was stopped by a signal other than Ctrl-C (SIGTERM from ``timeout``, Slurm,
    Kubernetes): it ends as an interrupted run does, resumable."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@dataclass
class JobReport:
    """What a run did.

    Attributes
    ----------
    out
        The output folder.
    images
        The run's inputs.
    skipped
        Inputs an earlier run had already explained.
    explained
        Inputs explained by this run (errors included).
    done
        Inputs whose row says ``ok`` now (this run's and earlier runs').
    failed
        ``(path, error message)`` of each input whose row says ``error``.
    wall_seconds
        Duration of the run.
    interrupted
        The run was stopped (Ctrl-C, or a signal: see ``stopped_by``) before
        every input was done.
    stopped_by
        ``"SIGINT"`` or the signal that stopped it (``"SIGTERM"``), else ``None``.
    """

    out: Path
    images: int
    skipped: int
    explained: int
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    wall_seconds: float = 0.0
    interrupted: bool = False
    stopped_by: str | None = None

    @property
    def ok(self) -> bool:
        """Every input was explained (now or earlier) and none failed."""
        return not self.failed and not self.interrupted


def local_outcomes(job: ExplainJob, pending: list[ImageInput]) -> Iterator[Outcome]:
    """Explain ``pending`` in this process, in order, with one :class:`JobWorker`.

    The model is loaded when this is called, before any image: a model that
    cannot be loaded fails here.
    """
    if not pending:
        return iter(())
    worker = JobWorker(job)
    return (worker.explain(image) for image in pending)


def model_file_digest(job: ExplainJob) -> str | None:
    """SHA-256 of the job's model file, or ``None`` for a built-in model or a callable."""
    if job.model.kind not in ("torch-file", "keras-file"):
        return None
    return file_digest(job.model.location)


def explain_images(
    job: ExplainJob,
    images: list[ImageInput],
    out: str | Path,
    *,
    overwrite: bool = False,
    runner: Runner = local_outcomes,
    progress: Callable[[int], Progress] | None = None,
    run_info: dict[str, Any] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> JobReport:
    """Explain every image not done yet and write the output folder.

    The folder is locked for the whole run (:class:`~groupcam.jobs.store.FolderLock`);
    its store refuses other settings and, by its file's and its weights'
    digests, another model.

    Parameters
    ----------
    job
        The settings.
    images
        The inputs (:func:`groupcam.jobs.inputs.find_images`).
    out
        The output folder; a rerun into it skips what is done.
    overwrite
        Explain every image again.
    runner
        Where the work runs: :func:`local_outcomes` (default) or
        :func:`groupcam.jobs.ray_runner.ray_outcomes` (bound to its options).
    progress
        ``progress(total)`` -> a :class:`Progress` for the pending images.
    run_info
        Extra facts about the run for ``summary.json`` (runner, workers).
    on_start
        Called with ``(pending, skipped)`` once the folder is read and the
        runner has started (for the local runner, once the model is loaded).

    Returns
    -------
    JobReport

    Raises
    ------
    groupcam.errors.UsageError
        For a folder that cannot be written or is in use, written with other
        settings or another model, or a model that cannot be loaded; nothing
        was explained then.
    """
    started = time.perf_counter()
    folder = OutputFolder(out, job, overwrite=overwrite)
    explained = 0
    interrupted = False
    stopped_by: str | None = None
    setup_failed = False
    bar = None
    info = dict(run_info or {"runner": "local"})
    pending = [image for image in images if not folder.done(image)]
    skipped = len(images) - len(pending)

    def facts() -> dict[str, Any]:
        wall = time.perf_counter() - started
        return {
            **info,
            "inputs": len(images),
            "skipped_as_done": skipped,
            "explained": explained,
            "wall_seconds": round(wall, 3),
            "images_per_second": round(explained / wall, 4) if wall > 0 else None,
            "interrupted": interrupted,
            "stopped_by": stopped_by,
        }

    try:
        folder.check_model(file=model_file_digest(job))
        outcomes = runner(job, pending)
        if on_start is not None:
            on_start(len(pending), skipped)
        bar = progress(len(pending)) if progress is not None else None
        for outcome in outcomes:
            folder.check_model(weights=outcome.weights)
            folder.record(outcome)
            explained += 1
            if bar is not None:
                bar.update(1)
            if folder.tables_due():
                folder.write_tables(images, facts())
    except KeyboardInterrupt as error:
        interrupted = True
        stopped_by = error.signal_name if isinstance(error, Stopped) else "SIGINT"
    except UsageError:  # nothing could be explained
        setup_failed = explained == 0
        raise
    finally:
        if bar is not None:
            bar.close()
        try:
            if not setup_failed:
                folder.write_tables(images, facts())
        finally:
            folder.close()
    rows = folder.rows
    failed = [
        (image.path, str(rows[image.name].get("error", "")))
        for image in images
        if image.name in rows and rows[image.name]["status"] != "ok"
    ]
    done = sum(1 for image in images if rows.get(image.name, {}).get("status") == "ok")
    return JobReport(
        out=Path(out),
        images=len(images),
        skipped=skipped,
        explained=explained,
        done=done,
        failed=failed,
        wall_seconds=time.perf_counter() - started,
        interrupted=interrupted,
        stopped_by=stopped_by,
    )
