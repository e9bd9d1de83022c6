"""Feature maps from layers that do not output one: ``reshape_transform`` and tokens_to_grid.

A vision transformer's blocks output tokens ``(B, tokens, channels)``, not a
``(B, K, u, v)`` map. ``reshape_transform=`` on every adapter's ``GroupCAM``
turns the target layer's output into a feature map in the adapter's feature
layout; :func:`tokens_to_grid` is the usual one. The transform is applied, in
the model's framework and on its device, to the layer's activations and to the
gradient at the layer's output: for a re-indexing of the output (a reshape, a
transpose, dropping a class token), the transformed gradient is the gradient
with respect to the feature map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .errors import TargetLayerError
from .namespaces import namespace_of
from .protocol import Backend, GradientPass, Layout

__all__ = ["FeatureTransform", "TokensToGrid", "TransformedBackend", "tokens_to_grid"]

#: A function from a layer's output to a 4-D feature map, on the framework's arrays.
FeatureTransform = Callable[[Any], Any]


def _permute(array: Any, axes: tuple[int, ...], xp: Any) -> Any:
    permute = getattr(xp, "permute_dims", None)
    return permute(array, axes) if permute is not None else xp.transpose(array, axes)


@dataclass(frozen=True)
class TokensToGrid:
    """``(B, tokens, channels)`` -> a ``(B, channels, h, w)`` or ``(B, h, w, channels)`` map.

    Attributes
    ----------
    skip_tokens
        Leading tokens that are not patches (1 for ViT's class token, 2 for
        DeiT's class and distillation tokens, 0 for none).
    grid
        ``(h, w)`` of the patch grid; ``None`` infers a square grid from the
        number of patch tokens.
    layout
        The layout of the map it returns; ``None`` means the adapter's feature
        layout (channels-first for PyTorch, channels-last for Keras and JAX).
    """

    skip_tokens: int = 1
    grid: tuple[int, int] | None = None
    layout: Layout | None = None

    def for_layout(self, layout: Layout) -> TokensToGrid:
        """This transform returning maps in ``layout`` (unless it already has one)."""
        return self if self.layout is not None else replace(self, layout=layout)

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether a layer output of ``shape`` is ``(B, tokens, channels)`` with the patch
        tokens this transform needs (used to pick the default target layer)."""
        if len(shape) != 3:
            return False
        patches = int(shape[1]) - self.skip_tokens
        if patches <= 0:
            return False
        if self.grid is not None:
            return self.grid[0] * self.grid[1] == patches
        return math.isqrt(patches) ** 2 == patches

    def __call__(self, tokens: Any) -> Any:
        if getattr(tokens, "ndim", None) != 3:
            raise TargetLayerError(
                f"tokens_to_grid expects (B, tokens, channels), got shape "
                f"{tuple(getattr(tokens, 'shape', ()))}"
            )
        xp = namespace_of(tokens)
        batch, count, channels = tokens.shape
        patches = count - self.skip_tokens
        if self.grid is None:
            side = math.isqrt(max(patches, 0))
            if side * side != patches or patches == 0:
                raise TargetLayerError(
                    f"{count} tokens less {self.skip_tokens} skipped leave {patches} patches, "
                    "not a square grid; pass grid=(h, w) to tokens_to_grid"
                )
            height, width = side, side
        else:
            height, width = self.grid
            if height * width != patches:
                raise TargetLayerError(
                    f"grid {self.grid} needs {height * width} patch tokens, the layer gives "
                    f"{patches} ({count} tokens less {self.skip_tokens} skipped)"
                )
        grid = xp.reshape(tokens[:, self.skip_tokens :, :], (batch, height, width, channels))
        if (self.layout or "channels_last") == "channels_first":
            grid = _permute(grid, (0, 3, 1, 2), xp)
        return grid


def tokens_to_grid(
    skip_tokens: int = 1, grid: tuple[int, int] | None = None, layout: Layout | None = None
) -> TokensToGrid:
    """A ``reshape_transform`` for ViT-style ``(B, tokens, channels)`` layer outputs.

    Parameters
    ----------
    skip_tokens
        Leading non-patch tokens to drop (1: a class token).
    grid
        ``(h, w)``; ``None`` infers a square grid.
    layout
        ``None`` (the adapter's feature layout), ``"channels_first"`` or
        ``"channels_last"``.

    Examples
    --------
    >>> GroupCAM(vit, target_layer="blocks.11.norm1",
    ...          reshape_transform=tokens_to_grid())   # doctest: +SKIP
    """
    if isinstance(skip_tokens, bool) or not isinstance(skip_tokens, int) or skip_tokens < 0:
        raise TargetLayerError(f"skip_tokens must be an int of at least 0, got {skip_tokens!r}")
    if grid is not None and (
        len(tuple(grid)) != 2 or not all(isinstance(g, int) and g > 0 for g in grid)
    ):
        raise TargetLayerError(f"grid must be (h, w) with positive ints, got {grid!r}")
    return TokensToGrid(skip_tokens, None if grid is None else tuple(grid), layout)


class TransformedBackend:
    """A backend whose gradient passes return transformed feature maps (all else delegated)."""

    def __init__(self, backend: Backend, transform: FeatureTransform) -> None:
        self._backend = backend
        if isinstance(transform, TokensToGrid):
            transform = transform.for_layout(backend.feature_layout)
        self._transform = transform

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def _apply(self, arrays: Any) -> Any:
        if isinstance(arrays, tuple):
            return tuple(self._apply(array) for array in arrays)
        try:
            return self._transform(arrays)
        except TargetLayerError:
            raise
        except Exception as error:
            raise TargetLayerError(
                f"reshape_transform failed on the target layer's output of shape "
                f"{tuple(getattr(arrays, 'shape', ()))}: {type(error).__name__}: {error}"
            ) from error

    def gradient_pass(self, x: Any, objective: Any) -> GradientPass:
        result = self._backend.gradient_pass(x, objective)
        return replace(
            result,
            activations=self._apply(result.activations),
            gradients=self._apply(result.gradients),
        )
