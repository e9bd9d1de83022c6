"""Small Keras models for the adapter tests, and a port of the torch blob net."""

from __future__ import annotations

import keras
import numpy as np


def functional_cnn(classes: int = 5, softmax: bool = False, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(12, 3, padding="same", name="conv2")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu", name="features")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="head")(h)
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
