"""A user's batch, converted by a backend and checked, in the core's terms.

Every function that takes ``xp`` works in any array-API namespace (numpy, torch,
jax.numpy), on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .dtypes import compute_dtype, is_real_floating
from .errors import InputError
from .namespaces import namespace_of
from .protocol import Backend, Layout

__all__ = [
    "PreparedBatch",
    "concat_rows",
    "prepare_batch",
    "to_channels_first",
    "validate_input",
]


def to_channels_first(array: Any, layout: Layout, xp: Any) -> Any:
    """Channels-last 4-D arrays to channels-first; anything else unchanged (checked later)."""
    if layout == "channels_last" and array.ndim == 4:
        return xp.permute_dims(array, (0, 3, 1, 2))
    return array


def validate_input(x: Any, layout: Layout, xp: Any) -> None:
    """Raise :class:`InputError` unless ``x`` is a non-empty, finite 4-D float batch."""
    if x.ndim != 4:
        expected = "(B, C, H, W)" if layout == "channels_first" else "(B, H, W, C)"
        hint = " (add a batch axis for a single image)" if x.ndim == 3 else ""
        raise InputError(f"expected a 4-D batch {expected}, got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise InputError("the input batch is empty")
    if 0 in tuple(x.shape):
        raise InputError(f"the input batch has an empty axis: shape {tuple(x.shape)}")
    if not is_real_floating(x.dtype, xp):
        raise InputError(f"expected a floating-point batch, got dtype {x.dtype}")
    if not bool(xp.all(xp.isfinite(x))):
        raise InputError("the input batch contains NaN or inf")


@dataclass(frozen=True)
class PreparedBatch:
    """A batch converted by a backend and validated, with what the methods need to know.

    Attributes
    ----------
    backend
        The backend that prepared it.
    x
        The batch in the backend's array type, input layout and dtype.
    xp
        Its array namespace.
    dtype
        The dtype of the core's arithmetic (:func:`~groupcam_core.dtypes.compute_dtype`).
    size, height, width
        Images in the batch and their spatial size.
    mask_axis
        The channel axis of ``x``, where a ``(n, H, W)`` mask is broadcast.
    layer
        The backend's target layer name, or ``None``.
    """

    backend: Backend
    x: Any
    xp: Any
    dtype: Any
    size: int
    height: int
    width: int
    mask_axis: int
    layer: str | None

    def channels_first(self) -> Any:
        """``x`` as channels-first, in the compute dtype."""
        return self.xp.astype(
            to_channels_first(self.x, self.backend.input_layout, self.xp), self.dtype
        )

    def to_input_layout(self, images: Any) -> Any:
        """Channels-first ``(n, C, H, W)`` images in the backend's layout and input dtype."""
        xp = self.xp
        if self.backend.input_layout == "channels_last":
            images = xp.permute_dims(images, (0, 2, 3, 1))
        return xp.astype(images, self.x.dtype)


def prepare_batch(backend: Backend, x: Any) -> PreparedBatch:
    """Convert ``x`` with the backend and check it (:func:`validate_input`)."""
    x = backend.prepare_input(x)
    xp = array_namespace(x)
    validate_input(x, backend.input_layout, xp)
    if backend.input_layout == "channels_first":
        height, width, mask_axis = x.shape[2], x.shape[3], 1
    else:
        height, width, mask_axis = x.shape[1], x.shape[2], 3
    return PreparedBatch(
        backend=backend,
        x=x,
        xp=xp,
        dtype=compute_dtype(x, xp),
        size=x.shape[0],
        height=height,
        width=width,
        mask_axis=mask_axis,
        layer=backend.layer_name or None,
    )


def concat_rows(arrays: Sequence[Any]) -> Any:
    """``arrays`` joined along the first axis, in their own framework (``None`` stays)."""
    if arrays[0] is None:
        return None
    if isinstance(arrays[0], list):  # per-image detections (a list of dicts per chunk)
        return [item for part in arrays for item in part]
    xp = namespace_of(*arrays)
    concat = getattr(xp, "concat", None) or xp.concatenate
    return concat(list(arrays), axis=0)
