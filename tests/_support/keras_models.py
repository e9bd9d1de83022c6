"""Small Keras models for the adapter tests, and a port of the torch blob net."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np


def functional_cnn(
    classes: int = 5, softmax: bool = False, seed: int = 0, activation: str | None = None
) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(12, 3, padding="same", name="conv2")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu", name="features")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(
        classes, activation="softmax" if softmax else activation, name="head"
    )(h)
    return keras.Model(inputs, outputs, name="functional_cnn")


def sequential_cnn(classes: int = 5) -> keras.Sequential:
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, name="head"),
        ],
        name="sequential_cnn",
    )


class SubclassedCNN(keras.Model):
    def __init__(self, classes: int = 5) -> None:
        super().__init__(name="subclassed_cnn")
        keras.utils.set_random_seed(2)
        self.conv1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")
        self.conv2 = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x, training=None):
        return self.head(self.pool(self.conv2(self.conv1(x))))


def nested_cnn(classes: int = 5) -> keras.Model:
    """A 'pretrained-style' base model used as one layer inside a classifier."""
    keras.utils.set_random_seed(3)
    base_inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(base_inputs)
    h = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2")(h)
    base = keras.Model(base_inputs, h, name="base")
    inputs = keras.Input((32, 32, 3))
    h = base(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name="classifier")


def keras_blob_net(torch_model) -> keras.Model:
    """The torch blob net of torch_models.trained_blob_net, weights copied through numpy.

    Torch's stride-2 convolutions with padding 1 become ZeroPadding2D(1) followed
    by a 'valid' convolution, which is the same computation.
    """
    layers = keras.layers
    inputs = keras.Input((None, None, 3))
    h = layers.Conv2D(16, 3, padding="same", name="c0")(inputs)
    h = layers.ReLU()(h)
    h = layers.ZeroPadding2D(1)(h)
    h = layers.Conv2D(32, 3, strides=2, padding="valid", name="c2")(h)
    h = layers.BatchNormalization(epsilon=1e-5, name="bn3")(h)
    h = layers.ReLU(name="relu4")(h)
    h = layers.ZeroPadding2D(1)(h)
    h = layers.Conv2D(32, 3, strides=2, padding="valid", name="c5")(h)
    h = layers.ReLU(name="relu6")(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(4, name="fc")(h)
    model = keras.Model(inputs, outputs, name="keras_blob_net")

    def numpy(t):
        return t.detach().cpu().numpy()

    for name, index in (("c0", 0), ("c2", 2), ("c5", 5)):
        conv = torch_model[index]
        model.get_layer(name).set_weights(
            [numpy(conv.weight).transpose(2, 3, 1, 0), numpy(conv.bias)]
        )
    bn = torch_model[3]
    model.get_layer("bn3").set_weights(
        [numpy(bn.weight), numpy(bn.bias), numpy(bn.running_mean), numpy(bn.running_var)]
    )
    fc = torch_model[9]
    model.get_layer("fc").set_weights([numpy(fc.weight).T, numpy(fc.bias)])
    return model


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def residual_cnn(classes: int = 5, seed: int = 4) -> keras.Model:
    """ConvNeXt's ending in small: the last feature map is ``h + branch(h)``, made by ``+``.

    In a functional graph ``+`` creates a non-layer ``Add`` operation, which
    feeds the head's pooling; the head normalizes the pooled features (so the
    gradient at the sum depends on them) before the classifier.
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    with fast_initializers(seed):
        inputs = keras.Input((32, 32, 3))
        h = layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
        branch = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
        branch = layers.Dense(8, activation="gelu", name="pointwise")(branch)
        h = h + branch  # an Add operation, not a layer
        h = layers.GlobalAveragePooling2D(name="head_gap")(h)
        h = layers.LayerNormalization(name="head_norm")(h)
        outputs = layers.Dense(classes, name="head")(h)
        return keras.Model(inputs, outputs, name="residual_cnn")


class SubclassedResidualCNN(keras.Model):
    """:func:`residual_cnn` as a subclassed model: ``+`` runs eagerly and makes no operation."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__(name="subclassed_residual_cnn")
        keras.utils.set_random_seed(5)
        self.stem = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")
        self.depthwise = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")
        self.pointwise = keras.layers.Dense(8, activation="gelu", name="pointwise")
        self.head_gap = keras.layers.GlobalAveragePooling2D(name="head_gap")
        self.head_norm = keras.layers.LayerNormalization(name="head_norm")
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x, training=None):
        h = self.stem(x)
        h = h + self.pointwise(self.depthwise(h))
        return self.head(self.head_norm(self.head_gap(h)))

    def tail(self, features):
        """The model after the sum: what the head does to the feature map."""
        return self.head(self.head_norm(self.head_gap(features)))


def multi_output_cnns(classes: int = 5) -> dict[str, keras.Model]:
    """One CNN with its class scores returned alone, in a dict of two, and in a list of two.

    The three models share their layers (and so their weights); the second
    output is the pooled feature vector.
    """
    keras.utils.set_random_seed(6)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2")(h)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    scores = keras.layers.Dense(classes, name="head")(pooled)
    return {
        "tensor": keras.Model(inputs, scores, name="scores_only"),
        "dict": keras.Model(inputs, {"scores": scores, "embedding": pooled}, name="dict_outputs"),
        "list": keras.Model(inputs, [pooled, scores], name="list_outputs"),
    }


@contextlib.contextmanager
def fast_initializers(seed: int = 0) -> Iterator[None]:
    """On JAX, weights drawn with numpy while the block runs; elsewhere nothing changes.

    Keras on JAX compiles one XLA random-number program per weight shape, which
    makes building a keras.applications network take 5 to 30 s on a CPU; with
    numpy draws it takes about one. For tests that need a network's structure,
    not its values.
    """
    if keras.backend.backend() != "jax":
        yield
        return
    import jax.numpy as jnp
    from keras.src.backend.jax import random as jax_random

    rng = np.random.default_rng(seed)

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return jnp.asarray(rng.normal(mean, stddev, size=shape), dtype=dtype or "float32")

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        return jnp.asarray(rng.uniform(minval, maxval, size=shape), dtype=dtype or "float32")

    def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        values = np.clip(rng.normal(size=shape), -2.0, 2.0) * stddev + mean
        return jnp.asarray(values, dtype=dtype or "float32")

    replaced = {"normal": normal, "uniform": uniform, "truncated_normal": truncated_normal}
    saved = {name: getattr(jax_random, name) for name in replaced}
    for name, function in replaced.items():
        setattr(jax_random, name, function)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(jax_random, name, function)
