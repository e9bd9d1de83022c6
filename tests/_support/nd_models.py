"""One small seeded CNN for 1-D signals or 3-D volumes, built alike in torch, Keras and Flax.

``weights(axes)`` draws the weights once (numpy, seeded); each framework's
builder loads them, so the three models compute the same function. The torch
twin also gives the target layer's activations and gradients by its own hooks
and autograd, for the loop oracle (tests/_support/oracle.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

CHANNELS_IN, HIDDEN, FEATURES, CLASSES = 2, 6, 8, 4


def weights(axes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Kernels channels-last ``(*k, in, out)`` (Keras' and Flax's form), biases, the dense layer."""
    rng = np.random.default_rng(seed)
    kernel = (3,) * axes
    return {
        "conv1": rng.normal(scale=0.5, size=(*kernel, CHANNELS_IN, HIDDEN)),
        "bias1": rng.normal(scale=0.1, size=HIDDEN),
        "conv2": rng.normal(scale=0.3, size=(*kernel, HIDDEN, FEATURES)),
        "bias2": rng.normal(scale=0.1, size=FEATURES),
        "dense": rng.normal(scale=0.8, size=(FEATURES, CLASSES)),
        "dense_bias": rng.normal(scale=0.1, size=CLASSES),
    }


def signals_or_volumes(axes: int, batch: int = 2, seed: int = 1) -> np.ndarray:
    """Channels-first float32 inputs: ``(B, 2, 24)`` signals, ``(B, 2, 16, 16)`` images or
    ``(B, 2, 8, 8, 8)`` volumes."""
    spatial = {1: (24,), 2: (16, 16), 3: (8, 8, 8)}[axes]
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, side) for side in spatial], indexing="ij")
    rows = []
    for _ in range(batch):
        centre = rng.uniform(0.3, 0.7, size=axes)
        blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) / 0.02)
        rows.append(2 * blob[None] + rng.normal(scale=0.3, size=(CHANNELS_IN, *spatial)))
    return np.stack(rows).astype(np.float32)


def channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, *range(2, x.ndim), 1))


def torch_model(axes: int) -> Any:
    """The torch twin: conv, ReLU, conv (stride 2), ReLU, global mean, linear."""
    import torch
    from torch import nn

    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[axes]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[axes]
    model = nn.Sequential(
        conv(CHANNELS_IN, HIDDEN, 3, padding=1),
        nn.ReLU(),
        conv(HIDDEN, FEATURES, 3, stride=2, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(FEATURES, CLASSES),
    )
    w = weights(axes)
    to_torch = (axes + 1, axes, *range(axes))  # (*k, in, out) -> (out, in, *k)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w["conv1"].transpose(to_torch).copy()))
        model[0].bias.copy_(torch.from_numpy(w["bias1"]))
        model[2].weight.copy_(torch.from_numpy(w["conv2"].transpose(to_torch).copy()))
        model[2].bias.copy_(torch.from_numpy(w["bias2"]))
        model[6].weight.copy_(torch.from_numpy(w["dense"].T.copy()))
        model[6].bias.copy_(torch.from_numpy(w["dense_bias"]))
    return model.eval()


def torch_features(axes: int, x_cf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations and gradients (channels-first) at the second convolution (``conv2``, before
    its ReLU), and each input's top class.

    The oracle's inputs, from the torch twin by its own forward hook and autograd
    (float64).
    """
    import torch

    model = torch_model(axes).double()
    captured: dict[str, Any] = {}
    handle = model[2].register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    try:
        logits = model(torch.from_numpy(x_cf).double())
    finally:
        handle.remove()
    chosen = logits.argmax(1)
    (gradients,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), captured["a"])
    return captured["a"].detach().numpy(), gradients.numpy(), chosen.numpy()


def torch_predict(axes: int):
    """One channels-first input -> the twin's logits, in float64."""
    import torch

    model = torch_model(axes).double()

    def predict(image_cf: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(image_cf[None]).double())[0].numpy()

    return predict


def keras_model(axes: int) -> Any:
    """The Keras twin, channels-last. The strided convolution pads one sample on each side
    first, as torch and Flax do (Keras' ``"same"`` would pad after only)."""
    import keras

    conv = {1: keras.layers.Conv1D, 3: keras.layers.Conv3D}[axes]
    pad = {1: keras.layers.ZeroPadding1D, 3: keras.layers.ZeroPadding3D}[axes]
    pool = {1: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling3D}[axes]
    spatial = (None,) * axes
    inputs = keras.Input((*spatial, CHANNELS_IN))
    hidden = conv(HIDDEN, 3, padding="same", activation="relu", name="conv1")(inputs)
    hidden = conv(FEATURES, 3, strides=2, padding="valid", name="conv2")(pad(1)(hidden))
    hidden = keras.layers.ReLU(name="features")(hidden)
    outputs = keras.layers.Dense(CLASSES, name="dense")(pool()(hidden))
    model = keras.Model(inputs, outputs)
    w = weights(axes)
    model.get_layer("conv1").set_weights([w["conv1"], w["bias1"]])
    model.get_layer("conv2").set_weights([w["conv2"], w["bias2"]])
    model.get_layer("dense").set_weights([w["dense"], w["dense_bias"]])
    return model


def flax_linen_model(axes: int) -> tuple[Any, Any]:
    """The Flax linen twin and its variables, channels-last."""
    import jax.numpy as jnp
    from flax import linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            x = nn.relu(nn.Conv(HIDDEN, (3,) * axes, padding=1, name="conv1")(x))
            x = nn.Conv(FEATURES, (3,) * axes, strides=2, padding=1, name="conv2")(x)
            x = nn.relu(x)
            return nn.Dense(CLASSES, name="dense")(jnp.mean(x, axis=tuple(range(1, axes + 1))))

    w = weights(axes)
    params = {
        name: {
            "kernel": jnp.asarray(w[kernel], jnp.float32),
            "bias": jnp.asarray(w[bias], jnp.float32),
        }
        for name, kernel, bias in (
            ("conv1", "conv1", "bias1"),
            ("conv2", "conv2", "bias2"),
            ("dense", "dense", "dense_bias"),
        )
    }
    return Net(), {"params": params}


def oracle_maps(axes: int, x_cf: np.ndarray, groups: int = 4) -> Any:
    """The loop oracle's Group-CAM of the twin at ``conv2`` (paper constants)."""
    from .oracle import oracle_groupcam

    activations, gradients, chosen = torch_features(axes, x_cf)
    return oracle_groupcam(
        activations, gradients, x_cf.astype(np.float64), torch_predict(axes), chosen, groups=groups
    )
