"""Small Flax models for the JAX adapter tests, and ports of the torch blob net."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


class LinenBlobNet(linen.Module):
    """torch_models.trained_blob_net in linen: the same layers, channels-last."""

    @linen.compact
    def __call__(self, x, train: bool = True):
        x = linen.relu(linen.Conv(16, (3, 3), padding=1, name="c0")(x))
        x = linen.Conv(32, (3, 3), strides=2, padding=1, name="c2")(x)
        x = linen.BatchNorm(use_running_average=not train, epsilon=1e-5, name="bn3")(x)
        x = linen.relu(x)
        x = linen.Conv(32, (3, 3), strides=2, padding=1, name="c5")(x)
        x = Relu(name="relu6")(x)
        return linen.Dense(4, name="fc")(jnp.mean(x, axis=(1, 2)))


class Relu(linen.Module):
    """A parameter-free submodule, so the last feature map has a path of its own."""

    @linen.compact
    def __call__(self, x):
        return linen.relu(x)


def linen_blob_variables(torch_model) -> dict:
    """The torch blob net's weights as LinenBlobNet variables."""

    def conv(index: int) -> dict:
        layer = torch_model[index]
        return {
            "kernel": jnp.asarray(_numpy(layer.weight).transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(_numpy(layer.bias)),
        }

    bn, fc = torch_model[3], torch_model[9]
    return {
        "params": {
            "c0": conv(0),
            "c2": conv(2),
            "c5": conv(5),
            "bn3": {"scale": jnp.asarray(_numpy(bn.weight)), "bias": jnp.asarray(_numpy(bn.bias))},
            "fc": {
                "kernel": jnp.asarray(_numpy(fc.weight).T),
                "bias": jnp.asarray(_numpy(fc.bias)),
            },
        },
        "batch_stats": {
            "bn3": {
                "mean": jnp.asarray(_numpy(bn.running_mean)),
                "var": jnp.asarray(_numpy(bn.running_var)),
            }
        },
    }


class NnxBlobNet(nnx.Module):
    """torch_models.trained_blob_net in NNX."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.c0 = nnx.Conv(3, 16, (3, 3), padding=1, rngs=rngs)
        self.c2 = nnx.Conv(16, 32, (3, 3), strides=2, padding=1, rngs=rngs)
        self.bn3 = nnx.BatchNorm(32, epsilon=1e-5, rngs=rngs)
        self.c5 = nnx.Conv(32, 32, (3, 3), strides=2, padding=1, rngs=rngs)
        self.relu6 = NnxRelu()
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.fc = nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.c0(x))
        x = nnx.relu(self.bn3(self.c2(x)))
        x = self.relu6(self.c5(x))
        return self.fc(self.drop(jnp.mean(x, axis=(1, 2))))


class NnxRelu(nnx.Module):
    def __call__(self, x):
        return nnx.relu(x)


def nnx_blob_net(torch_model) -> NnxBlobNet:
    """An NnxBlobNet carrying the torch blob net's weights (left in training mode)."""
    model = NnxBlobNet(nnx.Rngs(0))
    for name, index in (("c0", 0), ("c2", 2), ("c5", 5)):
        layer = torch_model[index]
        getattr(model, name).kernel[...] = jnp.asarray(_numpy(layer.weight).transpose(2, 3, 1, 0))
        getattr(model, name).bias[...] = jnp.asarray(_numpy(layer.bias))
    bn, fc = torch_model[3], torch_model[9]
    model.bn3.scale[...] = jnp.asarray(_numpy(bn.weight))
    model.bn3.bias[...] = jnp.asarray(_numpy(bn.bias))
    model.bn3.mean[...] = jnp.asarray(_numpy(bn.running_mean))
    model.bn3.var[...] = jnp.asarray(_numpy(bn.running_var))
    model.fc.kernel[...] = jnp.asarray(_numpy(fc.weight).T)
    model.fc.bias[...] = jnp.asarray(_numpy(fc.bias))
    return model


def blob_net_functions(torch_model):
    """The torch blob net as two plain JAX functions (jax.lax, no Flax) split after c5's ReLU."""
    weights = {name: _numpy(t) for name, t in torch_model.state_dict().items()}

    def conv(x, index: int, stride: int):
        kernel = jnp.asarray(weights[f"{index}.weight"].transpose(2, 3, 1, 0))  # HWIO
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + jnp.asarray(weights[f"{index}.bias"])

    def features_fn(x):
        x = jax.nn.relu(conv(x, 0, 1))
        x = conv(x, 2, 2)
        scale = weights["3.weight"] / np.sqrt(weights["3.running_var"] + 1e-5)
        x = x * jnp.asarray(scale) + jnp.asarray(
            weights["3.bias"] - weights["3.running_mean"] * scale
        )
        return jax.nn.relu(conv(jax.nn.relu(x), 5, 2))

    def head_fn(features):
        pooled = jnp.mean(features, axis=(1, 2))
        return pooled @ jnp.asarray(weights["9.weight"].T) + jnp.asarray(weights["9.bias"])

    return features_fn, head_fn


def _host(leaf) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.array(leaf)


def snapshot(tree):
    """A host copy of every leaf of a pytree (PRNG keys as their key data)."""
    return jax.tree_util.tree_map(_host, tree)


def tree_equal(first, second) -> bool:
    """Two pytrees with identical structure and bit-identical leaves."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(snapshot(first))
    leaves_b, tree_b = jax.tree_util.tree_flatten(snapshot(second))
    return tree_a == tree_b and all(
        np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b, strict=True)
    )
