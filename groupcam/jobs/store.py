"""A job's state: one lock on its output folder, and an SQLite store of every image's outcome.

``DIR/job.lock`` is held (an exclusive ``flock``, or ``msvcrt`` lock on Windows)
for the whole run, so a second job on the same folder stops at once and says
which process holds it; the operating system releases the lock when the holder
ends, even when it is killed. ``DIR/job.sqlite`` (standard-library ``sqlite3``,
write-ahead log) holds the job's settings, the fingerprint of its model, and
one row per image, each written in its own transaction once the image's files
are in place. ``results.csv``, ``summary.json`` and ``report.html`` are
exports of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError

__all__ = ["LOCK_FILE", "STORE_FILE", "FolderLock", "JobStore"]

#: The lock file's and the store's names inside the output folder.
LOCK_FILE = "job.lock"
STORE_FILE = "job.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outcomes (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    row TEXT NOT NULL,
    finished REAL NOT NULL,
    recorded REAL NOT NULL
);
"""


def _lock(handle: IO[str]) -> bool:
    """Take the exclusive lock on an open file without waiting; ``False`` if another holds it."""
    try:
        if os.name == "nt":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class FolderLock:
    """The exclusive lock of one job on its output folder.

    Parameters
    ----------
    root
        The output folder (it must exist).

    Raises
    ------
    UsageError
        When another process holds the lock (the message names it) or the
        folder cannot be written.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        try:
            self._handle: IO[str] | None = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise UsageError(f"--out {root}: cannot write there ({error.strerror})") from error
        if not _lock(self._handle):
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            self._handle = None
            raise UsageError(
                f"--out {root} is in use by another job ({holder}); wait for it to end, "
                "or use another folder"
            )
        self._handle.seek(0)
        self._handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join(sys.argv) if sys.argv and sys.argv[0] else "the groupcam API"
        self._handle.write(
            f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {command}\n"
        )
        self._handle.flush()

    def release(self) -> None:
        """Let other jobs use the folder (the file stays: removing it would race a waiter)."""
        if self._handle is not None:
            self._handle.close()  # closing the file releases the lock
            self._handle = None


class JobStore:
    """The SQLite store of one job's output folder.

    Parameters
    ----------
    path
        ``DIR/job.sqlite`` (created if missing).

    Raises
    ------
    UsageError
        If the file is not a groupcam store (or not SQLite at all).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UsageError(
                f"--out {path.parent}: {path.name} is not a groupcam job store ({error}); use "
                "another folder, or --overwrite to start afresh"
            ) from error

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the job --------------------------------------------------------------
    def get(self, key: str) -> Any:
        """A value of the job (``None`` if never set)."""
        found = self._db.execute("SELECT value FROM job WHERE key = ?", (key,)).fetchone()
        return None if found is None else json.loads(found[0])

    def set(self, **values: Any) -> None:
        """Set values of the job, in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO job (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, sort_keys=True)) for key, value in values.items()],
            )

    def reset(self, **values: Any) -> None:
        """Forget every outcome and set the job's values afresh (``--overwrite``)."""
        with self._transaction() as db:
            db.execute("DELETE FROM outcomes")
            db.execute("DELETE FROM job")
            db.executemany(
                "INSERT INTO job (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, sort_keys=True)) for key, value in values.items()],
            )

    # -- the images -------------------------------------------------------------
    def record(self, row: dict[str, Any], finished: float) -> None:
        """Store one image's row (replacing an earlier one of the same name)."""
        text = json.dumps(row, default=str, allow_nan=True)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO outcomes (name, path, status, row, finished, recorded) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET path = excluded.path, "
                "status = excluded.status, row = excluded.row, finished = excluded.finished, "
                "recorded = excluded.recorded",
                (row["name"], row["path"], row["status"], text, finished, time.time()),
            )

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every stored row, by name, in the order they were first recorded."""
        found = self._db.execute("SELECT name, row FROM outcomes ORDER BY rowid").fetchall()
        return {name: json.loads(row) for name, row in found}

    def count(self) -> int:
        """How many images have a row."""
        return int(self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def close(self) -> None:
        """Close the database (the write-ahead log is checkpointed into the file)."""
        self._db.close()
