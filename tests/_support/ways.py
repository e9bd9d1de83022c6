"""Every way into groupcam, behind one small interface, for the contract tests.

A way builds an explainer for the trained blob net (the same weights in every
framework, the last ReLU as target layer), hands out the blob photos in its
layout, takes a snapshot of its model's state, and builds the variants the
contract needs (a model in training mode, a model that ends in softmax).
Frameworks are imported only when a way is built.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from groupcam.zoo.explainers import WAYS

#: Every way in, in the order the tests list them.
ALL_WAYS = WAYS


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_ways() -> list[str]:
    """The ways this environment can run.

    ``GROUPCAM_WAYS`` (comma-separated) chooses them explicitly; otherwise
    torch if it is installed, Keras on the backend ``KERAS_BACKEND`` selects
    (one Keras backend per process), and the three JAX ways if Flax is
    installed.
    """
    chosen = os.environ.get("GROUPCAM_WAYS")
    if chosen:
        ways = [way.strip() for way in chosen.split(",") if way.strip()]
        unknown = sorted(set(ways) - set(ALL_WAYS))
        if unknown:
            raise ValueError(f"unknown ways in GROUPCAM_WAYS: {unknown}; known: {ALL_WAYS}")
        return ways
    ways = []
    if _installed("torch"):
        ways.append("torch")
    if _installed("keras"):
        ways.append(f"keras-{os.environ.get('KERAS_BACKEND', 'tensorflow')}")
    if _installed("flax"):
        ways += ["jax-linen", "jax-nnx", "jax-functions"]
    return ways


@dataclass
class Way:
    """One way in, bound to the trained blob net's weights.

    Attributes
    ----------
    name
        One of :data:`ALL_WAYS`.
    layout
        The input layout of its explainers.
    make
        ``make(model=None, **kwargs)`` -> a GroupCAM explaining the last ReLU of
        ``model`` (default: a fresh port of the blob net), with ``groups=8``
        unless overridden.
    model
        ``model(kind)`` -> a fresh model: ``"blob"`` (the blob net, in evaluation
        mode where the framework has modes), ``"training"`` (the blob net in
        training mode), ``"softmax"`` (the blob net ending in a softmax that
        the adapter cannot switch off), ``"detector"`` (the blob net ending in
        the dense detection head of ``_support.detection``) or
        ``"single-logit"`` (a binary classifier: the blob net's first logit
        only, shape ``(B, 1)``).
    snapshot
        ``snapshot(model)`` -> a comparable record of everything an explanation
        must leave as it was (weights, buffers, modes, patched calls, hooks).
    same
        ``same(a, b)`` -> whether two snapshots are identical.
    fused_layers
        Two layers to explain together (the last convolution and the ReLU
        after it), as this way names them; ``None`` where a way has one layer
        only (plain functions).
    """

    name: str
    layout: str
    make: Callable[..., Any]
    model: Callable[[str], Any]
    snapshot: Callable[[Any], Any]
    same: Callable[[Any, Any], bool]
    fused_layers: tuple[str, str] | None = ("c5", "relu6")

    def images(self, photos: np.ndarray) -> np.ndarray:
        """Channels-last photos in this way's layout."""
        if self.layout == "channels_first":
            return np.ascontiguousarray(photos.transpose(0, 3, 1, 2))
        return photos


def build_way(name: str, blob_net: Any) -> Way:
    """The way ``name`` on the weights of the trained torch ``blob_net``."""
    if name == "torch":
        return _torch_way(blob_net)
    if name.startswith("keras-"):
        return _keras_way(name, blob_net)
    return _jax_way(name, blob_net)


# -- torch ------------------------------------------------------------------


def _torch_way(blob_net: Any) -> Way:
    import copy

    import torch
    from torch import nn

    from groupcam_torch import GroupCAM

    from .detection import dense_head

    class DenseHead(nn.Module):
        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            return dense_head(logits)

    class FirstLogit(nn.Module):
        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            return logits[:, :1]

    def model(kind: str) -> nn.Module:
        net = copy.deepcopy(blob_net)
        if kind == "training":
            return net.train()
        if kind == "softmax":
            return nn.Sequential(*net, nn.Softmax(dim=1)).eval()
        if kind == "detector":
            return nn.Sequential(*net, DenseHead()).eval()
        if kind == "single-logit":
            return nn.Sequential(*net, FirstLogit()).eval()
        return net.eval()

    def make(net: nn.Module | None = None, **kwargs: Any) -> GroupCAM:
        kwargs.setdefault("groups", 8)
        kwargs.setdefault("target_layer", "6")
        return GroupCAM(model("blob") if net is None else net, **kwargs)

    def snapshot(net: nn.Module) -> Any:
        hooks = sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in net.modules()
        )
        return (
            {k: v.detach().clone() for k, v in net.state_dict().items()},
            [m.training for m in net.modules()],
            [p.requires_grad for p in net.parameters()],
            [p.grad is None for p in net.parameters()],
            hooks,
        )

    def same(a: Any, b: Any) -> bool:
        return (
            a[0].keys() == b[0].keys()
            and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
            and a[1:] == b[1:]
        )

    return Way("torch", "channels_first", make, model, snapshot, same, ("5", "6"))


# -- Keras ------------------------------------------------------------------


def _keras_way(name: str, blob_net: Any) -> Way:
    import keras

    from groupcam_keras import GroupCAM

    from .detection import keras_dense_head
    from .keras_models import keras_blob_net

    backend = name.removeprefix("keras-")
    if keras.backend.backend() != backend:
        raise RuntimeError(
            f"way {name} needs KERAS_BACKEND={backend}; this process runs {keras.backend.backend()}"
        )

    def model(kind: str) -> keras.Model:
        net = keras_blob_net(blob_net)
        if kind == "softmax":
            # keras.ops.softmax in the graph: no layer the adapter could switch off.
            return keras.Model(net.inputs, keras.ops.softmax(net.outputs[0], axis=-1))
        if kind == "detector":
            return keras.Model(net.inputs, keras_dense_head(net.outputs[0]))
        if kind == "single-logit":
            return keras.Model(net.inputs, net.outputs[0][:, :1])
        return net

    def make(net: keras.Model | None = None, **kwargs: Any) -> GroupCAM:
        kwargs.setdefault("groups", 8)
        kwargs.setdefault("target_layer", "relu6")
        return GroupCAM(model("blob") if net is None else net, **kwargs)

    def snapshot(net: keras.Model) -> Any:
        layers = [net, *net._flatten_layers(include_self=False)]
        return (
            [np.array(w) for w in net.get_weights()],
            [
                (
                    "call" in layer.__dict__,
                    getattr(layer, "activation", None),
                    layer.dtype_policy.name,
                )
                for layer in layers
            ],
        )

    def same(a: Any, b: Any) -> bool:
        return (
            len(a[0]) == len(b[0])
            and all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
            and a[1] == b[1]
        )

    return Way(name, "channels_last", make, model, snapshot, same)


# -- JAX --------------------------------------------------------------------


def _jax_way(name: str, blob_net: Any) -> Way:
    import jax
    import jax.numpy as jnp
    from flax import linen, nnx

    from groupcam_jax import GroupCAM

    from .detection import dense_head
    from .jax_models import (
        LinenBlobNet,
        blob_net_functions,
        linen_blob_variables,
        nnx_blob_net,
        tree_equal,
    )

    class SoftmaxLinen(linen.Module):
        @linen.compact
        def __call__(self, x: Any, train: bool = True) -> Any:
            return linen.softmax(LinenBlobNet(name="net")(x, train))

    class SoftmaxNnx(nnx.Module):
        def __init__(self, net: Any) -> None:
            self.net = net

        def __call__(self, x: Any) -> Any:
            return nnx.softmax(self.net(x))

    class DetectorLinen(linen.Module):
        @linen.compact
        def __call__(self, x: Any, train: bool = True) -> Any:
            return dense_head(LinenBlobNet(name="net")(x, train))

    class DetectorNnx(nnx.Module):
        def __init__(self, net: Any) -> None:
            self.net = net

        def __call__(self, x: Any) -> Any:
            return dense_head(self.net(x))

    class FirstLogitLinen(linen.Module):
        @linen.compact
        def __call__(self, x: Any, train: bool = True) -> Any:
            return LinenBlobNet(name="net")(x, train)[:, :1]

    class FirstLogitNnx(nnx.Module):
        def __init__(self, net: Any) -> None:
            self.net = net

        def __call__(self, x: Any) -> Any:
            return self.net(x)[:, :1]

    wrappers = (
        SoftmaxLinen,
        SoftmaxNnx,
        DetectorLinen,
        DetectorNnx,
        FirstLogitLinen,
        FirstLogitNnx,
    )
    linen_heads = {
        "softmax": SoftmaxLinen,
        "detector": DetectorLinen,
        "single-logit": FirstLogitLinen,
    }
    nnx_heads = {"softmax": SoftmaxNnx, "detector": DetectorNnx, "single-logit": FirstLogitNnx}

    if name == "jax-linen":

        def model(kind: str) -> Any:
            variables = linen_blob_variables(blob_net)
            if kind in linen_heads:
                nested = {collection: {"net": tree} for collection, tree in variables.items()}
                return linen_heads[kind](), nested
            return LinenBlobNet(), variables

        def make(net: Any = None, **kwargs: Any) -> GroupCAM:
            module, variables = model("blob") if net is None else net
            kwargs.setdefault("groups", 8)
            layer = "net/relu6" if isinstance(module, wrappers) else "relu6"
            kwargs.setdefault("target_layer", layer)
            return GroupCAM.from_linen(module, variables, **kwargs)

        def snapshot(net: Any) -> Any:
            module, variables = net
            return repr(module), jax.tree_util.tree_map(np.array, variables)

        def same(a: Any, b: Any) -> bool:
            return a[0] == b[0] and tree_equal(a[1], b[1])

    elif name == "jax-nnx":

        def model(kind: str) -> Any:
            net = nnx_blob_net(blob_net)
            if kind in nnx_heads:
                net.eval()
                return nnx_heads[kind](net)
            if kind == "training":
                net.train()
            else:
                net.eval()
            return net

        def make(net: Any = None, **kwargs: Any) -> GroupCAM:
            net = model("blob") if net is None else net
            kwargs.setdefault("groups", 8)
            kwargs.setdefault("target_layer", "net/relu6" if isinstance(net, wrappers) else "relu6")
            return GroupCAM.from_nnx(net, **kwargs)

        def snapshot(net: Any) -> Any:
            graphdef, state = nnx.split(net)
            return graphdef, state

        def same(a: Any, b: Any) -> bool:
            return a[0] == b[0] and tree_equal(a[1], b[1])

    elif name == "jax-functions":

        def model(kind: str) -> Any:
            features_fn, head_fn = blob_net_functions(blob_net)
            if kind == "softmax":
                return features_fn, lambda features: jax.nn.softmax(head_fn(features))
            if kind == "detector":
                return features_fn, lambda features: dense_head(head_fn(features))
            if kind == "single-logit":
                return features_fn, lambda features: head_fn(features)[:, :1]
            return features_fn, head_fn

        def make(net: Any = None, **kwargs: Any) -> GroupCAM:
            kwargs.setdefault("groups", 8)
            features_fn, head_fn = model("blob") if net is None else net
            return GroupCAM(features_fn, head_fn, **kwargs)

        def snapshot(net: Any) -> Any:
            return None  # pure functions hold no state

        def same(a: Any, b: Any) -> bool:
            return a == b

    else:
        raise ValueError(f"unknown way {name!r}")

    del jnp  # imported for its side effect of initializing jax.numpy early
    fused = None if name == "jax-functions" else ("c5", "relu6")
    return Way(name, "channels_last", make, model, snapshot, same, fused)
