"""Target functions, transformer tokens and several target layers with groupcam_jax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support.jax_models import nnx_blob_net
from _support.photos import photos_with_blobs
from flax import linen, nnx

from groupcam_core import SegmentationClass, tokens_to_grid
from groupcam_jax import GroupCAM


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return photos_with_blobs()[:2]


class _LinenSegmenter(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Conv(8, (3, 3), name="features")(x))
        x = linen.relu(linen.Conv(16, (3, 3), strides=2, name="down")(x))
        scores = linen.Conv(3, (1, 1), name="classify")(x)
        return jax.image.resize(scores, (x.shape[0], 64, 64, 3), "bilinear")


def test_a_linen_segmentation_model_is_explained_before_its_classifier(photos) -> None:
    module = _LinenSegmenter()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    cam = GroupCAM.from_linen(module, variables, groups=4)
    found = cam.explain(photos, targets=SegmentationClass(1))
    assert cam.target_layer_name == "down"  # not 'classify': its 3 channels are the classes
    assert not found.degenerate.any()


def test_a_linen_segmentation_model(photos) -> None:
    module = _LinenSegmenter()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    cam = GroupCAM.from_linen(module, variables, "down", groups=4)
    # The class axis defaults to the explainer's layout (channels-last here).
    exp = cam.explain(photos, targets=SegmentationClass(1))
    same = cam.explain(photos, targets=lambda out: jnp.sum(out[..., 1], axis=(1, 2)))
    np.testing.assert_allclose(exp.saliency, same.saliency, atol=1e-5)
    explicit = cam.explain(photos, targets=SegmentationClass(1, channel_axis=-1))
    np.testing.assert_array_equal(explicit.saliency, exp.saliency)
    assert exp.saliency.shape == (2, 64, 64)
    assert not exp.degenerate.any()


class _LinenViT(linen.Module):
    """Patch embedding, a class token, one pre-norm attention block, a head on the class token."""

    @linen.compact
    def __call__(self, x):
        patches = linen.Conv(32, (8, 8), strides=8, name="embed")(x)  # 64 x 64 -> 8 x 8
        batch = x.shape[0]
        tokens = patches.reshape(batch, 64, 32)
        cls = self.param("cls", linen.initializers.normal(0.1), (1, 1, 32))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, 32)), tokens], axis=1)
        normed = linen.LayerNorm(name="norm1")(tokens)
        tokens = tokens + linen.MultiHeadDotProductAttention(4, name="attention")(normed, normed)
        return linen.Dense(5, name="head")(linen.LayerNorm(name="norm")(tokens)[:, 0])


def test_a_small_linen_vit_with_tokens_to_grid(photos) -> None:
    module = _LinenViT()
    variables = module.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))
    cam = GroupCAM.from_linen(
        module, variables, "norm1", groups=8, reshape_transform=tokens_to_grid()
    )
    first = cam.explain(photos)
    np.testing.assert_array_equal(first.saliency, cam.explain(photos).saliency)
    assert first.saliency.shape == (2, 64, 64)
    assert not first.degenerate.any()


class _NnxTokens(nnx.Module):
    """The NNX blob net with its c2 map passed through a token layer and back."""

    def __init__(self, net: nnx.Module) -> None:
        self.net = net
        self.tokens = _Identity()

    def __call__(self, x):
        net = self.net
        x = nnx.relu(net.c0(x))
        grid = nnx.relu(net.bn3(net.c2(x)))
        batch, height, width, channels = grid.shape
        tokens = self.tokens(grid.reshape(batch, height * width, channels))
        x = net.relu6(net.c5(tokens.reshape(batch, height, width, channels)))
        return net.fc(jnp.mean(x, axis=(1, 2)))


class _Identity(nnx.Module):
    def __call__(self, x):
        return x


def test_nnx_tokens_to_grid_explains_the_same_map_as_the_grid(blob_net, photos) -> None:
    model = _NnxTokens(nnx_blob_net(blob_net))
    on_tokens = GroupCAM.from_nnx(
        model, "tokens", groups=8, reshape_transform=tokens_to_grid(skip_tokens=0)
    ).explain(photos)
    on_grid = GroupCAM(*_split_after_relu(model), groups=8).explain(photos)
    np.testing.assert_allclose(on_tokens.saliency, on_grid.saliency, atol=1e-5)
    np.testing.assert_allclose(on_tokens.group_scores, on_grid.group_scores, atol=1e-6)


def _split_after_relu(model: _NnxTokens):
    """The same model as two functions split at the grid the tokens come from."""
    model.eval()

    def features_fn(x):
        return nnx.relu(model.net.bn3(model.net.c2(nnx.relu(model.net.c0(x)))))

    def head_fn(grid):
        return model.net.fc(jnp.mean(model.net.relu6(model.net.c5(grid)), axis=(1, 2)))

    return features_fn, head_fn
