"""One CNN in PyTorch and in JAX (linen, NNX, plain functions) with the same weights."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _support.jax_models import (
    LinenBlobNet,
    blob_net_functions,
    linen_blob_variables,
    nnx_blob_net,
)
from _support.photos import photos_with_blobs

from groupcam_jax import GroupCAM as JaxGroupCAM
from groupcam_torch import GroupCAM as TorchGroupCAM


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return photos_with_blobs()


def _channels_first(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _jax_explainers(blob_net, variant: str) -> dict:
    """The same net through the three ways in, each at the output of the last ReLU."""
    return {
        "linen": JaxGroupCAM.from_linen(
            LinenBlobNet(),
            linen_blob_variables(blob_net),
            target_layer="relu6",
            groups=8,
            variant=variant,
        ),
        "nnx": JaxGroupCAM.from_nnx(
            nnx_blob_net(blob_net), target_layer="relu6", groups=8, variant=variant
        ),
        "functions": JaxGroupCAM(*blob_net_functions(blob_net), groups=8, variant=variant),
    }


def test_the_ports_compute_the_same_logits(blob_net, photos) -> None:
    with torch.no_grad():
        expected = blob_net(_channels_first(photos)).numpy()
    variables = linen_blob_variables(blob_net)
    features_fn, head_fn = blob_net_functions(blob_net)
    model = nnx_blob_net(blob_net)
    model.eval()
    for logits in (
        LinenBlobNet().apply(variables, jnp.asarray(photos), False),
        model(jnp.asarray(photos)),
        head_fn(features_fn(jnp.asarray(photos))),
    ):
        np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4)


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_torch_and_jax_maps_agree(blob_net, photos, variant) -> None:
    torch_exp = TorchGroupCAM(blob_net, target_layer="6", groups=8, variant=variant).explain(
        _channels_first(photos)
    )
    assert not torch_exp.degenerate.any()
    for way_in, explainer in _jax_explainers(blob_net, variant).items():
        jax_exp = explainer.explain(photos)
        np.testing.assert_array_equal(jax_exp.targets, torch_exp.targets, err_msg=way_in)
        np.testing.assert_array_equal(
            jax_exp.skipped_groups, torch_exp.skipped_groups, err_msg=way_in
        )
        np.testing.assert_allclose(
            jax_exp.group_scores, torch_exp.group_scores, atol=1e-5, err_msg=way_in
        )
        np.testing.assert_allclose(jax_exp.saliency, torch_exp.saliency, atol=1e-4, err_msg=way_in)
        np.testing.assert_allclose(
            jax_exp.target_probabilities, torch_exp.target_probabilities, atol=1e-5
        )
        assert not jax_exp.degenerate.any()
