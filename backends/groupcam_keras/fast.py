"""``fast=True`` for Keras: the masked passes under a mixed-precision dtype policy.

Keras layers read their dtype policy each time they are called (and a compiled
forward, each time it is traced), so giving every float32 layer the policy
``"mixed_bfloat16"`` (variables stay float32; the layer computes in bfloat16)
for the duration of a call makes that call run in bfloat16, and restoring the
policies afterwards leaves the model as it was. The layer that makes the
model's output (the classifier) keeps float32, so the logits do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras

from groupcam_core.fast import FastMode, cpu_has_native_bfloat16, gpu_fast_mode

from .layers import output_layer

__all__ = ["fast_mode", "mixed_precision"]


def _layers(model: keras.Layer) -> list[keras.Layer]:
    """Every layer below ``model``, nested models and their layers included."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=True))
    return list(getattr(model, "layers", []))  # pragma: no cover - older Keras


@contextmanager
def mixed_precision(model: keras.Model, dtype: str | None) -> Iterator[None]:
    """Run every float32 layer of ``model`` (but the output layer) in ``dtype`` for the block.

    Parameters
    ----------
    model
        The Keras model; its layers' policies are restored when the block ends.
    dtype
        ``"bfloat16"`` or ``"float16"``; ``None`` changes nothing.
    """
    if dtype is None:
        yield
        return
    policy = keras.DTypePolicy(f"mixed_{dtype}")
    try:
        keep = output_layer(model)
    except (AttributeError, ValueError):
        keep = None
    switched: list[tuple[keras.Layer, Any]] = []
    try:
        for layer in _layers(model):
            current = getattr(layer, "_dtype_policy", None)
            if (
                layer is keep
                or not isinstance(current, keras.DTypePolicy)
                or type(current) is not keras.DTypePolicy  # quantized or mapped policies
                or current.name != "float32"
            ):
                continue
            switched.append((layer, current))
            layer.dtype_policy = policy
        yield
    finally:
        for layer, previous in reversed(switched):
            layer.dtype_policy = previous


def fast_mode() -> FastMode:
    """What ``fast=True`` does on the Keras backend and device in use.

    TensorFlow on a CPU with native bfloat16 (oneDNN): ``mixed_bfloat16``. On
    the JAX and PyTorch backends' CPU paths bfloat16 was measured no faster,
    so they keep the exact passes. On GPUs: bfloat16 from compute capability 8
    on, float16 on 7.x; on TPUs bfloat16. docs/benchmarks.md has the
    measurements.
    """
    name = keras.backend.backend()
    capability = _gpu_capability(name)
    if capability is not None:
        return gpu_fast_mode(capability)
    if name == "tensorflow":
        if cpu_has_native_bfloat16():
            return FastMode(
                "bfloat16", False, True, "TensorFlow (oneDNN) on a CPU with native bfloat16"
            )
        return FastMode(reason="this CPU has no native bfloat16 arithmetic: exact passes")
    if _on_tpu(name):
        return FastMode("bfloat16", False, True, "TPU: bfloat16")
    return FastMode(reason=f"bfloat16 measured no faster on Keras-{name}'s CPU path: exact passes")


def _gpu_capability(name: str) -> tuple[int, int] | None:
    """Compute capability of the first NVIDIA GPU the backend uses, or ``None``."""
    try:
        if name == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return tuple(details.get("compute_capability", (0, 0)))  # type: ignore[return-value]
        elif name == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_capability()
        elif name == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                major, minor = str(getattr(device, "compute_capability", "0.0")).split(".")[:2]
                return int(major), int(minor)
    except Exception:  # pragma: no cover - a query that fails means "no GPU known"
        return None
    return None


def _on_tpu(name: str) -> bool:
    if name != "jax":
        return False
    import jax

    return jax.default_backend() == "tpu"
