"""Keras models under the "mixed_bfloat16" and "mixed_float16" dtype policies."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from _support.keras_models import keras_blob_net
from _support.photos import photos_with_blobs

from groupcam_core import GroupCAMWarning
from groupcam_keras import GroupCAM


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ranks_b = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _built_under(policy: str, blob_net) -> keras.Model:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return keras_blob_net(blob_net)
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_models_give_float32_maps_close_to_float32_ones(blob_net, policy) -> None:
    images = photos_with_blobs()
    exact = GroupCAM(keras_blob_net(blob_net), "relu6", groups=8).explain(images)
    model = _built_under(policy, blob_net)
    assert model.get_layer("c5").compute_dtype == policy.removeprefix("mixed_")
    weights = [np.array(w) for w in model.get_weights()]
    policies = [layer.dtype_policy.name for layer in model.layers]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupCAMWarning)  # half-precision logits: no warning
        found = GroupCAM(model, "relu6", groups=8).explain(images, exact.targets)
    assert found.saliency.dtype == np.float32
    assert np.isfinite(found.saliency).all()
    assert found.target_probabilities.dtype == np.float32
    for a, b in zip(found.saliency, exact.saliency, strict=True):
        assert _spearman(a, b) >= 0.98
    np.testing.assert_allclose(found.target_probabilities, exact.target_probabilities, atol=2e-2)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    assert [layer.dtype_policy.name for layer in model.layers] == policies


def test_half_precision_probabilities_are_detected(blob_net) -> None:
    net = _built_under("mixed_bfloat16", blob_net)
    model = keras.Model(net.inputs, keras.ops.softmax(net.outputs[0], axis=-1))
    with pytest.warns(GroupCAMWarning, match="look like probabilities"):
        GroupCAM(model, "relu6", groups=8)(photos_with_blobs()[:1])


def test_a_bfloat16_numpy_batch_is_accepted(blob_net) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    images = photos_with_blobs()[:1]
    maps = GroupCAM(keras_blob_net(blob_net), "relu6", groups=8)(images.astype(ml_dtypes.bfloat16))
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
