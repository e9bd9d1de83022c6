"""The core's backend protocol for JAX models, on top of a way in (see _models)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from groupcam_core.errors import GroupCAMError, TargetLayerError, layer_not_called, model_failed
from groupcam_core.explainer import LayerCall, floating_batch, unknown_layer_error
from groupcam_core.fast import EXACT, FastMode, gpu_fast_mode
from groupcam_core.protocol import GradientPass, Layout, TargetResolver
from groupcam_core.targets import OutputSelector, select_class_scores

from ._models import LayerCallback, ModelWayIn
from .gradient import gradient_by_perturbation

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "JaxBackend",
    "LayerCalls",
    "device_fast_mode",
    "record_layer_calls",
]

#: Rows per masked forward pass when the user gives no ``batch_size``: on a CPU
#: (see docs/benchmarks.md) and on accelerators.
DEFAULT_BATCH_SIZE = {"cpu": 8, "accelerator": 64}


@dataclass
class LayerCalls:
    """What one abstract pass through the model saw of its tapped layers.

    Attributes
    ----------
    finished
        For each layer path: its last call (see
        :class:`groupcam_core.explainer.LayerCall`).
    calls
        How many times each layer was called.
    shapes
        Shape and dtype of each layer's floating-point output at its last call.
    """

    finished: dict[str, LayerCall] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    shapes: dict[str, jax.ShapeDtypeStruct] = field(default_factory=dict)


def record_layer_calls(
    way_in: ModelWayIn,
    variables: Any,
    x: Any,
    layout: Layout,
    only: Collection[str] | None = None,
) -> LayerCalls:
    """Trace the model abstractly on ``x`` (nothing is computed) and record its layer calls."""
    record = LayerCalls()
    spatial_axes = (1, 2) if layout == "channels_last" else (2, 3)

    def callback(path: str, module: Any, output: Any) -> Any:
        is_float = isinstance(output, jax.Array) and jnp.issubdtype(output.dtype, jnp.floating)
        is_map = is_float and output.ndim == 4
        spatial = is_map and output.shape[spatial_axes[0]] * output.shape[spatial_axes[1]] > 1
        record.calls[path] += 1
        kind = "convolution" if way_in.is_convolution(module) else "other"
        shape = tuple(getattr(output, "shape", ()))
        record.finished[path] = LayerCall(path, record.calls.total(), bool(spatial), kind, shape)
        if is_float:
            record.shapes[path] = jax.ShapeDtypeStruct(output.shape, output.dtype)
        return output

    try:
        jax.eval_shape(lambda v, batch: way_in.run(v, batch, callback, only), variables, x)
    except GroupCAMError:
        raise
    except Exception as error:
        raise model_failed(way_in.description, tuple(x.shape), layout, error) from error
    return record


def device_fast_mode() -> FastMode:
    """What ``fast=True`` does on JAX's default device (measured in docs/benchmarks.md).

    On a CPU, XLA ran a ResNet-50 no faster in bfloat16 than in float32, so the
    passes stay exact there; on NVIDIA GPUs bfloat16 from compute capability 8
    on (float16 on 7.x); on TPUs bfloat16.
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


def _cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with every float32 array leaf cast to ``dtype``."""

    def cast(leaf: Any) -> Any:
        if isinstance(leaf, (jax.Array, np.ndarray)) and leaf.dtype == jnp.float32:
            return jnp.asarray(leaf, dtype)
        return leaf

    return jax.tree_util.tree_map(cast, tree)


class _HeadInFloat32:
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


class _Tap:
    """Adds a ``delta`` to the output of one call of each target layer and keeps that output."""

    def __init__(self, deltas: dict[str, Any], calls: dict[str, int]) -> None:
        self.deltas = deltas
        self.calls = calls
        self.seen: Counter[str] = Counter()
        self.activations: dict[str, Any] = {}

    def __call__(self, path: str, module: Any, output: Any) -> Any:
        index = self.seen[path]
        self.seen[path] += 1
        if path not in self.deltas or index != self.calls[path]:
            return output
        self.activations[path] = output
        return output + self.deltas[path]


class JaxBackend:
    """Jit-compiled gradient pass and masked passes for one model and its target layer(s).

    The gradient pass adds a zero perturbation ``delta`` to each target layer's
    output; the gradient of the target scores with respect to ``delta`` is the
    gradient with respect to the activations. ``jax.vjp`` of the compiled split
    gives the outputs (to resolve the targets) and then the gradients, from one
    forward and one backward pass. A layer called several times is explained at
    its last call.
    """

    fixed_batch_shape = True

    def __init__(
        self,
        way_in: ModelWayIn,
        structure_key: Hashable,
        variables: Any,
        layer_names: str | tuple[str, ...],
        layout: Layout,
        output: OutputSelector,
        outputs_probabilities: bool,
    ) -> None:
        self.way_in = way_in
        self.structure_key = structure_key
        self.variables = variables
        self.layer_names = (layer_names,) if isinstance(layer_names, str) else tuple(layer_names)
        self.layer_name = ", ".join(self.layer_names)
        self.input_layout: Layout = layout
        self.feature_layout: Layout = layout
        self.output = output
        self.outputs_probabilities = outputs_probabilities
        self._layer_calls: dict[tuple[Any, ...], tuple[tuple[int, ...], tuple[Any, ...]]] = {}
        self._forward = jax.jit(self._logits)
        self._split = jax.jit(self._logits_and_activations, static_argnums=3)
        #: How the masked passes run (set by ``GroupCAM(fast=True)`` for an explanation).
        self.fast: FastMode = EXACT
        self._fast_forward = jax.jit(self._fast_logits, static_argnums=(2, 3))
        self._fast_variables: tuple[Any, str, Any] | None = None  # (source, dtype, cast)
        self._last_calls: tuple[int, ...] | None = None  # of the last gradient pass

    @property
    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZE["cpu" if jax.default_backend() == "cpu" else "accelerator"]

    def _select(self, raw: Any) -> Any:
        return select_class_scores(raw, self.output, _is_jax_array, "jax.Array")

    def _logits(self, variables: Any, x: Any) -> Any:
        return self._select(self.way_in.run(variables, x, None, None))

    def _fast_logits(
        self, variables: Any, x: Any, dtype: str, calls: tuple[int, ...] | None
    ) -> Any:
        """The model in ``dtype`` up to the target layers, in float32 after their last calls."""
        callback: LayerCallback | None = None
        if calls is not None:
            callback = _HeadInFloat32(dict(zip(self.layer_names, calls, strict=True)))
        only = self.layer_names if calls is not None else None
        outputs = self._select(self.way_in.run(variables, x.astype(dtype), callback, only))
        return outputs.astype(jnp.float32)

    def _logits_and_activations(
        self, variables: Any, x: Any, deltas: tuple[Any, ...], calls: tuple[int, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        names = self.layer_names
        tap = _Tap(dict(zip(names, deltas, strict=True)), dict(zip(names, calls, strict=True)))
        callback: LayerCallback = tap
        outputs = self._select(self.way_in.run(variables, x, callback, names))
        return outputs, tuple(tap.activations[name] for name in names)

    def prepare_input(self, x: Any) -> Any:
        return floating_batch(
            x, jnp.asarray, lambda dtype: jnp.issubdtype(dtype, jnp.floating), "a JAX array"
        )

    def _target_calls(self, x: Any) -> tuple[tuple[int, ...], tuple[Any, ...]]:
        """Index of each target layer's last call on ``x`` and its output's shape."""
        key = (tuple(x.shape), str(x.dtype))
        if key not in self._layer_calls:
            names = self.layer_names
            record = record_layer_calls(
                self.way_in, self.variables, x, self.input_layout, only=names
            )
            for name in names:
                if record.calls[name] == 0:
                    everything = record_layer_calls(
                        self.way_in, self.variables, x, self.input_layout
                    )
                    known = self.way_in.known_paths()
                    if name in known or name in everything.calls:
                        raise layer_not_called(name)
                    raise unknown_layer_error(name, [*everything.calls, *known])
                if name not in record.shapes:
                    raise TargetLayerError(
                        f"target layer {name!r} does not output a floating-point array"
                    )
            self._layer_calls[key] = (
                tuple(record.calls[name] - 1 for name in names),
                tuple(record.shapes[name] for name in names),
            )
        return self._layer_calls[key]

    def gradient_pass(self, x: Any, objective: TargetResolver) -> GradientPass:
        calls, shapes = self._target_calls(x)
        variables = self.variables
        result = gradient_by_perturbation(
            lambda deltas: self._split(variables, x, deltas, calls), shapes, objective
        )
        self._last_calls = calls
        if len(self.layer_names) == 1:
            return replace(result, activations=result.activations[0], gradients=result.gradients[0])
        return replace(result, layer_names=self.layer_names)

    def forward(self, x: Any) -> Any:
        dtype = self.fast.dtype
        if dtype is None:
            return self._forward(self.variables, x)
        cached = self._fast_variables
        if cached is None or cached[0] is not self.variables or cached[1] != dtype:
            cast = _cast_floats(self.variables, jnp.dtype(dtype))
            # Nothing to cast (plain functions hold their own parameters): exact passes.
            changed = any(
                a is not b
                for a, b in zip(
                    jax.tree_util.tree_leaves(self.variables),
                    jax.tree_util.tree_leaves(cast),
                    strict=True,
                )
            )
            cached = (self.variables, dtype, cast if changed else None)
            self._fast_variables = cached
        if cached[2] is None:
            return self._forward(self.variables, x)
        calls = self._last_calls if self.fast.head_float32 else None
        return self._fast_forward(cached[2], x, dtype, calls)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)


def _is_jax_array(value: Any) -> bool:
    return isinstance(value, jax.Array)
