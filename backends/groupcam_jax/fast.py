"""``fast=True`` for JAX: the variables and input in low precision up to the target layers.

The masked passes run with every float32 variable cast to bfloat16 (float16 on
GPUs of compute capability 7.x) and the target layers' outputs cast back to
float32 at their last call, so the head computes the logits in float32.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from groupcam_core.fast import FastMode, gpu_fast_mode

__all__ = ["HeadInFloat32", "cast_floats", "fast_mode"]


def fast_mode() -> FastMode:
    """What ``fast=True`` does on JAX's default device.

    On a CPU, XLA was measured no faster in bfloat16 than in float32 (see
    docs/benchmarks.md), so the passes stay exact there; on NVIDIA GPUs
    bfloat16 from compute capability 8 on (float16 on 7.x); on TPUs bfloat16.
    """
    device = jax.devices()[0]
    if device.platform == "gpu":
        try:
            major, minor = str(device.compute_capability).split(".")[:2]
            capability: tuple[int, int] | None = (int(major), int(minor))
        except (AttributeError, ValueError):
            capability = None
        return gpu_fast_mode(capability)
    if device.platform == "tpu":
        return FastMode("bfloat16", False, True, "TPU: bfloat16")
    return FastMode(reason="XLA:CPU measured no faster in bfloat16 than float32: exact passes")


def cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with every float32 array leaf cast to ``dtype``."""

    def cast(leaf: Any) -> Any:
        if isinstance(leaf, (jax.Array, np.ndarray)) and leaf.dtype == jnp.float32:
            return jnp.asarray(leaf, dtype)
        return leaf

    return jax.tree_util.tree_map(cast, tree)


class HeadInFloat32:
    """Casts each target layer's output to float32 at its last call (fast passes)."""

    def __init__(self, calls: dict[str, int]) -> None:
        self.calls = calls
        self.seen: Counter[str] = Counter()

    def __call__(self, path: str, module: Any, output: Any) -> Any:
        index = self.seen[path]
        self.seen[path] += 1
        if index == self.calls.get(path, -1) and jnp.issubdtype(output.dtype, jnp.floating):
            return output.astype(jnp.float32)
        return output
