"""``DIR/report.html`` in a real headless browser (Debian's chromium), and the tables a job
exports from its store (``results.csv``, ``results.parquet``) at 100,000 rows.

The browser tests need ``chromium`` on the PATH: ``.ci/run`` installs it (and sets
``GROUPCAM_NEEDS_BROWSER``, so that a missing browser fails there instead of skipping).
"""

from __future__ import annotations

import csv
import html.parser
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from groupcam.cli import main
from groupcam.jobs import ExplainJob, ModelSource
from groupcam.jobs.outputs import OutputFolder
from groupcam.jobs.report import PAGE_ROWS, write_report
from groupcam.jobs.worker import RESULT_COLUMNS

FAKE = "_support.fake_backend:FakeNumpyBackend"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("GROUPCAM_NEEDS_BROWSER"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
MANY = 100_000


def browser(tmp_path: Path, page: Path, fragment: str, *flags: str) -> str:
    """Open ``page#fragment`` in headless chromium; its stdout (the DOM with --dump-dom)."""
    assert CHROMIUM is not None, "chromium is not installed"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *flags,
            f"{page.resolve().as_uri()}#{fragment}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Table(html.parser.HTMLParser):
    """The report's table body as rows of ``{"class": ..., "cells": [...], "images": [...]}``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}
        self._in_body = False
        self._cell: list[str] | None = None
        self._element: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id") in ("summary", "position"):
            self._element = found["id"]
            self.texts[self._element] = ""
        if tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({"class": found.get("class"), "cells": [], "images": []})
        elif self._in_body and tag == "td":
            self._cell = []
        elif self._in_body and tag == "img":
            self.rows[-1]["images"].append(found.get("src"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell))
            self._cell = None
        elif tag in ("p", "span"):
            self._element = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._element is not None:
            self.texts[self._element] += data


def table(dom: str) -> _Table:
    parsed = _Table()
    parsed.feed(dom)
    return parsed


@pytest.fixture(scope="module")
def job_folder(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished job over the shared image folder (10 good images, 3 broken ones)."""
    out = tmp_path_factory.mktemp("report") / "out"
    assert main(["explain", FAKE, str(folder), "--out", str(out), "--size", "32", "--groups", "4",
                 "--quiet"]) == 1  # fmt: skip
    return out


# Columns as the page shows them: the overlay (or error) first, then results.csv's but "error".
SHOWN = ["overlay", *(column for column in RESULT_COLUMNS if not column.endswith("_auc"))]
SHOWN.remove("error")


@needs_browser
def test_the_report_shows_every_row_sorted_with_thumbnails(job_folder: Path, tmp_path: Path):
    dom = browser(tmp_path, job_folder / "report.html", "sort=probability&desc=1", "--dump-dom")
    page = table(dom)
    assert page.texts["summary"].startswith("10 of 13 images explained, 3 errors")
    assert page.texts["position"] == "page 1 of 1 (13 rows)"
    assert len(page.rows) == 13
    probability = SHOWN.index("probability")
    ok = [row for row in page.rows if row["class"] != "error"]
    values = [float(row["cells"][probability]) for row in ok]
    assert len(values) == 10
    assert values == sorted(values, reverse=True)
    assert [row["class"] for row in page.rows[10:]] == ["error"] * 3  # empty cells sort last
    for row in ok:
        (source,) = row["images"]
        assert (job_folder / source).is_file()  # overlays/<name>.png, as the store names it
    errors = table(browser(tmp_path, job_folder / "report.html", "show=error", "--dump-dom"))
    assert len(errors.rows) == 3
    assert {row["cells"][SHOWN.index("path")].rsplit("/", 1)[1] for row in errors.rows} == {
        "broken.jpg",
        "truncated.jpg",
        "empty.png",
    }
    assert any("truncated" in row["cells"][0] for row in errors.rows)  # the message is shown


def colored_share(tmp_path: Path, page: Path) -> float:
    """The share of blue pixels (the overlays' jet colors) in a screenshot."""
    shot = tmp_path / f"{page.parent.name}.png"
    browser(tmp_path, page, "sort=path", "--window-size=1200,900", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    colored = pixels[..., 2] - pixels[..., 0] > 100  # the page has black, grey and red, no blue
    assert np.flatnonzero(colored.any(axis=0)).max(initial=0) < 0.3 * pixels.shape[1]
    return float(colored.mean())


@needs_browser
def test_the_report_draws_its_thumbnails(job_folder: Path, tmp_path: Path) -> None:
    """Screenshots: the overlays are drawn in the first column; without them, nothing is."""
    without = tmp_path / "without-overlays"
    without.mkdir()
    for name in ("report.html", "report.js"):
        shutil.copy(job_folder / name, without / name)
    drawn, missing = (
        colored_share(tmp_path, job_folder / "report.html"),
        colored_share(tmp_path, without / "report.html"),
    )
    assert drawn > 0.005
    assert missing < drawn / 20


def synthetic_rows(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for index in range(count):
        failed = index % 10 == 9
        row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, "")
        row.update(path=f"/data/photos/{index:06d}.jpg", name=f"{index:06d}-{index:010x}")
        row.update(seconds=float(rng.uniform(0.01, 1.0)))
        if failed:
            row.update(status="error", error="ValueError: not a JPEG")
        else:
            row.update(status="ok", target=int(index % 1000), target_name=f"class {index % 1000}")
            row.update(probability=float(rng.uniform()), degenerate=index % 100 == 0)
        rows.append(row)
    return rows


@needs_browser
def test_a_report_of_100000_rows_pages_and_sorts(tmp_path: Path) -> None:
    rows = synthetic_rows(MANY)
    columns = [column for column in RESULT_COLUMNS if not column.endswith("_auc")]
    degenerate_rows = sum(1 for row in rows if row["degenerate"] is True)
    counts = {"images": MANY, "ok": MANY * 9 // 10, "error": MANY // 10}
    counts["degenerate"] = degenerate_rows
    page = write_report(tmp_path, rows, columns, {"counts": counts, "written": "now"})
    pages = MANY // PAGE_ROWS
    last = table(browser(tmp_path, page, f"sort=probability&page={pages * 2}", "--dump-dom"))
    assert last.texts["position"] == f"page {pages} of {pages} ({MANY} rows)"  # clamped
    assert len(last.rows) == PAGE_ROWS
    assert all(row["class"] == "error" for row in last.rows)  # no probability: sorted last
    ascending = sorted(row["probability"] for row in rows if row["status"] == "ok")
    third = table(browser(tmp_path, page, "sort=probability&page=3&show=ok", "--dump-dom"))
    probability = SHOWN.index("probability")
    shown = [float(row["cells"][probability]) for row in third.rows]
    expected = [round(value, 4) for value in ascending[2 * PAGE_ROWS : 3 * PAGE_ROWS]]
    assert shown == expected
    degenerate = table(browser(tmp_path, page, "show=degenerate", "--dump-dom"))
    assert degenerate_rows == 1000
    assert degenerate.texts["position"] == f"page 1 of 10 ({degenerate_rows} rows)"


def test_the_tables_of_a_store_of_100000_rows_read_back(tmp_path: Path) -> None:
    """results.csv and results.parquet are exports of the store; pandas reads both alike."""
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    job = ExplainJob(ModelSource.parse(FAKE), size=(32, 32), groups=4)
    out = tmp_path / "out"
    folder = OutputFolder(out, job)
    rows = synthetic_rows(MANY)
    for row in rows:
        folder.store.record(row, finished=0.0)
    folder.close()
    folder = OutputFolder(out, job)  # a later run reads the store back
    try:
        assert len(folder.rows) == MANY
        folder.write_tables([], {"runner": "test"})
    finally:
        folder.close()
    parquet = pandas.read_parquet(out / "results.parquet")
    assert len(parquet) == MANY
    assert list(parquet.columns) == [c for c in RESULT_COLUMNS if not c.endswith("_auc")]
    assert str(parquet["probability"].dtype) == "float64"
    assert str(parquet["degenerate"].dtype) == "bool" or parquet["degenerate"].isna().any()
    assert parquet["probability"].isna().sum() == MANY // 10
    assert parquet.loc[5, "path"] == rows[5]["path"]
    assert parquet.loc[5, "probability"] == rows[5]["probability"]
    assert int(parquet["degenerate"].fillna(False).astype(bool).sum()) == 1000
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        table_rows = list(csv.DictReader(handle))
    assert len(table_rows) == MANY
    assert float(table_rows[5]["probability"]) == rows[5]["probability"]  # repr: exact
