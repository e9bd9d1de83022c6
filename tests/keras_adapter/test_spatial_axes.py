"""groupcam_keras on 1-D signals (Conv1D) and 3-D volumes (Conv3D), on every Keras backend.

The oracle's activations and gradients come from a torch twin with the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the twin that feeds the oracle

from _support.nd_models import channels_last, keras_model, oracle_maps, signals_or_volumes

from groupcam_core.methods import grad_cam
from groupcam_keras import GroupCAM


@pytest.mark.parametrize("axes", [1, 3], ids=["Conv1D", "Conv3D"])
def test_group_cam_matches_the_loop_oracle(axes: int) -> None:
    model = keras_model(axes)
    x = signals_or_volumes(axes)
    before = [w.copy() for w in model.get_weights()]
    cam = GroupCAM(model, target_layer="conv2", groups=4)
    maps = cam(channels_last(x))
    oracle = oracle_maps(axes, x)
    assert maps.shape == x.shape[:1] + x.shape[2:]
    assert not oracle.degenerate.any()
    np.testing.assert_allclose(maps, oracle.saliency, atol=1e-4)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert grad_cam(cam, channels_last(x)).shape == maps.shape


def test_the_default_layer_of_a_volume_model_is_its_last_feature_map() -> None:
    cam = GroupCAM(keras_model(3), groups=4)
    maps = cam(channels_last(signals_or_volumes(3)))
    assert cam.target_layer_name == "features"
    assert maps.shape == (2, 8, 8, 8)
