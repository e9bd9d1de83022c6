"""A user's batch, converted by a backend and checked, in the core's terms.

Every function that takes ``xp`` works in any array-API namespace (numpy, torch,
jax.numpy), on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .dtypes import compute_dtype, is_real_floating
from .errors import InputError
from .namespaces import namespace_of
from .protocol import Backend, Layout

__all__ = [
    "BATCH_FORMS",
    "SPATIAL_LETTERS",
    "PreparedBatch",
    "concat_rows",
    "has_spatial_rank",
    "prepare_batch",
    "to_channels_first",
    "to_channels_last",
    "validate_input",
]


#: The spatial axes of a signal, an image and a volume, by their number.
SPATIAL_LETTERS = {1: "L", 2: "H, W", 3: "D, H, W"}
#: The batch shapes of each number of spatial axes, per layout.
BATCH_FORMS = {
    "channels_first": {axes: f"(B, C, {letters})" for axes, letters in SPATIAL_LETTERS.items()},
    "channels_last": {axes: f"(B, {letters}, C)" for axes, letters in SPATIAL_LETTERS.items()},
}


def has_spatial_rank(ndim: int) -> bool:
    """Whether an array of ``ndim`` axes is a batch with 1 to 3 spatial axes (3- to 5-D)."""
    return 3 <= ndim <= 5


def to_channels_first(array: Any, layout: Layout, xp: Any) -> Any:
    """Channels-last arrays with 1 to 3 spatial axes to channels-first; others unchanged."""
    if layout == "channels_last" and has_spatial_rank(array.ndim):
        return xp.permute_dims(array, (0, array.ndim - 1, *range(1, array.ndim - 1)))
    return array


def to_channels_last(array: Any, xp: Any) -> Any:
    """Channels-first ``(B, C, *spatial)`` arrays to channels-last ``(B, *spatial, C)``."""
    return xp.permute_dims(array, (0, *range(2, array.ndim), 1))


def validate_input(x: Any, layout: Layout, xp: Any) -> None:
    """Raise :class:`InputError` unless ``x`` is a non-empty, finite float batch with 1 to 3
    spatial axes: ``(B, C, L)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)`` channels-first,
    the channels last otherwise."""
    if not has_spatial_rank(x.ndim):
        expected = ", ".join(BATCH_FORMS[layout].values())
        hint = " (add a batch axis for a single input)" if x.ndim == 2 else ""
        raise InputError(
            f"expected a batch with 1 to 3 spatial axes, {expected}, got shape "
            f"{tuple(x.shape)}{hint}"
        )
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
    size
        Inputs in the batch.
    spatial
        Their spatial size: ``(L,)``, ``(H, W)`` or ``(D, H, W)``.
    mask_axis
        The channel axis of ``x``, where a ``(n, *spatial)`` mask is broadcast.
    layer
        The backend's target layer name, or ``None``.
    """

    backend: Backend
    x: Any
    xp: Any
    dtype: Any
    size: int
    spatial: tuple[int, ...]
    mask_axis: int
    layer: str | None

    @property
    def spatial_axes(self) -> int:
        """How many spatial axes the inputs have (1, 2 or 3)."""
        return len(self.spatial)

    @property
    def positions(self) -> int:
        """Spatial positions per input (pixels, voxels or samples)."""
        return math.prod(self.spatial)

    def form(self) -> str:
        """The batch's shape in letters, as the adapter takes it: ``(B, C, H, W)``, ..."""
        return BATCH_FORMS[self.backend.input_layout][self.spatial_axes]

    def channels_first(self) -> Any:
        """``x`` as channels-first, in the compute dtype."""
        return self.xp.astype(
            to_channels_first(self.x, self.backend.input_layout, self.xp), self.dtype
        )

    def to_input_layout(self, images: Any) -> Any:
        """Channels-first ``(n, C, *spatial)`` inputs in the backend's layout and input dtype."""
        xp = self.xp
        if self.backend.input_layout == "channels_last":
            images = to_channels_last(images, xp)
        return xp.astype(images, self.x.dtype)


def prepare_batch(backend: Backend, x: Any) -> PreparedBatch:
    """Convert ``x`` with the backend and check it (:func:`validate_input`)."""
    x = backend.prepare_input(x)
    xp = array_namespace(x)
    validate_input(x, backend.input_layout, xp)
    shape = tuple(int(side) for side in x.shape)
    if backend.input_layout == "channels_first":
        spatial, mask_axis = shape[2:], 1
    else:
        spatial, mask_axis = shape[1:-1], x.ndim - 1
    return PreparedBatch(
        backend=backend,
        x=x,
        xp=xp,
        dtype=compute_dtype(x, xp),
        size=shape[0],
        spatial=spatial,
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
