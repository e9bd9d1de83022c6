"""``groupcam explain`` with torch models: saved modules, TorchScript, callables, the built-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _support.explain_inputs import BROKEN, GOOD, results_by_path
from _support.explain_models import reference_input
from _support.torch_models import TinyResNet

from groupcam.cli import main
from groupcam.zoo.lite0_torch import efficientnet_lite0
from groupcam_torch import GroupCAM

SMALL = ["--size", "32", "--groups", "4", "--quiet"]


def expected_map(model: torch.nn.Module, path: str, layer: str = "6", **settings) -> np.ndarray:
    x = torch.from_numpy(reference_input(path).transpose(0, 3, 1, 2).copy())
    return GroupCAM(model, target_layer=layer, groups=4, **settings)(x)[0]


def check_maps(out: Path, model: torch.nn.Module, layer: str = "6") -> None:
    rows = results_by_path(out)
    for name in GOOD[:4]:
        row = rows[name]
        assert row["status"] == "ok", row
        found = np.load(out / "maps" / f"{row['name']}.npy")
        np.testing.assert_allclose(found, expected_map(model, row["path"], layer), atol=1e-6)


def test_saved_module_needs_trust(folder: Path, tmp_path: Path, blob_net, capsys) -> None:
    saved = tmp_path / "blob.pt"
    torch.save(blob_net, saved)
    out = tmp_path / "out"
    assert main(["explain", str(saved), str(folder), "--out", str(out), *SMALL]) == 2
    error = capsys.readouterr().err
    assert "pickled torch module" in error
    assert "--trust-model" in error
    assert not (out / "results.csv").exists()  # nothing was explained
    status = main(["explain", str(saved), str(folder), "--out", str(out), "--trust-model", *SMALL])
    assert status == 1  # the broken files
    rows = results_by_path(out)
    assert {name for name, row in rows.items() if row["status"] == "error"} == set(BROKEN)
    check_maps(out, blob_net)


def test_state_dict_is_refused_with_advice(folder: Path, tmp_path: Path, blob_net, capsys) -> None:
    saved = tmp_path / "weights.pth"
    torch.save(blob_net.state_dict(), saved)
    assert main(["explain", str(saved), str(folder / "a"), "--out", str(tmp_path / "o")]) == 2
    assert "holds weights" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_sequential(folder: Path, tmp_path: Path, blob_net, how: str) -> None:
    scripted = (
        torch.jit.script(blob_net)
        if how == "script"
        else torch.jit.trace(blob_net, torch.zeros(1, 3, 32, 32))
    )
    saved = tmp_path / "blob.ts"
    torch.jit.save(scripted, saved)
    out = tmp_path / "out"
    assert main(["explain", str(saved), str(folder), "--out", str(out), *SMALL]) == 1
    check_maps(out, blob_net)  # the default layer is the eager model's, "6"
    named = tmp_path / "named"
    args = [str(saved), str(folder), "--out", str(named), "--layer", "4", *SMALL]
    assert main(["explain", *args]) == 1
    check_maps(named, blob_net, layer="4")


def test_torchscript_without_sequential_is_refused(tmp_path: Path, folder: Path, capsys) -> None:
    saved = tmp_path / "resnet.ts"
    torch.jit.save(torch.jit.script(TinyResNet().eval()), saved)
    assert main(["explain", str(saved), str(folder / "a"), "--out", str(tmp_path / "o")]) == 2
    assert "nn.Sequential" in capsys.readouterr().err


def test_module_callable_targets_and_preprocess(folder: Path, tmp_path: Path, blob_net) -> None:
    out = tmp_path / "out"
    args = ["_support.explain_models:torch_blob_net", str(folder / "a"), str(folder / "b")]
    assert main(["explain", *args, "--out", str(out), "--targets", "2", *SMALL]) == 0
    rows = results_by_path(out)
    assert {row["target"] for row in rows.values()} == {"2"}
    assert {row["target_name"] for row in rows.values()} == {""}  # 4 classes, no names
    row = rows["a/scene.jpg"]
    assert row["name"].startswith("scene-")  # a/scene.jpg and b/scene.jpg, named from a/ and b/
    found = np.load(out / "maps" / f"{row['name']}.npy")
    np.testing.assert_allclose(found, _with_target(blob_net, row["path"], 2), atol=1e-6)
    custom = tmp_path / "custom"
    prep = ["--preprocess", "_support.explain_models:blob_input"]
    assert main(["explain", *args, "--out", str(custom), *prep, *SMALL]) == 0
    assert np.load(custom / "maps" / f"{row['name']}.npy").shape == (32, 32)
    wrong = ["--framework", "keras"]
    assert main(["explain", *args, "--out", str(tmp_path / "w"), *wrong, *SMALL]) == 2


def _with_target(model: torch.nn.Module, path: str, target: int) -> np.ndarray:
    x = torch.from_numpy(reference_input(path).transpose(0, 3, 1, 2).copy())
    return GroupCAM(model, target_layer="6", groups=4)(x, targets=target)[0]


@pytest.mark.slow
def test_builtin_efficientnet_lite0_with_metrics(folder: Path, tmp_path: Path, capsys) -> None:
    from groupcam.samples import imagenet_class_names
    from groupcam_core import metrics

    out = tmp_path / "out"
    inputs = [str(folder / "a"), str(folder / "grey.png"), str(folder / "broken.jpg")]
    settings = ["--size", "64", "--groups", "8", "--metrics", "insertion,deletion"]
    assert main(["explain", "efficientnet-lite0", *inputs, "--out", str(out), *settings]) == 1
    printed = capsys.readouterr()
    assert "2 of 3 images explained" in printed.out
    assert "broken.jpg" in printed.err
    rows = results_by_path(out)
    row = rows["a/scene.jpg"]
    assert row["target_name"] == imagenet_class_names()[int(row["target"])]
    model = efficientnet_lite0()
    x = torch.from_numpy(reference_input(row["path"], 64, "inception").transpose(0, 3, 1, 2))
    cam = GroupCAM(model, groups=8)
    result = cam.explain(x.contiguous())
    found = np.load(out / "maps" / f"{row['name']}.npy")
    np.testing.assert_allclose(found, result.saliency[0], atol=1e-6)
    assert float(row["probability"]) == pytest.approx(float(result.target_probabilities[0]))
    insertion = metrics.insertion(cam, x, result.saliency, result.targets).auc[0]
    assert float(row["insertion_auc"]) == pytest.approx(insertion, abs=1e-6)
    assert 0.0 <= float(row["deletion_auc"]) <= 1.0


def test_the_torch_loader_implements_the_declared_protocol() -> None:
    from groupcam.loaders import FileLoader, ModelLoader, loader

    found = loader("torch")
    assert isinstance(found, ModelLoader)
    assert isinstance(found, FileLoader) is True
    assert found.FRAMEWORK == "torch"
