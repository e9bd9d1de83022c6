"""``groupcam explain --ray`` and ``groupcam.jobs.ray_runner`` on a local Ray runtime.

The runtime is started here with ``num_cpus=2`` on this machine only
(``address="local"``: never an existing cluster) and shut down afterwards.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from groupcam.cli import main
from groupcam.jobs import ExplainJob, ModelSource, UsageError, find_images
from groupcam.jobs.ray_runner import OUTPUT_COLUMNS, explain_dataset

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parents[1]
FAKE = "_support.fake_backend:FakeNumpyBackend"
LITE0 = ["--size", "64", "--groups", "8", "--threads", "1", "--quiet"]
SUBSET = ("a", "b", "grey.png", "rgba.png", "broken.jpg", "truncated.jpg")


@pytest.fixture(scope="module")
def runtime() -> object:
    """A local Ray runtime of 2 CPUs whose workers can import the tests' ``_support``."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved]))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def rows_of(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def same_outputs(first: Path, second: Path) -> None:
    """Equal rows (but the seconds), maps bit for bit, and overlays byte for byte."""
    rows, others = rows_of(first), rows_of(second)
    assert [{**row, "seconds": ""} for row in rows] == [{**row, "seconds": ""} for row in others]
    for row in rows:
        if row["status"] == "ok":
            name = row["name"]
            assert np.array_equal(
                np.load(first / "maps" / f"{name}.npy"), np.load(second / "maps" / f"{name}.npy")
            )
            assert (first / "overlays" / f"{name}.png").read_bytes() == (
                second / "overlays" / f"{name}.png"
            ).read_bytes()


@pytest.mark.slow
def test_ray_maps_equal_the_local_run(runtime, folder: Path, tmp_path: Path, capsys) -> None:
    inputs = [str(folder / name) for name in SUBSET]
    local = tmp_path / "local"
    assert main(["explain", "efficientnet-lite0", *inputs, "--out", str(local), *LITE0]) == 1
    assert "truncated.jpg" in capsys.readouterr().err
    statuses = [row["status"] for row in rows_of(local)]
    assert statuses.count("error") == 2
    assert statuses.count("ok") == 5
    for workers in ("1", "2"):
        out = tmp_path / f"ray{workers}"
        args = ["efficientnet-lite0", *inputs, "--out", str(out), "--ray", "--workers", workers]
        assert main(["explain", *args, *LITE0]) == 1
        same_outputs(local, out)
    # The Ray run resumes like the local one: only what is missing is done again.
    out = tmp_path / "ray2"
    missing = next(row["name"] for row in rows_of(out) if row["status"] == "ok")
    (out / "maps" / f"{missing}.npy").unlink()
    args = ["efficientnet-lite0", *inputs, "--out", str(out), "--ray", "--workers", "2"]
    assert main(["explain", *args, *LITE0[:-1]]) == 1
    assert "Explaining 3 images on Ray (local) (4 done before)" in capsys.readouterr().out
    same_outputs(local, out)


def test_explain_dataset_on_files_and_arrays(runtime, folder: Path, tmp_path: Path) -> None:
    job = ExplainJob(ModelSource.parse(FAKE), size=(32, 32), groups=4)
    images = find_images([str(folder / "a"), str(folder / "grey.png"), str(folder / "broken.jpg")])
    local = tmp_path / "local"
    assert main(["explain", FAKE, *(image.path for image in images), "--out", str(local),
                 "--size", "32", "--groups", "4", "--quiet"]) == 1  # fmt: skip
    expected = {row["path"]: row for row in rows_of(local)}

    files = ray.data.read_binary_files([image.path for image in images], include_paths=True)
    rows = explain_dataset(files, job, workers=1).take_all()
    assert len(rows) == 3
    assert set(rows[0]) == set(OUTPUT_COLUMNS)
    by_path = {row["path"]: row for row in rows}
    for image in images:
        row, wanted = by_path[image.path], expected[image.path]
        assert row["status"] == wanted["status"]
        if wanted["status"] == "ok":
            found = np.load(io.BytesIO(row["map_npy"]))
            assert np.array_equal(found, np.load(local / "maps" / f"{wanted['name']}.npy"))
            assert row["name"].startswith(Path(image.path).stem + "-")
        else:
            assert "not a JPEG" in row["error"]
            assert row["map_npy"] == b""

    from groupcam.jobs.images import decode_image

    good = [image.path for image in images if expected[image.path]["status"] == "ok"]
    arrays = ray.data.from_items([{"image": decode_image(path)} for path in good])
    decoded = explain_dataset(arrays, job, workers=1).take_all()
    assert [row["status"] for row in decoded] == ["ok", "ok"]
    for row in decoded:
        assert row["name"].startswith("image-")


def test_ray_reports_a_model_that_fails_to_load(runtime, folder: Path, tmp_path: Path, capsys):
    factory = tmp_path / "failing.py"
    factory.write_text("def build():\n    raise RuntimeError('no weights here')\n")
    out = tmp_path / "out"
    args = [f"{factory}:build", str(folder / "a"), "--out", str(out), "--ray", "--workers", "1"]
    assert main(["explain", *args, "--quiet"]) == 2
    assert "no weights here" in capsys.readouterr().err
    with pytest.raises(UsageError):
        explain_dataset(
            ray.data.from_items([{"path": "x"}]), ExplainJob(ModelSource.parse(FAKE)), workers=0
        )


def test_ray_stops_at_settings_no_image_can_run_with(runtime, folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = [FAKE, str(folder / "a"), "--out", str(out), "--ray", "--workers", "1", "--size", "32"]
    assert main(["explain", *args, "--groups", "64", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "could not explain with these settings" in err
    assert "groups=64 is more than the 10 channels" in err


def test_ray_rows_carry_the_weights_and_are_recorded_as_they_arrive(
    runtime, folder: Path, tmp_path: Path
) -> None:
    """Each result row names its model's weights; the job stores rows while workers still run."""
    import sqlite3

    from groupcam.jobs.ray_runner import IMAGES_PER_BLOCK, explain_images_on_ray

    images = find_images([str(folder)])
    assert len(images) > 2 * IMAGES_PER_BLOCK
    job = ExplainJob(ModelSource.parse("efficientnet-lite0"), size=(64, 64), groups=8, threads=1)
    out = tmp_path / "out"
    report = explain_images_on_ray(job, images, out, workers=1)
    assert report.explained == len(images)
    with sqlite3.connect(out / "job.sqlite") as db:
        times = db.execute("SELECT recorded, finished FROM outcomes").fetchall()
        (model,) = db.execute("SELECT value FROM job WHERE key = 'model'").fetchone()
    assert min(row[0] for row in times) < max(
        row[1] for row in times
    )  # the first rows were stored before the last was done
    assert '"weights"' in model

    files = ray.data.read_binary_files([images[0].path], include_paths=True)
    (row,) = explain_dataset(files, job, workers=1).take_all()
    assert len(row["weights"]) == 64
    assert row["weights"] in model


def test_ctrl_c_on_ray_keeps_the_finished_rows(runtime, folder: Path, tmp_path: Path) -> None:
    from groupcam.jobs.ray_runner import explain_images_on_ray

    class StopAfterTwo:
        def __init__(self, total: int) -> None:
            self.seen = 0

        def update(self, n: int = 1) -> None:
            self.seen += n
            if self.seen == 2:
                raise KeyboardInterrupt

        def close(self) -> None:
            pass

    images = find_images([str(folder / "a"), str(folder / "b"), str(folder / "grey.png")])
    job = ExplainJob(ModelSource.parse(FAKE), size=(32, 32), groups=4)
    out = tmp_path / "out"
    report = explain_images_on_ray(job, images, out, workers=1, progress=StopAfterTwo)
    assert report.interrupted
    assert report.stopped_by == "SIGINT"
    assert report.explained == 2
    assert len(rows_of(out)) == 2
    again = explain_images_on_ray(job, images, out, workers=1)
    assert (again.skipped, again.explained, again.done) == (2, len(images) - 2, len(images))
