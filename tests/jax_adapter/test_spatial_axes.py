"""groupcam_jax on 1-D signals and 3-D volumes (Flax linen and NNX convolutions).

The oracle's activations and gradients come from a torch twin with the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the twin that feeds the oracle

from _support.nd_models import channels_last, flax_linen_model, oracle_maps, signals_or_volumes

from groupcam_jax import GroupCAM


@pytest.mark.parametrize("axes", [1, 3], ids=["1-D", "3-D"])
def test_linen_group_cam_matches_the_loop_oracle(axes: int) -> None:
    module, variables = flax_linen_model(axes)
    x = signals_or_volumes(axes)
    cam = GroupCAM.from_linen(module, variables, target_layer="conv2", groups=4)
    maps = cam(channels_last(x))
    oracle = oracle_maps(axes, x)
    assert maps.shape == x.shape[:1] + x.shape[2:]
    assert not oracle.degenerate.any()
    np.testing.assert_allclose(maps, oracle.saliency, atol=1e-4)


def test_an_nnx_volume_model_explains_at_its_default_layer() -> None:
    from flax import nnx

    class Volumes(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv1 = nnx.Conv(2, 6, (3, 3, 3), rngs=rngs)
            self.conv2 = nnx.Conv(6, 8, (3, 3, 3), strides=2, rngs=rngs)
            self.dense = nnx.Linear(8, 4, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
            return self.dense(x.mean(axis=(1, 2, 3)))

    cam = GroupCAM.from_nnx(Volumes(nnx.Rngs(0)), groups=4)
    maps = cam(channels_last(signals_or_volumes(3)))
    assert cam.target_layer_name == "conv2"
    assert maps.shape == (2, 8, 8, 8)
    assert np.isfinite(maps).all()
