"""Metrics and comparison methods through the JAX adapter agree with the torch adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _support.jax_models import LinenBlobNet, linen_blob_variables
from _support.photos import photos_with_blobs

from groupcam_core import metrics, run_method
from groupcam_jax import GroupCAM as JaxGroupCAM
from groupcam_torch import GroupCAM as TorchGroupCAM


@pytest.fixture(scope="module")
def explainers(blob_net):
    photos = photos_with_blobs()
    jax_cam = JaxGroupCAM.from_linen(
        LinenBlobNet(), linen_blob_variables(blob_net), "relu6", groups=8
    )
    torch_cam = TorchGroupCAM(blob_net, target_layer="6", groups=8)
    channels_first = torch.from_numpy(np.ascontiguousarray(photos.transpose(0, 3, 1, 2)))
    return (jax_cam, photos), (torch_cam, channels_first)


def test_insertion_and_deletion_agree_across_frameworks(explainers) -> None:
    (jax_cam, photos), (torch_cam, channels_first) = explainers
    saliency = jax_cam(photos)
    for metric in (metrics.insertion, metrics.deletion):
        through_jax = metric(jax_cam, photos, saliency, step=64)
        through_torch = metric(torch_cam, channels_first, saliency, step=64)
        np.testing.assert_array_equal(through_jax.targets, through_torch.targets)
        np.testing.assert_allclose(through_jax.curves, through_torch.curves, atol=1e-5)
        assert through_jax.curves.shape == (4, 64 * 64 // 64 + 1)


@pytest.mark.parametrize(
    ("method", "options"), [("grad-cam", {}), ("score-cam", {}), ("rise", {"masks": 64})]
)
def test_comparison_methods_agree_across_frameworks(explainers, method, options) -> None:
    (jax_cam, photos), (torch_cam, channels_first) = explainers
    through_jax = run_method(method, jax_cam, photos, **options)
    through_torch = run_method(method, torch_cam, channels_first, **options)
    np.testing.assert_array_equal(through_jax.targets, through_torch.targets)
    np.testing.assert_array_equal(through_jax.forward_passes, through_torch.forward_passes)
    np.testing.assert_allclose(through_jax.saliency, through_torch.saliency, atol=1e-4)
