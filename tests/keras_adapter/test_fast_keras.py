"""``GroupCAM(fast=True)`` for Keras: the mixed-precision policies and when they apply."""

from __future__ import annotations

import keras
import numpy as np
from _support.fast import force_fast_mode

from groupcam_core.fast import EXACT, cpu_has_native_bfloat16
from groupcam_keras import GroupCAM
from groupcam_keras.fast import fast_mode, mixed_precision


def _model() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_policies_switch_for_the_block_and_come_back() -> None:
    model = _model()
    names = {layer.name: layer for layer in model.layers}
    with mixed_precision(model, "bfloat16"):
        assert names["conv"].dtype_policy.name == "mixed_bfloat16"
        assert names["conv"].compute_dtype == "bfloat16"
        assert names["logits"].dtype_policy.name == "float32"  # the output layer keeps float32
        output = model(np.zeros((1, 16, 16, 3), np.float32))
        assert keras.backend.standardize_dtype(output.dtype) == "float32"
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


def test_layers_that_are_not_float32_are_left_alone() -> None:
    model = _model()
    model.get_layer("conv").dtype_policy = "mixed_float16"
    with mixed_precision(model, "bfloat16"):
        assert model.get_layer("conv").dtype_policy.name == "mixed_float16"
        assert model.get_layer("last").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("conv").dtype_policy.name == "mixed_float16"
    assert model.get_layer("last").dtype_policy.name == "float32"


def test_the_measured_mode_for_this_backend_and_device() -> None:
    mode = fast_mode()
    if keras.backend.backend() == "tensorflow" and cpu_has_native_bfloat16():
        assert mode.dtype == "bfloat16"
    else:
        assert mode.dtype is None
    assert GroupCAM(_model(), fast=True).fast_mode == mode
    assert GroupCAM(_model()).fast_mode == EXACT


def test_forced_fast_passes_leave_the_backend_exact_afterwards() -> None:
    model = _model()
    images = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    cam = GroupCAM(model, target_layer="last", groups=4, fast=True)
    force_fast_mode(cam)
    maps = cam(images)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert cam._backend.fast == EXACT
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert "fast=True" in repr(cam)
