"""The stored synthetic-scene CNN: it classifies by the object, and Group-CAM finds the object."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from groupcam_core.metrics import pointing_game
from groupcam_core.synthetic import (
    SyntheticScenes,
    channels_first,
    make_backgrounds,
    make_scenes,
)
from groupcam_torch import GroupCAM

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT_SEED = 7  # training used seeds 1000-2999, the script's reports seeds 0 and 1
# Measured with the stored weights on these 200 scenes: accuracy 0.98; Group-CAM (groups=16)
# pointing game 0.825 within 3 pixels (0.53 exact), background-only accuracy 0.225. The
# thresholds leave some room.
ACCURACY_THRESHOLD = 0.93
POINTING_THRESHOLD = 0.70
POINTING_TOLERANCE = 3


def _load_synthetic_model() -> ModuleType:
    """Import ``evaluation/synthetic_model.py`` by path (``evaluation`` is not installed)."""
    name = "_groupcam_evaluation_synthetic_model"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "evaluation" / "synthetic_model.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


synthetic_model = _load_synthetic_model()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return synthetic_model.load_synthetic_cnn()


@pytest.fixture(scope="module")
def held_out() -> SyntheticScenes:
    return make_scenes(200, seed=HELD_OUT_SEED)


def _predict(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(channels_first(images))).argmax(1).numpy()


def test_weights_file_is_small_and_loads_in_eval_mode(model: torch.nn.Module) -> None:
    assert synthetic_model.WEIGHTS_PATH.stat().st_size < 2 * 1024 * 1024
    assert not model.training
    layer = model.get_submodule(synthetic_model.TARGET_LAYER)
    with torch.no_grad():
        features = layer(model.features[:-1](torch.zeros(1, 3, 64, 64)))
    assert features.shape == (1, 128, 8, 8)


def test_accuracy_on_held_out_scenes(model: torch.nn.Module, held_out: SyntheticScenes) -> None:
    accuracy = (_predict(model, held_out.images) == held_out.labels).mean()
    assert accuracy > ACCURACY_THRESHOLD


def test_object_free_backgrounds_are_near_chance(
    model: torch.nn.Module, held_out: SyntheticScenes
) -> None:
    # The same scenes with the object left out: the model should have nothing to go on.
    backgrounds = make_backgrounds(200, seed=HELD_OUT_SEED)
    assert (_predict(model, backgrounds) == held_out.labels).mean() < 0.35


@pytest.mark.slow
def test_groupcam_points_at_the_object(model: torch.nn.Module, held_out: SyntheticScenes) -> None:
    x = torch.from_numpy(channels_first(held_out.images))
    maps = GroupCAM(model, target_layer=synthetic_model.TARGET_LAYER, groups=16)(x)
    assert maps.shape == (200, 64, 64)
    hits = pointing_game(maps, held_out.masks, tolerance=POINTING_TOLERANCE).hits
    assert hits.mean() > POINTING_THRESHOLD
    # The objects cover about 6 % of the pixels (11 % dilated by 3): a random point rarely hits.
    assert held_out.masks.mean() < 0.1
