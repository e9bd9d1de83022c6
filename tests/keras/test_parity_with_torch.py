"""One CNN in PyTorch and in Keras with the same weights: the same Group-CAM maps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from _support.keras_models import keras_blob_net
from _support.photos import photos_with_blobs

from groupcam_keras import GroupCAM as KerasGroupCAM
from groupcam_torch import GroupCAM as TorchGroupCAM


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return photos_with_blobs()


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_torch_and_keras_maps_agree(blob_net, photos, variant) -> None:
    keras_model = keras_blob_net(blob_net)
    channels_first = torch.from_numpy(np.ascontiguousarray(photos.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        torch_logits = blob_net(channels_first).numpy()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras_model(photos)), torch_logits, atol=1e-4
    )

    torch_exp = TorchGroupCAM(blob_net, target_layer="6", groups=8, variant=variant).explain(
        channels_first
    )
    keras_exp = KerasGroupCAM(keras_model, target_layer="relu6", groups=8, variant=variant).explain(
        photos
    )
    np.testing.assert_array_equal(keras_exp.targets, torch_exp.targets)
    np.testing.assert_array_equal(keras_exp.skipped_groups, torch_exp.skipped_groups)
    np.testing.assert_allclose(keras_exp.group_scores, torch_exp.group_scores, atol=1e-5)
    np.testing.assert_allclose(keras_exp.saliency, torch_exp.saliency, atol=1e-4)
    assert not keras_exp.degenerate.any()
    assert not torch_exp.degenerate.any()
