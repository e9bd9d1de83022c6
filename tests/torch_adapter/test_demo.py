"""The `groupcam demo` job end to end, offline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from groupcam.cli import main


@pytest.mark.slow
def test_demo_writes_overlays_and_grid(tmp_path, capsys) -> None:
    out = tmp_path / "pictures"
    assert main(["demo", "--out", str(out), "--groups", "16"]) == 0
    printed = capsys.readouterr().out
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "astronaut_groupcam.png",
        "chelsea_groupcam.png",
        "coffee_groupcam.png",
        "groupcam_grid.png",
        "rocket_groupcam.png",
    ]
    assert "espresso" in printed
    assert str(out / "groupcam_grid.png") in printed
    grid = np.asarray(Image.open(out / "groupcam_grid.png").convert("RGB"))
    assert grid.shape[1] > grid.shape[0] > 300
    assert grid.std() > 20  # a picture, not a blank page
    overlay = np.asarray(Image.open(out / "coffee_groupcam.png").convert("RGB"))
    assert overlay.std() > 20


def test_module_entry_point_and_bad_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "groupcam", "demo", "--groups", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "must be a positive integer" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "groupcam", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("groupcam ")
