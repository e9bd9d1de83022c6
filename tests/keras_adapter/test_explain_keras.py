"""``groupcam explain`` with Keras models: ``.keras`` files in safe mode, the built-in model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from _support.explain_inputs import BROKEN, results_by_path
from _support.explain_models import reference_input, torch_lite0_map
from _support.keras_models import keras_blob_net

from groupcam.cli import main

SMALL = ["--size", "32", "--groups", "4", "--quiet"]
#: Compiling for the JAX backend takes this test past 10 s on a 2-core CPU.
slow_on_jax = pytest.mark.slow if keras.backend.backend() == "jax" else pytest.mark.usefixtures()


def torch_map(blob_net, path: str) -> np.ndarray:
    import torch

    from groupcam_torch import GroupCAM

    x = torch.from_numpy(reference_input(path).transpose(0, 3, 1, 2).copy())
    return GroupCAM(blob_net, target_layer="6", groups=4)(x)[0]


@slow_on_jax
def test_keras_file_gives_torch_maps(folder: Path, tmp_path: Path, blob_net) -> None:
    saved = tmp_path / "blob.keras"
    keras_blob_net(blob_net).save(saved)
    out = tmp_path / "out"
    inputs = [str(folder / name) for name in ("a", "grey.png", "rgba.png", *BROKEN)]
    status = main(["explain", str(saved), *inputs, "--out", str(out), "--layer", "relu6", *SMALL])
    assert status == 1
    rows = results_by_path(out)
    assert {name for name, row in rows.items() if row["status"] == "error"} == set(BROKEN)
    for name in ("a/scene.jpg", "grey.png", "rgba.png"):
        row = rows[name]
        found = np.load(out / "maps" / f"{row['name']}.npy")
        np.testing.assert_allclose(found, torch_map(blob_net, row["path"]), atol=1e-4)


def test_keras_safe_mode_refuses_code(folder: Path, tmp_path: Path, capsys) -> None:
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(h)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    saved = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(saved)
    out = tmp_path / "out"
    assert main(["explain", str(saved), str(folder / "a"), "--out", str(out), *SMALL]) == 2
    assert "safe" in capsys.readouterr().err.lower()
    assert not (out / "maps").exists()
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"")
    assert main(["explain", str(h5), str(folder / "a"), "--out", str(out), *SMALL]) == 2
    assert "--trust-model" in capsys.readouterr().err


@pytest.mark.slow
def test_builtin_in_keras_matches_torch(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["efficientnet-lite0", str(folder / "a"), "--out", str(out), "--framework", "keras"]
    assert main(["explain", *args, "--size", "64", "--groups", "8", "--quiet"]) == 0
    row = next(iter(results_by_path(out).values()))
    expected = torch_lite0_map(row["path"])
    np.testing.assert_allclose(np.load(out / "maps" / f"{row['name']}.npy"), expected, atol=1e-4)


def test_keras_input_size_is_the_models(folder: Path, tmp_path: Path) -> None:
    from _support.keras_models import functional_cnn

    saved = tmp_path / "fixed.keras"
    functional_cnn().save(saved)  # declares (32, 32, 3) inputs
    out = tmp_path / "out"
    args = [str(saved), str(folder / "grey.png"), "--out", str(out), "--groups", "4", "--quiet"]
    assert main(["explain", *args]) == 0
    (row,) = results_by_path(out).values()
    assert np.load(out / "maps" / f"{row['name']}.npy").shape == (32, 32)


def test_the_keras_loader_implements_the_declared_protocol() -> None:
    from groupcam.loaders import FileLoader, ModelLoader, loader

    found = loader("keras")
    assert isinstance(found, ModelLoader)
    assert isinstance(found, FileLoader) is True
    assert found.FRAMEWORK == "keras"


def test_a_replaced_keras_file_is_refused_on_resume(folder: Path, tmp_path: Path, capsys) -> None:
    """Another model saved at the same path: the folder's maps are not mixed."""
    from _support.keras_models import functional_cnn

    saved = tmp_path / "model.keras"
    functional_cnn(seed=0).save(saved)
    out = tmp_path / "out"
    assert main(["explain", str(saved), str(folder / "grey.png"), "--out", str(out), *SMALL]) == 0
    functional_cnn(seed=1).save(saved)
    assert main(["explain", str(saved), str(folder / "a"), "--out", str(out), *SMALL]) == 2
    assert "holds maps of another model (its file" in capsys.readouterr().err
    assert list(results_by_path(out)) == ["grey.png"]


def test_the_keras_loader_fingerprints_weights(tmp_path: Path) -> None:
    from _support.keras_models import functional_cnn

    from groupcam.jobs.models import model_weights_digest

    first, again, other = functional_cnn(seed=0), functional_cnn(seed=0), functional_cnn(seed=1)
    assert model_weights_digest("keras", first) == model_weights_digest("keras", again)
    assert model_weights_digest("keras", first) != model_weights_digest("keras", other)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's own log")
def test_no_tensorflow_start_up_lines_on_stderr(folder: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from _support.keras_models import functional_cnn

    saved = tmp_path / "model.keras"
    functional_cnn().save(saved)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [str(saved), str(folder / "grey.png"), "--out", str(tmp_path / "out"), *SMALL]
    done = subprocess.run(
        [sys.executable, "-m", "groupcam", "explain", *args],
        capture_output=True,
        text=True,
        env={**env, "KERAS_BACKEND": "tensorflow"},
    )
    assert done.returncode == 0, done.stderr
    for noise in ("cpu_feature_guard", "oneDNN custom operations", "Unable to register cu"):
        assert noise not in done.stderr
