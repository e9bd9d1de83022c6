"""``GroupCAM(fast=True)`` for JAX: where it applies and what it casts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from _support.fast import force_fast_mode
from _support.jax_models import LinenBlobNet, blob_net_functions, linen_blob_variables
from _support.photos import photos_with_blobs

from groupcam_core.fast import EXACT
from groupcam_jax import GroupCAM
from groupcam_jax.fast import cast_floats, fast_mode


def test_on_a_cpu_the_passes_stay_exact() -> None:
    mode = fast_mode()
    if jax.default_backend() == "cpu":
        assert mode.dtype is None
        assert "XLA:CPU" in mode.reason


def test_plain_functions_keep_exact_passes(blob_net) -> None:
    features_fn, head_fn = blob_net_functions(blob_net)
    mode = GroupCAM(features_fn, head_fn, fast=True).fast_mode
    assert mode.dtype is None
    assert "functions" in mode.reason


def test_only_float32_leaves_are_cast() -> None:
    tree = {"w": jnp.ones(2), "n": jnp.arange(2), "h": np.ones(2, np.float32)}
    cast = cast_floats(tree, jnp.bfloat16)
    assert cast["w"].dtype == jnp.bfloat16
    assert cast["h"].dtype == jnp.bfloat16
    assert cast["n"].dtype == tree["n"].dtype


def test_forced_bfloat16_passes_leave_variables_and_backend_as_they_were(blob_net) -> None:
    photos = photos_with_blobs()
    variables = linen_blob_variables(blob_net)
    before = jax.tree_util.tree_map(np.array, variables)
    cam = GroupCAM.from_linen(LinenBlobNet(), variables, "relu6", groups=8, fast=True)
    force_fast_mode(cam)
    maps = cam(photos)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert cam._backend.fast == EXACT
    after = jax.tree_util.tree_map(np.array, variables)
    for a, b in zip(
        jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after), strict=True
    ):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
