"""The output folder of a job: its lock, its store, atomic files, and the tables.

Layout of ``DIR``::

    maps/<name>.npy        float32 (h, w) map at the model's input resolution
    overlays/<name>.png    the map over the original image, with the class and a color bar
    results.csv            one row per image (see RESULT_COLUMNS)
    results.parquet        the same table, when pyarrow is installed
    summary.json           counts, means with standard errors, settings, versions
    report.html            a page to browse the run (report.js holds its rows)
    job.sqlite             the job's store: settings, the model's fingerprint, every row
    job.lock               held by the job that runs (see groupcam.jobs.store)

Every file is written under a temporary name in its folder and renamed over
its final name, so a reader (or an interrupted run) never sees half a file. An
image's map and overlay are renamed into place first, then its row is
committed to the store: an image counts as done on a rerun only when its row
says ``ok`` and both files exist. The tables are exports of the store, written
every few seconds and at the end of a run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from groupcam_core import __version__

from ..errors import UsageError
from ..frameworks import versions
from .inputs import ImageInput
from .report import write_report
from .settings import ExplainJob
from .store import LOCK_FILE, STORE_FILE, FolderLock, JobStore
from .worker import RESULT_COLUMNS, Outcome, error_row

__all__ = ["OutputFolder", "atomic_write", "file_digest"]


def atomic_write(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    Parameters
    ----------
    path
        The final file.
    data
        Its contents.
    durable
        Also ``fsync`` the file before the rename (survives a power cut, not
        only an interrupted process).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's contents, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mean_and_error(values: list[float]) -> dict[str, float | int | None]:
    count = len(values)
    if count == 0:
        return {"mean": None, "sem": None, "n": 0}
    mean = math.fsum(values) / count
    if count < 2:
        return {"mean": mean, "sem": None, "n": count}
    variance = math.fsum((value - mean) ** 2 for value in values) / (count - 1)
    return {"mean": mean, "sem": math.sqrt(variance / count), "n": count}


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = list(dict.fromkeys([*wanted, *recorded]))
    return ", ".join(
        f"{key} {recorded.get(key)!r} -> {wanted.get(key)!r}"
        for key in keys
        if recorded.get(key) != wanted.get(key)
    )


class OutputFolder:
    """A job's output folder: its lock, its store, atomic writes and tables.

    Opening one takes the folder's lock (for as long as the folder is open)
    and reads the store, so every check happens before a model is loaded.

    Parameters
    ----------
    root
        The folder (created if missing; removed again by :meth:`close` if
        nothing was recorded into it).
    job
        The job that writes into it.
    overwrite
        Start afresh: every image is explained again and its files replaced.

    Raises
    ------
    UsageError
        If the folder cannot be written, another job holds it, or it holds
        results of a job with other settings (see :meth:`ExplainJob.fingerprint`)
        and ``overwrite`` is not set.
    """

    def __init__(self, root: str | Path, job: ExplainJob, overwrite: bool = False) -> None:
        self.root = Path(root)
        self.job = job
        self.maps = self.root / "maps"
        self.overlays = self.root / "overlays"
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--out {self.root} is a file, not a folder")
        self._created = not self.root.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--out {self.root}: cannot create it ({error.strerror})") from error
        self._lock = FolderLock(self.root)
        try:
            self.store = self._open_store(overwrite)
        except BaseException:
            try:
                self._remove_if_created()
            finally:
                self._lock.release()
            raise
        self.rows: dict[str, dict[str, Any]] = self.store.rows()
        self._recorded = 0
        self._last_tables = time.monotonic()

    def _open_store(self, overwrite: bool) -> JobStore:
        if (self.root / "journal.jsonl").exists() and not (self.root / STORE_FILE).exists():
            if not overwrite:
                raise UsageError(
                    f"--out {self.root} holds results of an older groupcam (journal.jsonl); "
                    "use another folder, or --overwrite to explain everything again"
                )
            (self.root / "journal.jsonl").unlink()
        store = JobStore(self.root / STORE_FILE)
        wanted = self.job.fingerprint()
        recorded = store.get("settings")
        if overwrite or recorded is None:
            store.reset(settings=wanted, groupcam=__version__, created=time.time())
        elif recorded != wanted:
            store.close()
            raise UsageError(
                f"--out {self.root} holds results of other settings "
                f"({_differences(recorded, wanted)}); use another folder, or --overwrite to "
                "explain everything again"
            )
        return store

    def check_model(self, **parts: str | None) -> None:
        """Record the model's fingerprint, or refuse a model other than the recorded one.

        Parameters
        ----------
        **parts
            ``file`` (SHA-256 of the model file) and ``weights`` (of its loaded
            weights, see :func:`groupcam.jobs.worker.weights_digest`); ``None``
            parts are not known and not compared.

        Raises
        ------
        UsageError
            If the folder's images were explained with another model.
        """
        recorded = self.store.get("model") or {}
        known = {key: value for key, value in parts.items() if value is not None}
        changed = {key: value for key, value in known.items() if recorded.get(key, value) != value}
        if changed:
            what = ", ".join(
                f"its {key} {recorded[key][:12]} -> {value[:12]}" for key, value in changed.items()
            )
            raise UsageError(
                f"--out {self.root} holds maps of another model ({what}): the model at "
                f"{self.job.model.location} changed; use another folder, or --overwrite to "
                "explain everything again"
            )
        if any(key not in recorded for key in known):
            self.store.set(model={**recorded, **known})

    def done(self, image: ImageInput) -> bool:
        """Whether ``image`` was explained by an earlier run and its files are in place."""
        row = self.rows.get(image.name)
        return (
            row is not None
            and row.get("status") == "ok"
            and row.get("path") == image.path
            and (self.maps / f"{image.name}.npy").is_file()
            and (self.overlays / f"{image.name}.png").is_file()
        )

    def record(self, outcome: Outcome) -> None:
        """Put an image's files in place, then commit its row to the store.

        A file that cannot be written (a full disk, a name the file system
        refuses, no permission) makes the image an ``error`` row; the job goes on.
        """
        row = outcome.row
        name = row["name"]
        try:
            for folder in (self.maps, self.overlays):
                folder.mkdir(exist_ok=True)
            if outcome.map_npy is not None:
                atomic_write(self.maps / f"{name}.npy", outcome.map_npy)
            if outcome.overlay_png is not None:
                atomic_write(self.overlays / f"{name}.png", outcome.overlay_png)
        except OSError as error:
            message = f"cannot write its outputs: {type(error).__name__}: {error}"
            row = error_row(
                ImageInput(0, str(row["path"]), name), message, float(row.get("seconds") or 0)
            )
        self.store.record(row, outcome.finished)
        self.rows[name] = row
        self._recorded += 1

    def tables_due(self, every: float = 10.0) -> bool:
        """Whether the tables were last written more than ``every`` seconds ago."""
        return time.monotonic() - self._last_tables > every

    # -- results.csv and summary.json ----------------------------------------------
    def ordered_rows(self, images: Iterable[ImageInput]) -> list[dict[str, Any]]:
        """Rows of ``images`` in their order, then rows of earlier runs' other images."""
        listed = [image.name for image in images]
        names = [name for name in listed if name in self.rows]
        known = set(names)
        names += [name for name in self.rows if name not in known]
        return [self.rows[name] for name in names]

    def columns(self) -> list[str]:
        """The columns of ``results.csv`` for this job."""
        return [
            column
            for column in RESULT_COLUMNS
            if not column.endswith("_auc") or column.removesuffix("_auc") in self.job.metrics
        ]

    def write_tables(self, images: list[ImageInput], run: dict[str, Any]) -> None:
        """Export the store: ``results.csv``, ``results.parquet``, ``summary.json``, the report.

        ``results.parquet`` is written when pyarrow is installed
        (``pip install "groupcam[parquet]"``). Each file is replaced atomically.
        """
        rows = self.ordered_rows(images)
        columns = self.columns()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(value) for key, value in row.items()})
        atomic_write(self.root / "results.csv", buffer.getvalue().encode("utf-8"), durable=True)
        parquet = parquet_bytes(rows, columns)
        if parquet is not None:
            atomic_write(self.root / "results.parquet", parquet, durable=True)
        summary = self.summary(rows, run)
        text = json.dumps(summary, indent=2, sort_keys=False, allow_nan=False) + "\n"
        atomic_write(self.root / "summary.json", text.encode("utf-8"), durable=True)
        write_report(self.root, rows, columns, summary)
        self._last_tables = time.monotonic()

    def summary(self, rows: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
        """What ``summary.json`` holds for these rows."""
        ok = [row for row in rows if row["status"] == "ok"]
        means = {
            column: _mean_and_error([float(row[column]) for row in ok if _number(row[column])])
            for column in ("probability", *(f"{metric}_auc" for metric in self.job.metrics))
        }
        means["seconds"] = _mean_and_error([float(row["seconds"]) for row in ok])
        return {
            "groupcam": __version__,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "counts": {
                "images": len(rows),
                "ok": len(ok),
                "error": len(rows) - len(ok),
                "degenerate": sum(1 for row in ok if row["degenerate"] in (True, "True")),
            },
            "means": means,
            "run": run,
            "settings": self.job.describe(),
            "versions": versions(),
            "command": sys.argv if sys.argv and sys.argv[0] else None,
        }

    @property
    def recorded(self) -> int:
        """Images this run recorded."""
        return self._recorded

    def close(self) -> None:
        """Close the store and release the lock; remove a folder this run made and left empty."""
        empty = self.store.count() == 0  # asked of the store: what it holds, whoever wrote it
        self.store.close()
        try:
            if empty:
                self._remove_if_created()  # still locked: no other job can be writing there
        finally:
            self._lock.release()

    def _remove_if_created(self) -> None:
        """Remove the folder if this run created it (it then holds only the run's own files)."""
        if not self._created:
            return
        ours = {LOCK_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", "maps", "overlays"}
        if all(entry.name in ours for entry in self.root.iterdir()):
            shutil.rmtree(self.root, ignore_errors=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


def parquet_bytes(rows: list[dict[str, Any]], columns: list[str]) -> bytes | None:
    """The rows as a Parquet file (one typed column per result column), or ``None``
    without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    numeric = {"target", "probability", "insertion_auc", "deletion_auc", "seconds"}
    arrays = {}
    for column in columns:
        values = [row.get(column, "") for row in rows]
        if column in numeric:
            arrays[column] = pa.array(
                [None if value in ("", None) else float(value) for value in values], pa.float64()
            )
        elif column == "degenerate":
            arrays[column] = pa.array(
                [None if value in ("", None) else value in (True, "True") for value in values],
                pa.bool_(),
            )
        else:
            arrays[column] = pa.array([str(value) for value in values], pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue()
