"""Flax models in half precision: bfloat16 variables and inputs, and dtype=bfloat16 modules."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support.jax_models import LinenBlobNet, linen_blob_variables, nnx_blob_net
from _support.photos import photos_with_blobs
from flax import linen, nnx

from groupcam_core import GroupCAMWarning
from groupcam_jax import GroupCAM
from groupcam_jax.fast import cast_floats


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ranks_b = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _close(found, exact) -> None:
    assert found.saliency.dtype == np.float32
    assert np.isfinite(found.saliency).all()
    for a, b in zip(found.saliency, exact.saliency, strict=True):
        assert _spearman(a, b) >= 0.98


def _quiet(cam, images, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupCAMWarning)
        return cam.explain(images, targets)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_linen_in_half_precision(blob_net, dtype) -> None:
    images = photos_with_blobs()
    variables = linen_blob_variables(blob_net)
    exact = GroupCAM.from_linen(LinenBlobNet(), variables, "relu6", groups=8).explain(images)
    half = cast_floats(variables, dtype)
    before = jax.tree_util.tree_map(np.asarray, half)
    found = _quiet(
        GroupCAM.from_linen(LinenBlobNet(), half, "relu6", groups=8),
        jnp.asarray(images, dtype),
        exact.targets,
    )
    _close(found, exact)
    for a, b in zip(
        jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(half), strict=True
    ):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, np.asarray(b))


def test_nnx_in_bfloat16(blob_net) -> None:
    images = photos_with_blobs()
    model = nnx_blob_net(blob_net)
    exact = GroupCAM.from_nnx(model, "relu6", groups=8).explain(images)
    graphdef, state = nnx.split(model)
    half = nnx.merge(graphdef, cast_floats(state, jnp.bfloat16))
    found = _quiet(
        GroupCAM.from_nnx(half, "relu6", groups=8),
        jnp.asarray(images, jnp.bfloat16),
        exact.targets,
    )
    _close(found, exact)
    assert all(
        leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(nnx.state(half, nnx.Param))
    )


class _Bf16Net(linen.Module):
    """float32 parameters, bfloat16 computation (linen's dtype=)."""

    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Conv(16, (3, 3), dtype=jnp.bfloat16, name="c0")(x))
        x = linen.relu(linen.Conv(32, (3, 3), strides=2, dtype=jnp.bfloat16, name="c1")(x))
        x = linen.Conv(32, (3, 3), strides=2, dtype=jnp.bfloat16, name="c2")(x)
        x = linen.relu(x)
        return linen.Dense(4, dtype=jnp.bfloat16, name="fc")(jnp.mean(x, axis=(1, 2)))


def test_dtype_bfloat16_modules_and_their_softmax() -> None:
    images = photos_with_blobs()
    module = _Bf16Net()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    assert variables["params"]["c0"]["kernel"].dtype == jnp.float32
    maps = _quiet(GroupCAM.from_linen(module, variables, "c2", groups=8), images).saliency
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()

    class Softmaxed(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.softmax(_Bf16Net(name="net")(x))

    wrapped = {"params": {"net": variables["params"]}}
    with pytest.warns(GroupCAMWarning, match="look like probabilities"):
        GroupCAM.from_linen(Softmaxed(), wrapped, "net/c2", groups=8)(images[:1])
