"""``groupcam explain`` with Flax models from ``module:callable``: linen pairs and NNX."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from _support.explain_models import reference_input, torch_lite0_map

from groupcam.cli import main

SMALL = ["--size", "32", "--groups", "4", "--quiet"]


@pytest.mark.parametrize(
    "way", [pytest.param("linen_blob_net", marks=pytest.mark.slow), "nnx_blob_net"]
)
def test_flax_callables_give_torch_maps(folder: Path, tmp_path: Path, blob_net, way: str) -> None:
    import torch

    from groupcam_torch import GroupCAM

    out = tmp_path / way
    model = f"_support.explain_models:{way}"
    inputs = [str(folder / "a"), str(folder / "grey.png"), str(folder / "broken.jpg")]
    assert main(["explain", model, *inputs, "--out", str(out), "--layer", "relu6", *SMALL]) == 1
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["ok", "ok", "error"]  # in the inputs' order
    for row in rows:
        if row["status"] == "ok":
            x = reference_input(row["path"]).transpose(0, 3, 1, 2).copy()
            expected = GroupCAM(blob_net, target_layer="6", groups=4)(torch.from_numpy(x))[0]
            found = np.load(out / "maps" / f"{row['name']}.npy")
            np.testing.assert_allclose(found, expected, atol=1e-4)


def test_jax_has_no_model_files(folder: Path, tmp_path: Path, capsys) -> None:
    model = tmp_path / "model.msgpack"
    model.write_bytes(b"")
    args = [str(model), str(folder / "a"), "--out", str(tmp_path / "o"), "--framework", "jax"]
    assert main(["explain", *args]) == 2
    assert "torch file" in capsys.readouterr().err


@pytest.mark.slow
def test_builtin_in_flax_linen_matches_torch(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["efficientnet-lite0", str(folder / "grey.png"), "--out", str(out), "--framework", "jax"]
    assert main(["explain", *args, "--size", "64", "--groups", "8", "--quiet"]) == 0
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    expected = torch_lite0_map(row["path"])
    np.testing.assert_allclose(np.load(out / "maps" / f"{row['name']}.npy"), expected, atol=1e-4)


def test_the_jax_loader_implements_the_declared_protocol() -> None:
    from groupcam.loaders import FileLoader, ModelLoader, loader

    found = loader("jax")
    assert isinstance(found, ModelLoader)
    assert isinstance(found, FileLoader) is False
    assert found.FRAMEWORK == "jax"


def test_the_jax_loader_fingerprints_weights_not_random_state() -> None:
    """Equal weights, equal digest (a dropout's advanced random state aside); other weights,
    another digest; linen pairs alike, and the random keys of a linen tree are readable."""
    import jax
    from flax import linen, nnx

    from groupcam.jobs.models import model_weights_digest

    class Net(nnx.Module):
        def __init__(self, seed: int) -> None:
            rngs = nnx.Rngs(seed)
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.drop(self.conv(x))

    first, again, other = Net(0), Net(0), Net(1)
    again(jax.numpy.ones((1, 8, 8, 3)))  # advances the dropout's random state
    assert model_weights_digest("jax", first) == model_weights_digest("jax", again)
    assert model_weights_digest("jax", first) != model_weights_digest("jax", other)

    module = linen.Conv(4, (3, 3))
    variables = module.init(jax.random.key(0), jax.numpy.ones((1, 8, 8, 3)))
    moved = jax.tree_util.tree_map(lambda leaf: leaf + 1, variables)
    assert model_weights_digest("jax", (module, variables)) != model_weights_digest(
        "jax", (module, moved)
    )
    keyed = {**variables, "keys": {"seed": jax.random.key(3)}}
    assert len(model_weights_digest("jax", (module, keyed))) == 64
