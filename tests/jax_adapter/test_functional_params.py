"""GroupCAM(features_fn, head_fn, params=...): weights passed at every call, never baked in."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from groupcam_core import BackendError
from groupcam_jax import GroupCAM


def _params(seed: int) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.key(seed), 2)
    return {
        "kernel": jax.random.normal(keys[0], (3, 3, 3, 8)) * 0.5,
        "head": jax.random.normal(keys[1], (8, 4)),
    }


def features_fn(params, x):
    y = jax.lax.conv_general_dilated(
        x, params["kernel"], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jax.nn.relu(y)


def head_fn(params, features):
    return jnp.mean(features, axis=(1, 2)) @ params["head"]


def _closing_over(params):
    return (lambda x: features_fn(params, x)), (lambda f: head_fn(params, f))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(6)
    x = rng.normal(scale=0.4, size=(2, 32, 32, 3)).astype(np.float32)
    x[:, 8:16, 16:24, :] += 1.5
    return x


def test_new_params_are_seen_by_the_same_explainer(images) -> None:
    first, second = _params(0), _params(1)
    cam = GroupCAM(features_fn, head_fn, groups=4, params=first)
    before = cam.explain(images)
    np.testing.assert_allclose(
        before.saliency,
        GroupCAM(*_closing_over(first), groups=4).explain(images).saliency,
        atol=1e-6,
    )
    cam.params = second
    after = cam.explain(images)
    fresh = GroupCAM(*_closing_over(second), groups=4).explain(images)
    np.testing.assert_allclose(after.saliency, fresh.saliency, atol=1e-6)
    assert np.abs(after.saliency - before.saliency).max() > 0.05
    assert cam.params is second


def test_a_closure_keeps_the_arrays_it_was_first_traced_with(images) -> None:
    """What docs/quickstart-jax.md says: a closure's arrays are baked in at the first call."""
    weights = _params(0)
    cam = GroupCAM(*_closing_over(weights), groups=4)
    before = cam.explain(images)
    weights.update(_params(1))  # the functions now read other arrays...
    np.testing.assert_array_equal(cam.explain(images).saliency, before.saliency)  # ...unseen
    fresh = GroupCAM(*_closing_over(weights), groups=4).explain(images)
    assert np.abs(fresh.saliency - before.saliency).max() > 0.05


def test_params_errors_are_clear() -> None:
    cam = GroupCAM(*_closing_over(_params(0)), groups=4)
    with pytest.raises(BackendError, match="not made with params="):
        _ = cam.params
    with pytest.raises(BackendError, match="not made with params="):
        cam.params = _params(1)
    functional = GroupCAM(features_fn, head_fn, groups=4, params=_params(0))
    with pytest.raises(BackendError, match="pytree of arrays"):
        functional.params = None
    with pytest.raises(BackendError, match="not with way_in"):
        GroupCAM(way_in=functional.way_in, params=_params(0))
