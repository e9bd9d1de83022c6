"""Target layers as every adapter handles them: lists, unknown names, the default layer.

An adapter records one forward pass on a probe image with a
:class:`LayerCallRecorder` (its hooks, patched calls or callbacks say which
layer returned what); :func:`pick_last_feature_layer` then chooses the default
target layer by one rule for every framework, and :func:`is_spatial_feature_map`
is the one definition of an output that can be explained.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..batches import has_spatial_rank
from ..errors import ConfigError, LayerNotFoundError, TargetLayerError
from ..features import looks_like_other_layout
from ..protocol import Layout

__all__ = [
    "DefaultLayerRule",
    "LayerCall",
    "LayerCallRecorder",
    "LayerKind",
    "is_spatial_feature_map",
    "pick_last_feature_layer",
    "requested_layers",
    "unknown_layer_error",
]

LayerKind = Literal["convolution", "pooling", "container", "other"]


def requested_layers(target_layer: Any, is_one: Callable[[Any], bool] | None = None) -> list[Any]:
    """The layers a user's ``target_layer=`` names: one, or each of a list.

    Parameters
    ----------
    target_layer
        A layer (name, path or object), or a list or tuple of them (several
        layers fused); not ``None``.
    is_one
        Whether a tuple is one layer after all (JAX paths may be tuples of
        names); by default every list and tuple lists layers.

    Raises
    ------
    ConfigError
        For an empty list.
    """
    several = isinstance(target_layer, (list, tuple)) and not (
        is_one is not None and isinstance(target_layer, tuple) and is_one(target_layer)
    )
    layers = list(target_layer) if several else [target_layer]
    if not layers:
        raise ConfigError("target_layer is an empty list; name at least one layer")
    return layers


def unknown_layer_error(target: str, names: Sequence[str], detail: str = "") -> LayerNotFoundError:
    """The error for a layer name the model does not have, listing close matches.

    Names that end with the requested one after a separator come first (so
    ``"r2"`` suggests ``"_orig_mod.r2"`` in a ``torch.compile``d model), then
    names that ``difflib`` finds close.

    Parameters
    ----------
    target
        The name the user asked for.
    names
        The model's layer names, in the model's order.
    detail
        Appended to the message (for example, a list of the last layers).
    """
    unique = list(dict.fromkeys(names))
    suffixed = [n for n in unique if n != target and n.endswith(("." + target, "/" + target))]
    close = difflib.get_close_matches(target, unique, n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys([*suffixed, *close]))[:5]
    hint = f"; did you mean {', '.join(repr(c) for c in suggestions)}?" if suggestions else ""
    return LayerNotFoundError(f"the model has no layer named {target!r}{hint}{detail}")


def is_spatial_feature_map(shape: Sequence[int | None], floating: bool, layout: Layout) -> bool:
    """Whether a layer's output can be explained: a floating-point map with 1 to 3 spatial
    axes (3- to 5-D with its batch and channel axes) and more than one position.

    Parameters
    ----------
    shape
        The output's shape (``None`` for an unknown size).
    floating
        The output is a floating-point array.
    layout
        Where its channel axis is.
    """
    if not floating or not has_spatial_rank(len(shape)) or any(side is None for side in shape):
        return False
    spatial = shape[1:-1] if layout == "channels_last" else shape[2:]
    return math.prod(int(side) for side in spatial) > 1  # type: ignore[arg-type]


@dataclass(frozen=True)
class LayerCall:
    """What one recorded forward pass saw of a layer's last call.

    Attributes
    ----------
    name
        The layer's name or path.
    order
        When that call finished, counted over all recorded calls.
    spatial
        Its output was a spatial feature map (:func:`is_spatial_feature_map`).
    kind
        ``"convolution"`` (1-D, 2-D or 3-D convolutions of any kind), ``"pooling"``
        (spatial max or average pooling), ``"container"`` (a layer made of
        other recorded layers, such as a nested model or a block), or ``"other"``.
    shape
        The output's shape (``()`` when it was not an array).
    floating
        The output was a floating-point array.
    """

    name: str
    order: int
    spatial: bool
    kind: LayerKind = "other"
    shape: tuple[int, ...] = ()
    floating: bool = True


@dataclass(frozen=True)
class DefaultLayerRule:
    """What the probe knows beyond each layer's output, for :func:`pick_last_feature_layer`.

    Attributes
    ----------
    rows
        The probe batch's rows (2): an output with another first axis is not
        one row per image (a parameter such as Swin's relative position bias).
    image_size
        The spatial size of the probe's inputs (``(L,)``, ``(H, W)`` or
        ``(D, H, W)``): maps with another number of spatial axes are passed
        over, and so is a 2-D map that reads as the other layout
        (:func:`~groupcam_core.features.looks_like_other_layout`).
    layout
        The layout of the layers' feature maps.
    accepts
        The ``reshape_transform``'s test of an output shape, or ``None``: with
        one, the default is the last layer whose output it accepts.
    output_channels
        The classes of a spatial model output (a segmentation model's
        ``(B, classes, H, W)``), or ``None``: maps with that many channels are
        the classifier's, and passed over.
    """

    rows: int
    image_size: tuple[int, ...]
    layout: Layout
    accepts: Callable[[tuple[int, ...]], bool] | None = None
    output_channels: int | None = None

    def explainable(self, call: LayerCall) -> bool:
        """Whether a spatial call can be the default layer under this rule."""
        shape = call.shape
        if len(shape) != len(self.image_size) + 2 or shape[0] != self.rows:
            return False
        channels = shape[1] if self.layout == "channels_first" else shape[-1]
        if self.output_channels is not None and channels == self.output_channels:
            return False
        if len(shape) != 4:
            return True
        channels, height, width = (
            (shape[1], shape[2], shape[3])
            if self.layout == "channels_first"
            else (shape[3], shape[1], shape[2])
        )
        return not looks_like_other_layout(
            (shape[0], channels, height, width), self.layout, *self.image_size
        )

    def candidates(self, calls: Sequence[LayerCall]) -> list[LayerCall]:
        """The layers the default could be, in the order their last calls finished.

        With ``accepts``, the layers whose output it accepts; else the spatial
        maps this rule finds explainable, less pooling layers and containers.
        :func:`pick_last_feature_layer` chooses among them; the ones before its
        choice are what the default steps back to.
        """
        ordered = sorted(calls, key=lambda call: call.order)
        if self.accepts is not None:
            return [call for call in ordered if self.accepted(call)]
        return [
            call
            for call in ordered
            if call.spatial and self.explainable(call) and call.kind not in _NOT_DEFAULT_KINDS
        ]

    def accepted(self, call: LayerCall) -> bool:
        """Whether ``accepts`` takes the call's output (one row per image, floating point).

        Containers count here: a block's output (after its residual sum) is not
        any of its layers' outputs.
        """
        return (
            self.accepts is not None
            and call.floating
            and bool(call.shape)
            and call.shape[0] == self.rows
            and bool(self.accepts(call.shape))
        )


class LayerCallRecorder:
    """The calls of every layer in one forward pass, for the choice of the default layer.

    Parameters
    ----------
    layout
        The layout of the layers' feature maps.

    Attributes
    ----------
    finished
        Each layer's last call (:class:`LayerCall`), by name.
    calls
        How many times each layer was called.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout: Layout = layout
        self.finished: dict[str, LayerCall] = {}
        self.calls: Counter[str] = Counter()

    def record(
        self, name: str, shape: Sequence[int | None] | None, floating: bool, kind: LayerKind
    ) -> None:
        """A call of layer ``name`` finished with an output of ``shape`` (``None``: no array)."""
        self.calls[name] += 1
        found = tuple(shape or ())
        spatial = shape is not None and is_spatial_feature_map(found, floating, self.layout)
        self.finished[name] = LayerCall(
            name, self.calls.total(), spatial, kind, found, shape is not None and floating
        )

    def last_feature_layer(self, rule: DefaultLayerRule | None = None) -> str:
        """The default target layer among the recorded calls (:func:`pick_last_feature_layer`)."""
        return pick_last_feature_layer(list(self.finished.values()), rule)


def _describe(calls: Sequence[LayerCall]) -> str:
    listed = ", ".join(f"{call.name!r} {call.shape}" for call in calls)
    return listed or "none"


#: Kinds of layer the default never is: pooling (explain VGG at ``block5_conv3``, not
#: ``block5_pool``) and containers (their innermost layer is named instead).
_NOT_DEFAULT_KINDS = ("pooling", "container")


def pick_last_feature_layer(
    calls: Sequence[LayerCall], rule: DefaultLayerRule | None = None
) -> str:
    """Choose the default target layer: the last spatial feature map that feeds the head.

    Parameters
    ----------
    calls
        One :class:`LayerCall` per layer, from one recorded forward pass.
    rule
        What else the probe knows (:class:`DefaultLayerRule`): maps that are
        not one row per image, that read as the other layout or that carry a
        segmentation model's classes are passed over; with a
        ``reshape_transform``, the last layer whose output it accepts wins.

    Returns
    -------
    str
        Among the layers whose last call finished at or after the last
        convolution with a spatial output (a 1x1 convolution after global
        pooling, a classifier written as a convolution, does not count), the
        one that finished last with a spatial output. Pooling layers are passed
        over (Grad-CAM users explain VGG at ``block5_conv3``, not at
        ``block5_pool``), and so are containers, whose innermost layer is
        named instead.
    """
    ordered = sorted(calls, key=lambda call: call.order)
    if rule is not None and rule.accepts is not None:
        accepted = rule.candidates(ordered)
        if not accepted:
            arrays = [call for call in ordered if call.shape]
            raise TargetLayerError(
                "no layer's output is accepted by the reshape_transform, so no default "
                "target layer; pass target_layer= (a layer name or the layer itself). The last "
                f"layers' outputs: {_describe(arrays[-8:])}"
            )
        return accepted[-1].name
    spatial = [
        call for call in ordered if call.spatial and (rule is None or rule.explainable(call))
    ]
    convolutions = [call.order for call in spatial if call.kind == "convolution"]
    if not convolutions:
        raise TargetLayerError(
            "found no convolution with a spatial output of the input's rank to pick a target "
            "layer after; "
            "pass target_layer= (a layer name or the layer itself). Layers with spatial "
            f"outputs: {_describe(spatial[-8:])}"
        )
    after = max(convolutions)
    candidates = [
        call
        for call in (spatial if rule is None else rule.candidates(ordered))
        if call.order >= after and call.kind not in _NOT_DEFAULT_KINDS
    ]
    if not candidates:
        raise TargetLayerError(
            "no layer after the last convolution outputs a spatial feature map; pass "
            "target_layer= (a layer name or the layer itself). Candidates: "
            f"{_describe(spatial[-8:])}"
        )
    return candidates[-1].name
