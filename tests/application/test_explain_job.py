"""``groupcam explain`` without a framework: inputs, decoding, outputs, resuming, exit codes.

The model is the numpy ``FakeNumpyBackend`` returned by ``module:callable``,
so the whole job runs with no deep-learning framework installed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _support.explain_inputs import BROKEN, GOOD, blob_picture, results_by_path

from groupcam.cli import main
from groupcam.jobs import (
    ExplainJob,
    ModelSource,
    SettingsError,
    UsageError,
    explain_images,
    find_images,
)
from groupcam.jobs.images import decode_image, fit_to_size, normalize, overlay_on_original
from groupcam.jobs.settings import parse_size, resolve_target
from groupcam.samples import center_crop

FAKE = "_support.fake_backend:FakeNumpyBackend"
TESTS = Path(__file__).resolve().parents[1]
ARGS = ["--size", "32", "--groups", "4", "--quiet"]


def explain(*args: str) -> int:
    return main(["explain", *args])


# -- inputs -------------------------------------------------------------------------


def test_find_images_recurses_skips_hidden_and_keeps_names_unique(folder: Path) -> None:
    images = find_images([str(folder)])
    found = sorted(Path(image.path).relative_to(folder).as_posix() for image in images)
    assert found == sorted([*GOOD, *BROKEN])  # notes.txt and .hidden/ are not listed
    names = [image.name for image in images]
    assert len(set(names)) == len(names)
    by_path = {Path(image.path).relative_to(folder).as_posix(): image.name for image in images}
    assert re.fullmatch(r"a__scene-[0-9a-f]{10}", by_path["a/scene.jpg"])
    assert re.fullmatch(r"grey-[0-9a-f]{10}", by_path["grey.png"])
    # b/scene.jpg and b/scene.png: the same readable part, each its own hash.
    assert by_path["b/scene.jpg"].startswith("b__scene-")
    assert by_path["b/scene.jpg"] != by_path["b/scene.png"]
    assert [image.name for image in find_images([str(folder)])] == names  # stable


def test_find_images_files_globs_and_errors(folder: Path) -> None:
    twice = find_images([str(folder / "a/scene.jpg"), str(folder / "b/scene.jpg")])
    assert twice[0].name.startswith("scene-")  # the same file name in two folders
    assert twice[0].name != twice[1].name
    # A file's name does not depend on the other inputs.
    alone = find_images([str(folder / "a/scene.jpg")])
    assert alone[0].name == twice[0].name
    globbed = find_images([str(folder / "**/*.jpg")])
    assert {Path(image.path).name for image in globbed} == {
        "scene.jpg",
        "broken.jpg",
        "truncated.jpg",
    }
    assert any(image.name.startswith("a__scene-") for image in globbed)
    dedup = find_images([str(folder / "grey.png"), str(folder / "grey.png"), str(folder)])
    assert len(dedup) == len(GOOD) + len(BROKEN)
    text = find_images([str(folder / "notes.txt")])  # a file named directly is taken
    assert text[0].name.startswith("notes-")
    with pytest.raises(UsageError, match="no such file"):
        find_images([str(folder / "missing.jpg")])
    with pytest.raises(UsageError, match="matches no image"):
        find_images([str(folder / "*.gif")])


# -- decoding and fitting ---------------------------------------------------------------


def test_decode_converts_every_kind_to_rgb(folder: Path) -> None:
    for name in GOOD:
        image = decode_image(folder / name)
        assert image.dtype == np.uint8, name
        assert image.shape == (40, 52, 3), name
    grey = decode_image(folder / "grey.png")
    assert np.array_equal(grey[..., 0], grey[..., 2])
    deep = decode_image(folder / "deep16.png")
    assert 60 < deep.mean() < 200  # scaled from 16 bits, not clipped to white
    rgba = decode_image(folder / "rgba.png")
    original = blob_picture(4).astype(np.float64)
    over_white = np.round(original * 200 / 255 + 255 * 55 / 255)
    assert np.abs(rgba - over_white).max() <= 1  # laid over white
    assert np.array_equal(decode_image((folder / "photo.bmp").read_bytes()), blob_picture(7))


@pytest.mark.parametrize("name", BROKEN)
def test_decode_rejects_broken_files(folder: Path, name: str) -> None:
    with pytest.raises((OSError, ValueError)):
        decode_image(folder / name)


def test_decode_never_tries_other_formats(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(blob_picture(0)).save(tmp_path / "x.gif")
    with pytest.raises(ValueError, match="not a JPEG, PNG, BMP, TIFF or WebP"):
        decode_image(tmp_path / "x.gif")


def test_fit_to_size_is_the_imagenet_crop_and_knows_its_box() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    fitted = fit_to_size(image, (224, 224))
    assert np.array_equal(fitted.pixels, center_crop(image, 224, 256))
    left, top, right, bottom = fitted.box
    assert right - left == pytest.approx(224 * 300 / 256, abs=1)
    assert bottom - top == pytest.approx(224 * 300 / 256, abs=1)
    assert (left + right) / 2 == pytest.approx(200, abs=1)
    assert (top + bottom) / 2 == pytest.approx(150, abs=1)
    wide = fit_to_size(image, (64, 96))
    assert wide.pixels.shape == (64, 96, 3)


def test_normalizations() -> None:
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    assert np.allclose(normalize(pixels, "none"), [[[0, 128, 255]]])
    assert np.allclose(normalize(pixels, "inception"), [[[-1, 128 / 127.5 - 1, 1]]], atol=1e-6)
    expected = (np.array([0, 128, 255]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.allclose(normalize(pixels, "imagenet"), expected[None, None], atol=1e-6)


def test_overlay_covers_the_original_and_darkens_what_the_model_did_not_see() -> None:
    image = np.full((100, 200, 3), 200, dtype=np.uint8)
    box = fit_to_size(image, (32, 32)).box
    shown = overlay_on_original(image, np.ones((32, 32), np.float32), box, label="cat (90.0%)")
    assert shown.shape[1:] == (200, 3)
    assert shown.shape[0] > 100  # the legend below the image
    assert np.all(shown[:100, :10] == 90)  # 200 * 0.45, outside the center crop
    assert shown[50, 100, 0] > 150  # the map's red at its maximum, inside
    legend = shown[100:].astype(int)
    assert (legend[:, :60].sum(axis=2) < 200).any()  # the label's dark text on the left
    bar = legend[legend.shape[0] // 2, 100:]
    bluest, reddest = np.argmax(bar[:, 2] - bar[:, 0]), np.argmax(bar[:, 0] - bar[:, 2])
    assert bar[bluest, 2] > bar[bluest, 0] + 40  # the color bar: jet, from blue at 0 ...
    assert bar[reddest, 0] > bar[reddest, 2] + 40  # ... to red at 1
    assert bluest < reddest
    unlabelled = overlay_on_original(image, np.ones((32, 32), np.float32), box)
    assert (unlabelled[100:, :40] == 255).all()  # no label: the strip's left stays white


# -- settings ----------------------------------------------------------------------------


def test_settings_parsing(tmp_path: Path) -> None:
    assert parse_size("96") == (96, 96)
    assert parse_size("96,128") == (96, 128)
    with pytest.raises(UsageError):
        parse_size("0")
    names = ("cat", "dog", "tabby cat")
    assert resolve_target("top1", names) == (None, "top1")
    assert resolve_target("2", names) == (2, "2")
    assert resolve_target("Tabby Cat", names) == (2, "tabby cat")
    with pytest.raises(UsageError, match="close"):
        resolve_target("tabby ca", names)
    with pytest.raises(UsageError, match="out of range"):
        resolve_target("3", names)
    assert ModelSource.parse("EfficientNet-Lite0").kind == "builtin"
    assert ModelSource.parse("pkg.mod:build").location == "pkg.mod:build"
    (tmp_path / "m.keras").write_bytes(b"")
    assert ModelSource.parse("m.keras", str(tmp_path)).kind == "keras-file"
    (tmp_path / "m.pt").write_bytes(b"")
    assert ModelSource.parse("m.pt", str(tmp_path)).kind == "torch-file"
    with pytest.raises(UsageError, match="did you mean 'efficientnet-lite0'"):
        ModelSource.parse("efficientnet-lite", str(tmp_path))
    with pytest.raises(UsageError, match="no such Python file"):
        ModelSource.parse("nothere.py:build", str(tmp_path))


# -- whole jobs ---------------------------------------------------------------------------


def test_job_writes_maps_overlays_results_and_summary(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    names_file = tmp_path / "names.txt"
    names_file.write_text("zero\none\ntwo\nthree\nfour\n")
    status = explain(FAKE, str(folder), "--out", str(out), "--class-names", str(names_file), *ARGS)
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""  # --quiet
    for name in BROKEN:
        assert name in captured.err
    rows = results_by_path(out)
    assert sorted(rows) == sorted([*GOOD, *BROKEN])
    assert list(next(iter(rows.values()))) == [
        "path", "name", "status", "error", "target", "target_name", "probability", "degenerate",
        "seconds",
    ]  # fmt: skip
    for name in GOOD:
        row = rows[name]
        assert row["status"] == "ok"
        assert row["error"] == ""
        saliency = np.load(out / "maps" / f"{row['name']}.npy")
        assert saliency.dtype == np.float32
        assert saliency.shape == (32, 32)
        assert saliency.min() >= 0.0
        assert saliency.max() <= 1.0
        assert row["target_name"] == ("zero", "one", "two", "three", "four")[int(row["target"])]
        assert 0.0 < float(row["probability"]) <= 1.0
        assert row["degenerate"] in ("True", "False")
        from PIL import Image

        with Image.open(out / "overlays" / f"{row['name']}.png") as overlay:
            assert overlay.size[0] == 52  # the original's width; its height and the legend's
            assert overlay.size[1] > 40
    for name in BROKEN:
        assert rows[name]["status"] == "error"
        assert rows[name]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {
        "images": len(GOOD) + len(BROKEN), "ok": len(GOOD), "error": len(BROKEN),
        "degenerate": sum(rows[name]["degenerate"] == "True" for name in GOOD),
    }  # fmt: skip
    probabilities = [float(rows[name]["probability"]) for name in GOOD]
    assert summary["means"]["probability"]["mean"] == pytest.approx(np.mean(probabilities))
    sem = np.std(probabilities, ddof=1) / np.sqrt(len(probabilities))
    assert summary["means"]["probability"]["sem"] == pytest.approx(sem)
    assert summary["settings"]["groups"] == 4
    assert summary["settings"]["size"] == [32, 32]
    assert summary["run"]["runner"] == "local"
    assert summary["run"]["explained"] == 13
    assert "numpy" in summary["versions"]
    assert not list(out.rglob("*.tmp"))  # every temporary file was renamed or removed


def test_rerun_skips_done_images_and_retries_errors(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert explain(FAKE, str(folder), "--out", str(out), *ARGS) == 1
    first = {
        name: np.load(out / "maps" / f"{row['name']}.npy")
        for name, row in results_by_path(out).items()
        if row["status"] == "ok"
    }
    stamps = {path: path.stat().st_mtime_ns for path in (out / "maps").iterdir()}
    capsys.readouterr()
    assert explain(FAKE, str(folder), "--out", str(out), "--size", "32", "--groups", "4") == 1
    printed = capsys.readouterr().out
    assert f"Explaining {len(BROKEN)} images locally ({len(GOOD)} done before)" in printed
    assert {path: path.stat().st_mtime_ns for path in (out / "maps").iterdir()} == stamps
    rows = results_by_path(out)
    assert len(rows) == len(GOOD) + len(BROKEN)
    # --overwrite explains everything again, to the same maps.
    assert explain(FAKE, str(folder), "--out", str(out), "--overwrite", *ARGS) == 1
    for name, saliency in first.items():
        assert np.array_equal(np.load(out / "maps" / f"{rows[name]['name']}.npy"), saliency)
    # A fixed image is no longer an error on the next run.
    (folder / "broken.jpg").rename(folder / "broken.jpg.bak")
    try:
        from PIL import Image

        Image.fromarray(blob_picture(20)).save(folder / "broken.jpg", format="JPEG")
        fixed = tmp_path / "fixed"
        assert explain(FAKE, str(folder / "a"), "--out", str(fixed), *ARGS) == 0
        assert (
            explain(FAKE, str(folder / "a"), str(folder / "broken.jpg"), "--out", str(fixed), *ARGS)
            == 0
        )
    finally:
        (folder / "broken.jpg").unlink()
        (folder / "broken.jpg.bak").rename(folder / "broken.jpg")


def test_other_settings_are_refused_in_the_same_folder(
    folder: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert explain(FAKE, str(folder / "a"), "--out", str(out), *ARGS) == 0
    capsys.readouterr()
    other = [FAKE, str(folder / "a"), "--out", str(out), "--size", "32", "--groups", "2", "--quiet"]
    assert explain(*other) == 2
    assert "groups 4 -> 2" in capsys.readouterr().err
    assert explain(*other, "--overwrite") == 0


def test_interrupted_run_resumes(folder: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Ctrl-C after three images: exit 130, the three are kept, the rerun does the rest."""
    module = tmp_path / "stopper.py"
    module.write_text(
        "import os\n"
        "import numpy as np\n"
        "from groupcam.jobs.images import fit_to_size, normalize\n"
        "calls = []\n"
        "def prepare(image):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 4 and os.environ.get('STOP_AT_4'):\n"
        "        raise KeyboardInterrupt\n"
        "    x = normalize(fit_to_size(image, (32, 32)).pixels, 'imagenet')\n"
        "    return x.transpose(2, 0, 1)\n"
    )
    out = tmp_path / "out"
    args = [FAKE, str(folder), "--out", str(out), "--preprocess", "stopper:prepare", *ARGS[2:]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOP_AT_4", "1")
    assert explain(*args) == 130
    monkeypatch.delenv("STOP_AT_4")
    assert "interrupted" in capsys.readouterr().err
    rows = results_by_path(out)
    assert sum(row["status"] == "ok" for row in rows.values()) == 3
    assert len(list((out / "maps").iterdir())) == 3
    assert explain(*args) == 1
    rows = results_by_path(out)
    assert sum(row["status"] == "ok" for row in rows.values()) == len(GOOD)


def stored_rows(out: Path, status: str | None = None) -> int:
    """Rows in the job's store (read as another process would, while the job writes)."""
    if not (out / "job.sqlite").exists():
        return 0
    with contextlib.closing(sqlite3.connect(out / "job.sqlite", timeout=10)) as db:
        try:
            query = "SELECT COUNT(*) FROM outcomes" + ("" if status is None else " WHERE status=?")
            return int(db.execute(query, () if status is None else (status,)).fetchone()[0])
        except sqlite3.OperationalError:  # the table is being created
            return 0


def test_killed_process_resumes_from_its_store(folder: Path, tmp_path: Path) -> None:
    """SIGKILL in the middle of a run: the rerun finishes the job with nothing lost."""
    slow = tmp_path / "slowprep.py"
    slow.write_text(
        "import time\n"
        "from groupcam.jobs.images import fit_to_size, normalize\n"
        "def prepare(image):\n"
        "    time.sleep(0.4)\n"
        "    return normalize(fit_to_size(image, (32, 32)).pixels, 'imagenet').transpose(2, 0, 1)\n"
    )
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "groupcam", "explain", FAKE, str(folder), "--out", str(out),
        "--preprocess", "slowprep:prepare", "--groups", "4", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    process = subprocess.Popen(command, cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if stored_rows(out) >= 4:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = stored_rows(out, "ok")
    assert 1 <= done_before < len(GOOD)
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert finished.returncode == 1, finished.stderr
    rows = results_by_path(out)
    assert sum(row["status"] == "ok" for row in rows.values()) == len(GOOD)
    for row in rows.values():
        if row["status"] == "ok":
            assert np.load(out / "maps" / f"{row['name']}.npy").shape == (32, 32)


def test_usage_errors_exit_2(folder: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "out")
    assert explain("nosuchmodel", str(folder), "--out", out) == 2
    assert explain(FAKE, str(tmp_path / "missing"), "--out", out) == 2
    assert explain(FAKE, str(folder), "--out", out, "--workers", "2") == 2
    assert explain("_support.nosuchmodule:build", str(folder), "--out", out, *ARGS) == 2
    assert explain("_support.fake_backend:nothing", str(folder), "--out", out, *ARGS) == 2
    assert explain("_support.explain_inputs:GOOD", str(folder), "--out", out, *ARGS) == 2
    assert explain(FAKE, str(folder), "--out", out, "--preprocess", "nomodule:f", *ARGS) == 2
    assert explain(FAKE, str(folder), "--out", out, "--targets", "no such class") == 2
    err = capsys.readouterr().err
    assert "no built-in model" in err
    assert "no such file or folder" in err
    assert "--workers needs --ray" in err
    assert "cannot import" in err
    with pytest.raises(SystemExit) as exited:
        explain(FAKE, str(folder), "--out", out, "--metrics", "pointing")
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        explain(FAKE, str(folder))  # no --out
    assert exited.value.code == 2


def test_settings_no_image_can_run_with_stop_the_job(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert explain(FAKE, str(folder), "--out", str(out), "--size", "32", "--groups", "64") == 2
    err = capsys.readouterr().err
    assert "groups=64 is more than the 10 channels" in err
    assert "(at " in err  # names the image it was found on
    assert not list(out.glob("maps/*.npy"))  # stopped at the first image it could decode
    job = ExplainJob(ModelSource.parse(FAKE), size=(32, 32), groups=64)
    with pytest.raises(SettingsError, match="groups=64"):
        explain_images(job, find_images([str(folder)]), tmp_path / "api")


def test_api_runs_the_same_job(folder: Path, tmp_path: Path) -> None:
    job = ExplainJob(ModelSource.parse(FAKE), size=(32, 32), groups=4, metrics=("deletion",))
    report = explain_images(job, find_images([str(folder / "b")]), tmp_path / "api")
    assert report.images == 2
    assert report.explained == 2
    assert report.ok
    with open(tmp_path / "api" / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert "deletion_auc" in rows[0]
    assert "insertion_auc" not in rows[0]
    assert 0.0 <= float(rows[0]["deletion_auc"]) <= 1.0


def test_progress_bar_on_a_terminal(folder: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    args = [FAKE, str(folder / "a"), str(folder / "grey.png"), "--out", str(tmp_path / "out")]
    assert explain(*args, "--size", "32", "--groups", "4") == 0
    err = capsys.readouterr().err
    assert "explain: 100%" in err
    assert "2/2" in err
    assert "img/s" in err
    assert explain(*args, "--size", "32", "--groups", "4", "--quiet", "--overwrite") == 0
    assert capsys.readouterr().err == ""
