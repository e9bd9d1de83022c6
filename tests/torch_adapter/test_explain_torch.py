"""``groupcam explain`` with torch models: saved modules, TorchScript, callables, the built-in."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _support.explain_inputs import BROKEN, GOOD, results_by_path
from _support.explain_models import reference_input
from _support.torch_models import TinyResNet
from PIL import Image

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


@pytest.mark.parametrize("kind", ["torchscript", "pickle"])
def test_a_replaced_model_file_is_refused_on_resume(
    folder: Path, tmp_path: Path, capsys, kind: str
) -> None:
    """Another model saved at the same path: the folder's maps are not mixed."""
    saved = tmp_path / "model.pt"
    trust = ["--trust-model", "--layer", "6"] if kind == "pickle" else []

    def save(model: torch.nn.Module) -> None:
        if kind == "torchscript":
            torch.jit.save(torch.jit.script(model), saved)
        else:
            torch.save(model, saved)

    save(_support_blob_net(seed=None))
    out = tmp_path / "out"
    args = [str(folder / "a"), "--out", str(out), *trust, *SMALL]
    assert main(["explain", str(saved), *args]) == 0
    save(_support_blob_net(seed=7))  # other weights
    assert main(["explain", str(saved), str(folder), "--out", str(out), *trust, *SMALL]) == 2
    message = capsys.readouterr().err
    assert "holds maps of another model (its file" in message
    assert str(saved) in message
    assert len(results_by_path(out)) == 1  # nothing of the second model was recorded
    assert main(["explain", str(saved), *args, "--overwrite"]) == 0


def _support_blob_net(seed: int | None) -> torch.nn.Module:
    from _support.torch_models import blob_net_architecture, trained_blob_net

    if seed is None:
        return trained_blob_net()
    torch.manual_seed(seed)
    return blob_net_architecture().eval()


def test_a_pickled_module_whose_class_lives_beside_it(tmp_path: Path, folder: Path) -> None:
    """As ``python`` does for a script: the file's folder and the current one are importable."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "mynets.py").write_text(
        "import torch\n"
        "class Doubled(torch.nn.Module):\n"
        "    def __init__(self, inner):\n"
        "        super().__init__()\n"
        "        self.inner = inner\n"
        "    def forward(self, x):\n"
        "        return 2 * self.inner(x)\n"
    )
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(project)!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from mynets import Doubled\n"
        "from _support.torch_models import trained_blob_net\n"
        f"torch.save(Doubled(trained_blob_net()), {str(project / 'doubled.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = [str(project / "doubled.pt"), str(folder / "a"), "--out", str(tmp_path / "out")]
    args += ["--trust-model", "--layer", "inner.6", *SMALL]
    done = subprocess.run(
        [sys.executable, "-m", "groupcam", "explain", *args],
        cwd=elsewhere,  # neither the current folder nor PYTHONPATH holds mynets.py
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr
    assert all(row["status"] == "ok" for row in results_by_path(tmp_path / "out").values())


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "is empty (0 bytes), not a model file"),
        ("png", "is a PNG image, not a model file; MODEL comes first"),
        ("fake-torchscript", "looks like a TorchScript archive, but torch cannot load it"),
        ("text", "is not a torch file"),
    ],
)
@pytest.mark.parametrize("trust", [False, True])
def test_files_that_are_no_models_are_clear_usage_errors(
    folder: Path, tmp_path: Path, capsys, kind: str, message: str, trust: bool
) -> None:
    model = tmp_path / f"model.{'png' if kind == 'png' else 'pt'}"
    if kind == "empty":
        model.write_bytes(b"")
    elif kind == "png":
        Image.new("RGB", (8, 8)).save(model, format="PNG")
    elif kind == "fake-torchscript":
        with zipfile.ZipFile(model, "w") as archive:
            archive.writestr("model/code/__torch__.py", "not code at all")
            archive.writestr("model/constants.pkl", b"\x00\x01")
    else:
        model.write_text("weights = [1, 2, 3]\n")
    out = tmp_path / "out"
    args = [str(model), str(folder / "a"), "--out", str(out), *SMALL]
    assert main(["explain", *args, *(["--trust-model"] if trust else [])]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert not error.rstrip().endswith(":")
    assert "Traceback" not in error
    assert not out.exists()  # nothing was explained, so no folder was left behind


def test_the_torch_loader_fingerprints_weights_not_objects(blob_net) -> None:
    from groupcam.jobs.models import model_weights_digest

    copy = _support_blob_net(seed=None)
    assert model_weights_digest("torch", copy) == model_weights_digest("torch", blob_net)
    with torch.no_grad():
        copy[0].weight[0, 0, 0, 0] += 1e-6
    assert model_weights_digest("torch", copy) != model_weights_digest("torch", blob_net)
