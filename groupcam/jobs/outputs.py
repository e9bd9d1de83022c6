"""The output folder of a job: atomic files, a journal that makes reruns resume, and tables.

Layout of ``DIR``::

    maps/<name>.npy        float32 (h, w) map at the model's input resolution
    overlays/<name>.png    the map over the original image, at the original size
    results.csv            one row per image (see RESULT_COLUMNS)
    summary.json           counts, means with standard errors, settings, versions
    journal.jsonl          the job's settings, then one line per finished image
                           (its row, when the worker finished it and when it was written)

Every file is written under a temporary name in its folder and renamed over
its final name, so a reader (or an interrupted run) never sees half a file. An
image's map and overlay are renamed into place first, then its row is appended
to the journal and flushed: an image counts as done on a rerun only when its
journal row says ``ok`` and both files exist. ``results.csv`` and
``summary.json`` are rebuilt from the journal (atomically) every few seconds
and at the end of a run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
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
from .settings import ExplainJob
from .worker import RESULT_COLUMNS, Outcome

__all__ = ["JOURNAL", "OutputFolder", "atomic_write"]

#: The journal's file name inside the output folder.
JOURNAL = "journal.jsonl"


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


def _mean_and_error(values: list[float]) -> dict[str, float | int | None]:
    count = len(values)
    if count == 0:
        return {"mean": None, "sem": None, "n": 0}
    mean = math.fsum(values) / count
    if count < 2:
        return {"mean": mean, "sem": None, "n": count}
    variance = math.fsum((value - mean) ** 2 for value in values) / (count - 1)
    return {"mean": mean, "sem": math.sqrt(variance / count), "n": count}


class OutputFolder:
    """A job's output folder: resume state, atomic writes and tables.

    Parameters
    ----------
    root
        The folder (created if missing).
    job
        The job that writes into it.
    overwrite
        Start afresh: every image is explained again and its files replaced.

    Raises
    ------
    UsageError
        If the folder holds results of a job with other settings (see
        :meth:`ExplainJob.fingerprint`) and ``overwrite`` is not set.
    """

    def __init__(self, root: str | Path, job: ExplainJob, overwrite: bool = False) -> None:
        self.root = Path(root)
        self.job = job
        self.maps = self.root / "maps"
        self.overlays = self.root / "overlays"
        self.journal_path = self.root / JOURNAL
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--out {self.root} is a file, not a folder")
        self.rows: dict[str, dict[str, Any]] = {}
        self._fresh = overwrite or not self.journal_path.exists()
        if not self._fresh:
            self._read_journal()
        self._journal: Any = None
        self._last_tables = time.monotonic()

    def _open(self) -> None:
        """Create the folders and the journal (afresh, or to append to) on first use."""
        if self._journal is not None:
            return
        for folder in (self.root, self.maps, self.overlays):
            folder.mkdir(parents=True, exist_ok=True)
        if self._fresh:
            self._start_journal()
        self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
        if getattr(self, "_cut_short", False):
            self._journal.write("\n")

    # -- the journal ------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {"groupcam_job": self.job.fingerprint(), "groupcam": __version__}

    def _start_journal(self) -> None:
        line = json.dumps(self._header(), sort_keys=True) + "\n"
        atomic_write(self.journal_path, line.encode("utf-8"), durable=True)

    def _read_journal(self) -> None:
        with open(self.journal_path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().split("\n")
        try:
            header = json.loads(lines[0])
            recorded = header["groupcam_job"]
        except (ValueError, KeyError, TypeError, IndexError):
            raise UsageError(
                f"--out {self.root}: {JOURNAL} is not a groupcam journal; "
                "use another folder, or --overwrite to start afresh"
            ) from None
        wanted = self.job.fingerprint()
        if recorded != wanted:
            differences = ", ".join(
                f"{key} {recorded.get(key)!r} -> {wanted[key]!r}"
                for key in wanted
                if recorded.get(key) != wanted[key]
            )
            raise UsageError(
                f"--out {self.root} holds results of other settings ({differences}); "
                "use another folder, or --overwrite to explain everything again"
            )
        for line in lines[1:]:
            try:
                row = json.loads(line)["row"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupted run
            self.rows[row["name"]] = row
        if lines[-1] != "":  # the last line was cut short: the next one starts afresh
            self._cut_short = True

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
        """Put an image's files in place, then append its row to the journal."""
        self._open()
        name = outcome.row["name"]
        if outcome.map_npy is not None:
            atomic_write(self.maps / f"{name}.npy", outcome.map_npy)
        if outcome.overlay_png is not None:
            atomic_write(self.overlays / f"{name}.png", outcome.overlay_png)
        entry = {
            "row": outcome.row,
            "done": round(outcome.finished, 3),
            "at": round(time.time(), 3),
        }
        self._journal.write(json.dumps(entry, default=str) + "\n")
        self._journal.flush()
        self.rows[name] = outcome.row

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
        """Rewrite ``results.csv`` and ``summary.json`` (atomically) from the journal."""
        self._open()
        self._journal.flush()
        rows = self.ordered_rows(images)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(value) for key, value in row.items()})
        atomic_write(self.root / "results.csv", buffer.getvalue().encode("utf-8"), durable=True)
        summary = self.summary(rows, run)
        text = json.dumps(summary, indent=2, sort_keys=False, allow_nan=False) + "\n"
        atomic_write(self.root / "summary.json", text.encode("utf-8"), durable=True)
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

    def close(self) -> None:
        """Close the journal."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value
