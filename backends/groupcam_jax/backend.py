"""The core's backend protocol for JAX models, on top of a way in (see :mod:`.models`)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from groupcam_core.errors import TargetLayerError, layer_not_called
from groupcam_core.fast import EXACT, FastMode
from groupcam_core.kit import (
    OutputSelector,
    default_batch_size,
    floating_batch,
    select_class_scores,
    unknown_layer_error,
)
from groupcam_core.model_outputs import ModelOutputs
from groupcam_core.protocol import GradientPass, Layout, Objective

from .fast import HeadInFloat32, cast_floats
from .gradients import PerturbationTap, gradient_by_perturbation
from .layers import record_layer_calls
from .models import LayerCallback, ModelWayIn

__all__ = ["DEFAULT_BATCH_SIZES", "JaxBackend"]

#: Rows per masked forward pass when the user gives no ``batch_size``: on a CPU
#: (see docs/benchmarks.md) and on accelerators.
DEFAULT_BATCH_SIZES: dict[str, int] = {"cpu": 8, "accelerator": 64}


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
        model_outputs: ModelOutputs,
    ) -> None:
        self.way_in = way_in
        self.structure_key = structure_key
        self.variables = variables
        self.layer_names = (layer_names,) if isinstance(layer_names, str) else tuple(layer_names)
        self.layer_name = ", ".join(self.layer_names)
        self.input_layout: Layout = layout
        self.feature_layout: Layout = layout
        self.output = output
        self.model_outputs = model_outputs
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
        return default_batch_size(DEFAULT_BATCH_SIZES, jax.default_backend())

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
            callback = HeadInFloat32(dict(zip(self.layer_names, calls, strict=True)))
        only = self.layer_names if calls is not None else None
        outputs = self._select(self.way_in.run(variables, x.astype(dtype), callback, only))
        return outputs.astype(jnp.float32)

    def _logits_and_activations(
        self, variables: Any, x: Any, deltas: tuple[Any, ...], calls: tuple[int, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        names = self.layer_names
        tap = PerturbationTap(
            dict(zip(names, deltas, strict=True)), dict(zip(names, calls, strict=True))
        )
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

    def gradient_pass(self, x: Any, objective: Objective) -> GradientPass:
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
            cast = cast_floats(self.variables, jnp.dtype(dtype))
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
