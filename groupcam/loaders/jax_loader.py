"""What ``groupcam explain`` needs from JAX: recognizing Flax models, building the explainer.

A :class:`~groupcam.loaders.ModelLoader` (JAX models have no file format of
their own): models come from ``package.module:callable`` (a Flax NNX module, or
a linen ``(module, variables)`` pair) or are the built-in EfficientNet-Lite0 in
linen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from flax import linen, nnx

from groupcam_core.protocol import Layout
from groupcam_jax import GroupCAM

from ..jobs.settings import ExplainJob

__all__ = [
    "FRAMEWORK",
    "input_layout",
    "input_size",
    "make_explainer",
    "owns",
    "set_threads",
    "weights",
]

FRAMEWORK = "jax"


def _is_linen_pair(model: Any) -> bool:
    return (
        isinstance(model, tuple)
        and len(model) == 2
        and isinstance(model[0], linen.Module)
        and isinstance(model[1], Mapping)
    )


def owns(model: Any) -> bool:
    """Whether ``model`` is a Flax NNX module or a linen ``(module, variables)`` pair."""
    return isinstance(model, nnx.Module) or _is_linen_pair(model)


def input_layout(model: Any) -> Layout:
    """Flax models take channels-last batches."""
    return "channels_last"


def input_size(model: Any) -> tuple[int, int] | None:
    """A Flax module does not declare its input size."""
    return None


def make_explainer(model: Any, job: ExplainJob, sample: np.ndarray) -> GroupCAM:
    """``GroupCAM.from_nnx`` or ``GroupCAM.from_linen`` with the job's settings."""
    settings = {"groups": job.groups, "variant": job.variant, "batch_size": job.batch_size}
    if isinstance(model, nnx.Module):
        return GroupCAM.from_nnx(model, target_layer=job.layer, **settings)
    module, variables = model
    return GroupCAM.from_linen(module, variables, target_layer=job.layer, **settings)


def set_threads(threads: int) -> None:
    """XLA fixes its CPU threads when it starts; set ``XLA_FLAGS`` before running instead."""


def weights(model: Any) -> Iterator[tuple[str, np.ndarray]]:
    """The linen pair's variables or the NNX module's state but its random-number state
    (which no map depends on, and which a model's use advances), by path in the tree."""
    import jax

    tree = model[1] if _is_linen_pair(model) else nnx.state(model, nnx.Not(nnx.RngState))
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        yield jax.tree_util.keystr(path), np.asarray(leaf)
