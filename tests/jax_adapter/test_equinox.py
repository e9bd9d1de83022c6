"""Equinox models through GroupCAM(features_fn, head_fn, params=...): the recipe of
docs/recipes.md, run as written there."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support.photos import photos_with_blobs

from groupcam_jax import GroupCAM


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return photos_with_blobs()[:2]


class _CNN(eqx.Module):
    """Equinox layers take one image, channels-first (C, H, W)."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(8, 16, 3, stride=2, padding=1, key=k2)
        self.head = eqx.nn.Linear(16, 3, key=k3)

    def features(self, image: jax.Array) -> jax.Array:
        return jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(image))))

    def classify(self, features: jax.Array) -> jax.Array:
        return self.head(jnp.mean(features, axis=(1, 2)))


def _explainer(model: _CNN) -> GroupCAM:
    # The recipe: split the model into its arrays and the rest, and pass the arrays.
    params, static = eqx.partition(model, eqx.is_array)

    def features_fn(params, x):
        return jax.vmap(eqx.combine(params, static).features)(x)

    def head_fn(params, features):
        return jax.vmap(eqx.combine(params, static).classify)(features)

    return GroupCAM(features_fn, head_fn, params=params, layout="channels_first", groups=4)


def test_an_equinox_model_and_a_changed_copy(photos) -> None:
    images = np.ascontiguousarray(photos.transpose(0, 3, 1, 2))  # (B, C, H, W)
    model = _CNN(jax.random.key(0))
    cam = _explainer(model)
    found = cam.explain(images)
    closure = GroupCAM(
        lambda x: jax.vmap(model.features)(x),
        lambda f: jax.vmap(model.classify)(f),
        layout="channels_first",
        groups=4,
    ).explain(images)
    np.testing.assert_allclose(found.saliency, closure.saliency, atol=1e-6)
    assert found.saliency.shape == images.shape[:1] + images.shape[2:]
    # A changed model (a training step, say): its arrays, passed again, are seen.
    other = _CNN(jax.random.key(1))
    cam.params = eqx.filter(other, eqx.is_array)
    np.testing.assert_allclose(
        cam.explain(images).saliency, _explainer(other).explain(images).saliency, atol=1e-6
    )
