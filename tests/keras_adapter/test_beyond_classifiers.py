"""Target functions, transformer tokens and several target layers with groupcam_keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support.keras_models import functional_cnn
from _support.photos import photos_with_blobs

from groupcam_core import ClassLogit, SegmentationClass, tokens_to_grid
from groupcam_keras import GroupCAM


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return photos_with_blobs()[:2, :32, :32]


def test_class_functions_and_keras_ops_lambdas(photos) -> None:
    model = functional_cnn()
    cam = GroupCAM(model, "features", groups=4)
    by_class = cam.explain(photos, targets=ClassLogit(1))
    by_lambda = cam.explain(photos, targets=lambda out: keras.ops.take(out, 1, axis=1))
    np.testing.assert_allclose(by_class.saliency, by_lambda.saliency, atol=1e-5)
    logits = keras.ops.convert_to_numpy(model(photos))
    np.testing.assert_allclose(by_class.target_scores, logits[:, 1], rtol=1e-4, atol=1e-6)
    assert (by_class.targets == -1).all()


def _segmenter() -> keras.Model:
    keras.utils.set_random_seed(4)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="down")(h)
    h = keras.layers.Conv2D(3, 1, name="classify")(h)
    outputs = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(h)
    return keras.Model(inputs, outputs, name="segmenter")


def test_a_segmentation_model_is_explained_before_its_classifier(photos) -> None:
    cam = GroupCAM(_segmenter(), groups=4)
    found = cam.explain(photos, targets=SegmentationClass(1))
    assert cam.target_layer_name == "down"  # not 'classify' or 'up': their channels are classes
    named = GroupCAM(cam.model, "down", groups=4).explain(photos, targets=SegmentationClass(1))
    np.testing.assert_array_equal(found.saliency, named.saliency)


def test_a_segmentation_model(photos) -> None:
    cam = GroupCAM(_segmenter(), "down", groups=4)
    # The class axis defaults to the adapter's layout: channels-last, the outputs' last axis.
    by_class = cam.explain(photos, targets=SegmentationClass(1))
    by_lambda = cam.explain(photos, targets=lambda out: keras.ops.sum(out[..., 1], axis=(1, 2)))
    np.testing.assert_allclose(by_class.saliency, by_lambda.saliency, atol=1e-5)
    explicit = cam.explain(photos, targets=SegmentationClass(1, channel_axis=-1))
    np.testing.assert_array_equal(explicit.saliency, by_class.saliency)
    assert by_class.saliency.shape == (2, 32, 32)
    outputs = keras.ops.convert_to_numpy(cam.model(photos))
    np.testing.assert_allclose(
        by_class.target_scores, outputs[..., 1].sum(axis=(1, 2)), rtol=1e-4, atol=1e-3
    )
    mask = np.zeros(outputs.shape[1:3], np.float32)
    mask[: mask.shape[0] // 2] = 1.0  # the top half of the output's pixels
    masked = cam.explain(photos, targets=SegmentationClass(1, mask=mask))
    np.testing.assert_allclose(
        masked.target_scores, (outputs[..., 1] * mask).sum(axis=(1, 2)), rtol=1e-4, atol=1e-3
    )


class _ClassToken(keras.layers.Layer):
    def build(self, input_shape) -> None:
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="random_normal")

    def call(self, tokens):
        batch = keras.ops.shape(tokens)[0]
        cls = keras.ops.broadcast_to(self.token, (batch, 1, keras.ops.shape(tokens)[-1]))
        return keras.ops.concatenate([cls, tokens], axis=1)


def _vit() -> keras.Model:
    keras.utils.set_random_seed(6)
    inputs = keras.Input((32, 32, 3))
    patches = keras.layers.Conv2D(32, 4, strides=4, name="embed")(inputs)  # 8 x 8 patches
    tokens = _ClassToken(name="cls")(keras.layers.Reshape((64, 32))(patches))
    normed = keras.layers.LayerNormalization(name="norm1")(tokens)
    attended = keras.layers.MultiHeadAttention(4, 8, name="attention")(normed, normed)
    tokens = keras.layers.Add()([tokens, attended])
    cls = keras.layers.Lambda(lambda t: t[:, 0])(keras.layers.LayerNormalization()(tokens))
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(cls), name="vit")


def test_a_small_vit_with_tokens_to_grid(photos) -> None:
    cam = GroupCAM(_vit(), "norm1", groups=8, reshape_transform=tokens_to_grid())
    first = cam.explain(photos)
    np.testing.assert_array_equal(first.saliency, cam.explain(photos).saliency)
    assert first.saliency.shape == (2, 32, 32)
    assert np.isfinite(first.saliency).all()
    assert not first.degenerate.any()


@keras.saving.register_keras_serializable(package="groupcam_tests")
class _TokenBlock(keras.layers.Layer):
    """A residual MLP block on tokens, its sublayers tracked as attributes."""

    def __init__(self, width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.mlp = keras.layers.Dense(width, activation="gelu", name="mlp")

    def call(self, tokens):
        return tokens + self.mlp(self.norm(tokens))


@keras.saving.register_keras_serializable(package="groupcam_tests")
class _Encoder(keras.layers.Layer):
    """A custom layer holding blocks, as keras-hub's encoders do (no ``.layers`` to walk)."""

    def __init__(self, width: int, depth: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = [_TokenBlock(width, name=f"block_{i}") for i in range(depth)]

    def call(self, tokens):
        for block in self.blocks:
            tokens = block(tokens)
        return tokens


def _token_model() -> keras.Model:
    keras.utils.set_random_seed(8)
    inputs = keras.Input((32, 32, 3))
    patches = keras.layers.Conv2D(16, 8, strides=8, name="patches")(inputs)
    tokens = keras.layers.Reshape((16, 16), name="tokens")(patches)
    encoded = _Encoder(16, 2, name="encoder")(tokens)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(encoded)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))


def test_sublayers_of_a_custom_layer_are_target_layers(photos) -> None:
    model = _token_model()
    transform = tokens_to_grid(skip_tokens=0)
    by_path = GroupCAM(model, "encoder/block_1", groups=4, reshape_transform=transform)
    block = model.get_layer("encoder").blocks[1]
    by_object = GroupCAM(model, block, groups=4, reshape_transform=transform)
    assert by_object.target_layer_name == "encoder/block_1"
    found = by_path.explain(photos)
    np.testing.assert_array_equal(by_object.explain(photos).saliency, found.saliency)
    assert found.saliency.shape == (2, 32, 32)
    inner = GroupCAM(model, "encoder/block_0/mlp", groups=4, reshape_transform=transform)
    assert inner.explain(photos).saliency.shape == (2, 32, 32)
    # The default with the transform: the last layer whose output it takes, inside the encoder.
    by_default = GroupCAM(model, groups=4, reshape_transform=transform)
    chosen = by_default.explain(photos)
    assert by_default.target_layer_name == "encoder", by_default.target_layer_name
    np.testing.assert_allclose(chosen.saliency, found.saliency, atol=1e-6)  # its last block's
