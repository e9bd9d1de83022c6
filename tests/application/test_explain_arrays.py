"""``groupcam explain`` on arrays: ``.npy`` inputs of any rank and NIfTI volumes.

The model is the numpy ``FakeNumpyBackend`` (channels-first, 3 input channels),
which pools every spatial axis: a 1-D, 2-D or 3-D CNN alike.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend
from PIL import Image

from groupcam.cli import main
from groupcam.jobs import find_images
from groupcam_core import explain_group_cam, make_config

FAKE = "_support.fake_backend:FakeNumpyBackend"
ARGS = ["--groups", "4", "--quiet"]


def _input(spatial: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(3, *spatial))
    x[(slice(None), *[slice(side // 4, side // 2) for side in spatial])] += 2.0
    return x.astype(np.float32)


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="") as handle:
        return {Path(row["path"]).name: row for row in csv.DictReader(handle)}


def test_npy_inputs_of_every_rank_are_explained_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "arrays"
    folder.mkdir()
    inputs = {
        "signal.npy": _input((32,), 0),
        "image.npy": _input((16, 16), 1),
        "volume.npy": _input((8, 8, 8), 2),
    }
    for name, array in inputs.items():
        np.save(folder / name, array)
    np.save(folder / "bad_rank.npy", np.zeros(5, dtype=np.float32))
    np.save(folder / "nan.npy", np.full((3, 8), np.nan, dtype=np.float32))
    np.save(folder / "text.npy", np.array(["a", "b"]))
    out = tmp_path / "out"
    assert main(["explain", FAKE, str(folder), "--out", str(out), *ARGS]) == 1  # some failed
    rows = _rows(out)
    config = make_config(groups=4)
    for name, array in inputs.items():
        assert rows[name]["status"] == "ok", rows[name]["error"]
        maps = np.load(out / "maps" / f"{Path(name).stem}-{_digest(folder / name)}.npy")
        expected = explain_group_cam(FakeNumpyBackend(), array[None], config=config).saliency[0]
        assert maps.shape == array.shape[1:]
        np.testing.assert_allclose(maps, expected, atol=1e-6)  # not resized, not normalized
        picture = Image.open(out / "overlays" / f"{Path(name).stem}-{_digest(folder / name)}.png")
        assert picture.size[0] > 100
    assert "(channels, L)" in rows["bad_rank.npy"]["error"]
    assert "NaN or inf" in rows["nan.npy"]["error"]
    assert "not real numbers" in rows["text.npy"]["error"]


def test_a_nifti_volume_gets_its_channel_axis_for_the_model(tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")
    volume = np.moveaxis(_input((8, 8, 8), 3), 0, -1)  # (X, Y, Z, C) on disk
    path = tmp_path / "scan.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, affine=np.eye(4)), path)
    out = tmp_path / "out"
    assert main(["explain", FAKE, str(path), "--out", str(out), *ARGS]) == 0
    (row,) = _rows(out).values()
    assert row["status"] == "ok"
    (found,) = find_images([str(path)])
    maps = np.load(out / "maps" / f"{found.name}.npy")
    expected = explain_group_cam(
        FakeNumpyBackend(), np.moveaxis(volume, -1, 0)[None], config=make_config(groups=4)
    ).saliency[0]
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def _digest(path: Path) -> str:
    (found,) = find_images([str(path)])
    return found.name.rsplit("-", 1)[1]
