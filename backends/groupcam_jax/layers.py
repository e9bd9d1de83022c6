"""The layers of a JAX model: one abstract pass records their calls, for the default layer.

Nothing is computed: the model is traced by ``jax.eval_shape`` with every layer
(or the chosen ones) tapped, which gives each layer's calls and output shapes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from groupcam_core.errors import GroupCAMError, note_model_failure
from groupcam_core.kit import LayerCall, LayerCallRecorder
from groupcam_core.protocol import Layout

from .models import ModelWayIn

__all__ = ["LayerCalls", "record_layer_calls"]


@dataclass
class LayerCalls:
    """What one abstract pass through the model saw of its tapped layers.

    Attributes
    ----------
    finished
        For each layer path: its last call (see
        :class:`groupcam_core.kit.LayerCall`).
    calls
        How many times each layer was called.
    shapes
        Shape and dtype of each layer's floating-point output at its last call.
    """

    finished: dict[str, LayerCall] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    shapes: dict[str, jax.ShapeDtypeStruct] = field(default_factory=dict)
    output: Any = None


def record_layer_calls(
    way_in: ModelWayIn,
    variables: Any,
    x: Any,
    layout: Layout,
    only: Collection[str] | None = None,
) -> LayerCalls:
    """Trace the model abstractly on ``x`` (nothing is computed) and record its layer calls."""
    record = LayerCalls()
    recorder = LayerCallRecorder(layout)
    record.finished, record.calls = recorder.finished, recorder.calls

    def callback(path: str, module: Any, output: Any) -> Any:
        is_array = isinstance(output, jax.Array)
        is_float = is_array and jnp.issubdtype(output.dtype, jnp.floating)
        kind = "convolution" if way_in.is_convolution(module) else "other"
        recorder.record(path, tuple(output.shape) if is_array else None, bool(is_float), kind)
        if is_float:
            record.shapes[path] = jax.ShapeDtypeStruct(output.shape, output.dtype)
        return output

    try:
        record.output = jax.eval_shape(
            lambda v, batch: way_in.run(v, batch, callback, only), variables, x
        )
    except GroupCAMError:
        raise
    except Exception as error:
        note_model_failure(error, way_in.description, tuple(x.shape), layout)
        raise
    return record
