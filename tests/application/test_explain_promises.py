"""``groupcam explain`` keeps its promises as an adversarial user tests them: nothing lost,
nothing mixed, no crash, no hang, no unbounded memory on ordinary or odd files.

Framework-free: the models are numpy backends (``_support.fake_backend``).
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
from _support.explain_inputs import blob_picture
from PIL import Image

from groupcam.cli import main
from groupcam.jobs import ExplainJob, ModelSource, explain_images, find_images
from groupcam.jobs.images import MAX_ASPECT, WORKING_PIXELS, decode_image
from groupcam.jobs.inputs import NAME_BYTES

FAKE = "_support.fake_backend:FakeNumpyBackend"
TESTS = Path(__file__).resolve().parents[1]
ARGS = ["--size", "32", "--groups", "4", "--quiet"]


def explain(*args: str) -> int:
    return main(["explain", *args])


def rows_of(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def stored(out: Path) -> list[tuple[str, str]]:
    """``(name, status)`` of every row in the job's store, read as another process would."""
    with contextlib.closing(sqlite3.connect(out / "job.sqlite", timeout=10)) as db:
        return db.execute("SELECT name, status FROM outcomes ORDER BY rowid").fetchall()


def pictures(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blob_picture(seed)).save(folder / name)
    return folder


def slow_preprocess(tmp_path: Path, seconds: float = 0.4) -> str:
    (tmp_path / "slowprep.py").write_text(
        "import time\n"
        "from groupcam.jobs.images import fit_to_size, normalize\n"
        "def prepare(image):\n"
        f"    time.sleep({seconds})\n"
        "    return normalize(fit_to_size(image, (32, 32)).pixels, 'imagenet').transpose(2, 0, 1)\n"
    )
    return "slowprep:prepare"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "groupcam", "explain", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}


def wait_for_rows(out: Path, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the job ended before the test could act on it"
        if (out / "job.sqlite").exists():
            with contextlib.suppress(sqlite3.OperationalError):
                if len(stored(out)) >= count:
                    return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} rows after {timeout} s")


# -- 1. one model per folder ------------------------------------------------------------


def test_a_callable_that_now_builds_other_weights_is_refused(tmp_path: Path, capsys) -> None:
    """The same ``module:callable`` resolving to other weights: the resume is refused."""
    images = pictures(tmp_path / "images", ["a.png", "b.png"])
    (tmp_path / "seed.txt").write_text("1")
    (tmp_path / "mymodel.py").write_text(
        "from pathlib import Path\n"
        "from _support.fake_backend import FakeNumpyBackend\n"
        "def build():\n"
        "    return FakeNumpyBackend(seed=int(Path(__file__).with_name('seed.txt').read_text()))\n"
    )
    out = tmp_path / "out"
    spec = str(tmp_path / "mymodel.py") + ":build"
    assert explain(spec, str(images / "a.png"), "--out", str(out), *ARGS) == 0
    (tmp_path / "seed.txt").write_text("2")  # other weights behind the same spec
    assert explain(spec, str(images), "--out", str(out), *ARGS) == 2
    message = capsys.readouterr().err
    assert "holds maps of another model" in message
    assert "weights" in message
    assert [status for _, status in stored(out)] == ["ok"]  # nothing of the new model mixed in
    assert explain(spec, str(images), "--out", str(out), *ARGS, "--overwrite") == 0
    assert len(stored(out)) == 2


# -- 2. one job per folder, its state in SQLite ----------------------------------------------


def test_a_second_job_on_the_same_folder_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    images = pictures(tmp_path / "images", [f"p{i}.png" for i in range(8)])
    out = tmp_path / "out"
    args = [FAKE, str(images), "--out", str(out), "--preprocess", slow_preprocess(tmp_path)]
    first = subprocess.Popen(
        command(*args, "--groups", "4", "--quiet"), cwd=tmp_path, env=environment()
    )
    try:
        wait_for_rows(out, 1, first)
        for groups in ("4", "3"):  # the same settings and other ones alike
            second = subprocess.run(
                command(*args, "--groups", groups, "--quiet"),
                cwd=tmp_path,
                env=environment(),
                capture_output=True,
                text=True,
            )
            assert second.returncode == 2, second.stderr
            assert re.search(r"is in use by another job \(pid \d+ on ", second.stderr)
        assert first.wait(timeout=120) == 0
    finally:
        first.kill()
    rows = rows_of(out)
    assert sorted(row["name"] for row in rows) == sorted(name for name, _ in stored(out))
    assert len(rows) == 8
    assert all(row["status"] == "ok" for row in rows)
    assert len(list((out / "maps").glob("*.npy"))) == 8
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["groups"] == 4  # every map from the first job


def test_the_store_is_sqlite_with_one_transaction_per_image(tmp_path: Path) -> None:
    images = pictures(tmp_path / "images", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    assert explain(FAKE, str(images), "--out", str(out), *ARGS) == 0
    with contextlib.closing(sqlite3.connect(out / "job.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        settings = json.loads(
            db.execute("SELECT value FROM job WHERE key='settings'").fetchone()[0]
        )
        assert settings["groups"] == 4
        model = json.loads(db.execute("SELECT value FROM job WHERE key='model'").fetchone()[0])
        assert re.fullmatch(r"[0-9a-f]{64}", model["weights"])
        rows = db.execute("SELECT name, status, row FROM outcomes").fetchall()
    assert len(rows) == 3
    for name, status, row in rows:
        assert json.loads(row)["name"] == name
        assert status == "ok"
    assert {row["name"] for row in rows_of(out)} == {name for name, _, _ in rows}


def test_a_folder_that_is_not_a_store_is_refused(tmp_path: Path, capsys) -> None:
    images = pictures(tmp_path / "images", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "job.sqlite").write_bytes(b"not a database, at all" * 20)
    assert explain(FAKE, str(images), "--out", str(out), *ARGS) == 2
    assert "not a groupcam job store" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "journal.jsonl").write_text('{"groupcam_job": {}}\n')
    assert explain(FAKE, str(images), "--out", str(old), *ARGS) == 2
    assert "older groupcam" in capsys.readouterr().err
    assert explain(FAKE, str(images), "--out", str(old), *ARGS, "--overwrite") == 0


# -- 3. names -----------------------------------------------------------------------------


def test_names_that_clash_by_case_or_by_look_stay_apart_and_resume(tmp_path: Path, capsys) -> None:
    probe = find_images([str(pictures(tmp_path / "probe", ["Cat.png"]) / "Cat.png")])[0]
    looks_deduplicated = f"{probe.name}.png"  # a file named like another file's output name
    images = pictures(tmp_path / "images", ["Cat.png", "cat.png", looks_deduplicated])
    out = tmp_path / "out"
    assert explain(FAKE, str(images), "--out", str(out), *ARGS) == 0
    names = [row["name"] for row in rows_of(out)]
    assert len(names) == 3
    assert len({name.casefold() for name in names}) == 3  # apart even where case is ignored
    assert len(list((out / "maps").iterdir())) == 3
    assert len(list((out / "overlays").iterdir())) == 3
    capsys.readouterr()
    assert (
        main(["explain", FAKE, str(images), "--out", str(out), "--size", "32", "--groups", "4"])
        == 0
    )
    assert "3 of 3 images explained (0 in this run, 3 before)" in capsys.readouterr().out
    assert len(stored(out)) == 3


def test_adding_a_folder_keeps_the_names_and_maps_of_the_first_one(tmp_path: Path, capsys) -> None:
    first = pictures(tmp_path / "a", ["cat.png", "dog.png"])
    second = pictures(tmp_path / "b", ["cat.png"])
    out = tmp_path / "out"
    assert (
        explain(FAKE, str(first / "cat.png"), str(first / "dog.png"), "--out", str(out), *ARGS) == 0
    )
    before = {row["path"]: row["name"] for row in rows_of(out)}
    capsys.readouterr()
    args = [FAKE, str(first / "cat.png"), str(first / "dog.png"), str(second / "cat.png")]
    assert main(["explain", *args, "--out", str(out), "--size", "32", "--groups", "4"]) == 0
    assert "(1 in this run, 2 before)" in capsys.readouterr().out
    after = {row["path"]: row["name"] for row in rows_of(out)}
    assert {path: after[path] for path in before} == before
    assert len(set(after.values())) == 3


def test_long_and_odd_file_names_get_bounded_safe_output_names(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    long = "é" * 120 + ".png"  # 240 bytes of name: a temporary file beside it would be too long
    odd = "a b:c*d?\\e\x01.png"
    for seed, name in enumerate((long, odd)):
        Image.fromarray(blob_picture(seed)).save(folder / name)
    out = tmp_path / "out"
    assert explain(FAKE, str(folder), "--out", str(out), *ARGS) == 0
    for row in rows_of(out):
        assert row["status"] == "ok", row
        assert len(row["name"].encode()) <= NAME_BYTES + 11
        assert re.fullmatch(r"[\w.-]+", row["name"])


# -- 4. and 5. what is an input ---------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_pipe_named_like_an_image_is_never_read(tmp_path: Path, capsys) -> None:
    images = pictures(tmp_path / "images", ["a.png"])
    os.mkfifo(images / "pipe.png")
    out = tmp_path / "out"
    done = subprocess.run(
        command(FAKE, str(images), "--out", str(out), *ARGS),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,  # reading the pipe would hang the job forever
    )
    assert done.returncode == 0, done.stderr
    assert [Path(row["path"]).name for row in rows_of(out)] == ["a.png"]
    assert explain(FAKE, str(images / "pipe.png"), "--out", str(tmp_path / "o2"), *ARGS) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_an_output_folder_inside_an_input_folder_is_not_an_input(tmp_path: Path, capsys) -> None:
    images = pictures(tmp_path / "images", ["a.png", "b.png"])
    out = images / "explained"
    for _ in range(3):
        assert (
            main(["explain", FAKE, str(images), "--out", str(out), "--size", "32", "--groups", "4"])
            == 0
        )
    assert len(rows_of(out)) == 2
    assert "2 of 2 images explained (0 in this run, 2 before)" in capsys.readouterr().out


# -- 6. bombs -----------------------------------------------------------------------------------


def test_shape_and_decompression_bombs_are_error_rows(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    pictures(folder, ["fine.png"])
    Image.new("L", (20000, 1), 80).save(folder / "line.png")  # 140 bytes, 1 x 20000
    Image.new("L", (7000, 6000), 80).save(folder / "huge.png")  # 42 million pixels
    out = tmp_path / "out"
    assert explain(FAKE, str(folder), "--out", str(out), *ARGS) == 1
    rows = {Path(row["path"]).name: row for row in rows_of(out)}
    assert rows["fine.png"]["status"] == "ok"
    assert rows["line.png"]["status"] == "error"
    assert f"more than {MAX_ASPECT} times the other" in rows["line.png"]["error"]
    assert rows["huge.png"]["status"] == "error"
    assert "more than the 40 million" in rows["huge.png"]["error"]


def test_a_large_jpeg_is_decoded_reduced(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(np.tile(blob_picture(3), (150, 115, 1))).save(path, quality=70)
    code = (
        "import resource, sys\n"
        "from groupcam.jobs.images import decode_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"image = decode_image({str(path)!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(image.shape[0], image.shape[1], (after - before) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    height, width, grown = map(int, done.stdout.split())
    assert height * width <= WORKING_PIXELS
    assert abs(height / width - 6000 / 5980) < 0.01  # the aspect ratio is kept
    assert grown < 200  # MiB: 6000 x 6000 RGB in full would take 103 MiB, its float copies more
    assert decode_image(path).shape == (height, width, 3)


# -- 7. and 8. a folder that cannot be written --------------------------------------------------


def test_an_unwritable_output_folder_stops_before_the_model_loads(tmp_path: Path, capsys) -> None:
    images = pictures(tmp_path / "images", ["a.png"])
    (tmp_path / "loudmodel.py").write_text(
        "from pathlib import Path\n"
        "from _support.fake_backend import FakeNumpyBackend\n"
        "def build():\n"
        "    Path(__file__).with_name('loaded').write_text('yes')\n"
        "    return FakeNumpyBackend()\n"
    )
    spec = str(tmp_path / "loudmodel.py") + ":build"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker / "out", Path("/proc/groupcam-cannot-write-here")):
        assert explain(spec, str(images), "--out", str(out), *ARGS) == 2
        assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "loaded").exists()


def test_an_image_whose_outputs_cannot_be_written_is_an_error_row(tmp_path: Path) -> None:
    images = pictures(tmp_path / "images", ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlays").write_text("a file where the folder goes")
    assert explain(FAKE, str(images), "--out", str(out), *ARGS) == 1
    rows = rows_of(out)
    assert [row["status"] for row in rows] == ["error", "error"]
    assert all("cannot write its outputs" in row["error"] for row in rows)


# -- 9. models -------------------------------------------------------------------------------


def test_a_model_that_fails_to_load_leaves_no_folder_and_says_nothing_started(
    tmp_path: Path, capsys
) -> None:
    images = pictures(tmp_path / "images", ["a.png"])
    (tmp_path / "broken.py").write_text("def build():\n    raise RuntimeError('no weights')\n")
    out = tmp_path / "out"
    spec = str(tmp_path / "broken.py") + ":build"
    assert main(["explain", spec, str(images), "--out", str(out), "--size", "32"]) == 2
    captured = capsys.readouterr()
    assert "no weights" in captured.err
    assert "Explaining" not in captured.out
    assert not out.exists()


def test_a_model_with_the_wrong_output_shape_stops_at_the_first_image(
    tmp_path: Path, capsys
) -> None:
    images = pictures(tmp_path / "images", ["a.png", "b.png", "c.png"])
    (tmp_path / "flat.py").write_text(
        "from _support.fake_backend import FakeNumpyBackend\n"
        "class Flat(FakeNumpyBackend):\n"
        "    def forward(self, x):\n"
        "        return super().forward(x)[:, 0]\n"
        "def build():\n"
        "    return Flat()\n"
    )
    out = tmp_path / "out"
    assert explain(str(tmp_path / "flat.py") + ":build", str(images), "--out", str(out), *ARGS) == 2
    assert "one score per class" in capsys.readouterr().err
    assert not out.exists()  # nothing was explained


# -- 10. signals --------------------------------------------------------------------------------


def test_sigterm_does_what_ctrl_c_does(tmp_path: Path) -> None:
    images = pictures(tmp_path / "images", [f"p{i}.png" for i in range(9)])
    out = tmp_path / "out"
    args = [FAKE, str(images), "--out", str(out), "--preprocess", slow_preprocess(tmp_path)]
    process = subprocess.Popen(
        command(*args, "--groups", "4"),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_rows(out, 2, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr
    done = len(rows_of(out))  # the tables were written
    assert 2 <= done < 9
    assert re.search(rf"{done} of 9 images explained \({done} in this run, 0 before\)", stdout)
    rerun = subprocess.run(
        command(*args, "--groups", "4"), cwd=tmp_path, env=environment(), capture_output=True
    )
    assert rerun.returncode == 0
    assert len(rows_of(out)) == 9


def test_the_summary_after_an_interruption_counts_what_is_done(tmp_path: Path) -> None:
    """Ctrl-C before any image finished: 0 of 3 done, not "3 of 3 explained"."""
    images = pictures(tmp_path / "images", [f"p{i}.png" for i in range(3)])

    def interrupted(job, pending):
        raise KeyboardInterrupt
        yield  # pragma: no cover - a generator that stops at once

    job = ExplainJob(ModelSource.parse(FAKE), groups=4, size=(32, 32), workdir=str(TESTS))
    report = explain_images(job, find_images([str(images)]), tmp_path / "out", runner=interrupted)
    assert report.interrupted
    assert report.stopped_by == "SIGINT"
    assert (report.done, report.explained, report.skipped) == (0, 0, 0)


# -- 11. groupcam compare ------------------------------------------------------------------------


def test_compare_refuses_a_file_as_out_and_a_reference_it_does_not_run(
    tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["compare", "--ways", "torch", "--out", str(blocker)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    out = str(tmp_path / "out")
    assert main(["compare", "--ways", "jax-nnx", "--reference", "torch", "--out", out]) == 2
    assert "--reference torch is not one of --ways" in capsys.readouterr().err


# -- a new user's first hour --------------------------------------------------------------------


def test_every_option_says_what_it_does_and_its_default(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:") :].split("MODEL is")[0]
    entries = re.split(r"\n  (?=-)", options)[1:]
    assert len(entries) >= 15
    for entry in entries:
        flag = entry.split()[0]
        if flag in ("-h,", "--out"):
            continue
        assert "default" in " ".join(entry.split()), entry
    assert "auto|imagenet|inception|none" in text


def test_framework_start_up_lines_are_kept_off_stderr_and_nothing_else_is(tmp_path: Path) -> None:
    """What a framework writes to descriptor 2 on import: its start-up notices are dropped,
    a real message stays, and an exception still propagates."""
    (tmp_path / "noisy.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 00:00:1 2 port.cc:153] oneDNN custom operations are on. ...\\n')\n"
        "os.write(2, b'I0000 cpu_feature_guard.cc:227] This binary is optimized ...\\n')\n"
        "os.write(2, b'To enable the following instructions: AVX2 FMA, in other operations, '\n"
        "         b'rebuild TensorFlow with the appropriate compiler flags.\\n')\n"
        "os.write(2, b'a real warning the user must see\\n')\n"
        "raise RuntimeError('the import failed')\n"
    )
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from groupcam.native_logs import quiet_framework_start\n"
        "try:\n"
        "    with quiet_framework_start():\n"
        "        import noisy\n"
        "except RuntimeError as error:\n"
        "    print('caught', error)\n"
        "import os; os.write(2, b'stderr works again\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment()
    )
    assert done.stdout == "caught the import failed\n"
    assert done.stderr == "a real warning the user must see\nstderr works again\n"


def test_an_image_beyond_pillows_own_bomb_limit_is_our_error_row(tmp_path: Path) -> None:
    """Above Pillow's decompression-bomb limits, whose warning and error would otherwise reach
    stderr or the row as Pillow words them: the same bounded error row, nothing on stderr."""
    path = tmp_path / "wide.png"
    Image.new("1", (12000, 9000)).save(path)  # 108 million pixels in a few kB
    code = (
        "from groupcam.jobs.images import decode_image\n"
        "try:\n"
        f"    decode_image({str(path)!r})\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("the image has 108 million pixels, more than groupcam decodes")
    assert done.stderr == ""
