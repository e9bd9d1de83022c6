"""What every framework's ``GroupCAM`` class shares."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .config import GroupCAMConfig, make_config
from .engine import explain_group_cam
from .errors import BackendError, ConfigError, InputError, LayerNotFoundError, TargetLayerError
from .fast import EXACT, FastMode, check_fast, faster_mode
from .locks import model_lock
from .plumbing import concat_rows, positive_int, prepare_batch, resolve_batch_size
from .protocol import Backend, Layout
from .result import Explanation
from .targets import TargetSpec
from .transforms import FeatureTransform, TransformedBackend

__all__ = [
    "ExplainerBase",
    "LayerCall",
    "as_backend",
    "floating_batch",
    "pick_last_feature_layer",
    "preferred_batch_size",
    "unknown_layer_error",
]


def floating_batch(
    x: Any, convert: Callable[[Any], Any], is_floating: Callable[[Any], bool], kind: str
) -> Any:
    """Convert a user's batch with ``convert`` and check that it holds floats.

    Parameters
    ----------
    x
        What the user passed.
    convert
        The framework's conversion to its array type.
    is_floating
        Whether a dtype of that array type is a floating-point type.
    kind
        The array type's name, for the error message.
    """
    try:
        array = convert(x)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InputError(
            f"cannot turn the input of type {type(x).__name__} into {kind}: {error}"
        ) from error
    if not is_floating(array.dtype):
        raise InputError(
            f"expected a floating-point batch, got dtype {array.dtype}; "
            "convert and normalize images the way the model was trained"
        )
    return array


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


LayerKind = Literal["convolution", "pooling", "container", "other"]


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
        Its output was a 4-D floating-point map larger than 1x1.
    kind
        ``"convolution"`` (2-D convolutions of any kind), ``"pooling"``
        (spatial max or average pooling), ``"container"`` (a layer made of
        other recorded layers, such as a nested model or a block), or ``"other"``.
    shape
        The output's shape, for error messages.
    """

    name: str
    order: int
    spatial: bool
    kind: LayerKind = "other"
    shape: tuple[int, ...] = ()


def _describe(calls: Sequence[LayerCall]) -> str:
    listed = ", ".join(f"{call.name!r} {call.shape}" for call in calls)
    return listed or "none"


def pick_last_feature_layer(calls: Sequence[LayerCall]) -> str:
    """Choose the default target layer: the last spatial feature map that feeds the head.

    Parameters
    ----------
    calls
        One :class:`LayerCall` per layer, from one recorded forward pass.

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
    spatial = sorted((call for call in calls if call.spatial), key=lambda call: call.order)
    convolutions = [call.order for call in spatial if call.kind == "convolution"]
    if not convolutions:
        raise TargetLayerError(
            "found no 2-D convolution with a spatial output to pick a target layer after; "
            "pass target_layer= (a layer name or the layer itself). Layers with spatial "
            f"outputs: {_describe(spatial[-8:])}"
        )
    after = max(convolutions)
    candidates = [
        call
        for call in spatial
        if call.order >= after and call.kind not in ("pooling", "container")
    ]
    if not candidates:
        raise TargetLayerError(
            "no layer after the last convolution outputs a spatial feature map; pass "
            "target_layer= (a layer name or the layer itself). Candidates: "
            f"{_describe(spatial[-8:])}"
        )
    return candidates[-1].name


class ExplainerBase:
    """Settings, ``explain`` and ``__call__`` on top of a framework's backend.

    Subclasses call ``super().__init__`` and implement ``_backend_for(x)``; they
    may override ``_explaining()`` (a context manager around each explanation,
    for example to put the model in evaluation mode).

    Every explanation of one model holds that model's lock
    (:func:`groupcam_core.locks.model_lock`) for its whole duration, so calls
    from several threads, through one explainer or several on the same model,
    run one after the other and never see each other's changes to the model.

    Parameters
    ----------
    model
        The object whose lock serializes explanations (the user's model).
    groups, variant, batch_size, settings
        As for the adapters' ``GroupCAM``.
    reshape_transform
        ``None``, or a function from the target layer's output to a 4-D feature
        map in the adapter's feature layout (see
        :func:`groupcam_core.transforms.tokens_to_grid`).
    fast
        Run the masked forward passes of :meth:`explain` in the adapter's fast
        mode (:class:`~groupcam_core.fast.FastMode`); metrics and comparison
        methods that run the model through this explainer always get the exact
        passes.
    """

    def __init__(
        self,
        model: Any,
        groups: int,
        variant: str | GroupCAMConfig,
        batch_size: int | None,
        settings: dict[str, Any],
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
    ) -> None:
        self.fast = check_fast(fast)
        if reshape_transform is not None and not callable(reshape_transform):
            raise ConfigError(
                "reshape_transform must be a function from the layer's output to a feature map, "
                f"got {type(reshape_transform).__name__}"
            )
        self.reshape_transform = reshape_transform
        if batch_size is not None:
            try:
                batch_size = positive_int(batch_size, "batch_size")
            except ConfigError:
                raise ConfigError(
                    f"batch_size must be a positive int or None, got {batch_size!r}"
                ) from None
        self.config: GroupCAMConfig = make_config(variant, groups=groups, **settings)
        self.batch_size: int | None = batch_size
        self._lock = model_lock(model)
        # fast=True: the mode measured per input shape, and the last one used.
        self._measured_modes: dict[tuple[Any, ...], FastMode] = {}
        self._last_fast_mode: FastMode | None = None

    def _backend_for(self, x: Any) -> Backend:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def input_layout(self) -> Layout:
        """The layout of the images the model takes: ``"channels_first"`` or ``"channels_last"``.

        PyTorch: channels-first; Keras: ``keras.config.image_data_format()`` at
        the time of asking; JAX: the ``layout`` the explainer was given.
        :func:`groupcam_core.compare.compare` reads it to hand each explainer
        the images in its layout. Adapters override this property.
        """
        raise BackendError(
            f"{type(self).__name__} does not say which image layout its model takes "
            "(it does not implement input_layout)"
        )

    def _explaining(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def _fast_mode(self, x: Any = None) -> FastMode:
        """The adapter's fast mode for the model's device (``x``: a batch, when it matters)."""
        return FastMode(reason="this adapter has no fast mode: exact passes")

    @contextmanager
    def _fast_passes(self, backend: Backend, mode: FastMode) -> Iterator[None]:
        """Make ``backend.forward`` run in ``mode`` while the block runs.

        Backends that run fast passes read their ``fast`` attribute; it is set
        for the block and put back to the exact mode afterwards.
        """
        if not hasattr(backend, "fast"):
            yield
            return
        backend.fast = mode
        try:
            yield
        finally:
            backend.fast = EXACT

    @property
    def fast_mode(self) -> FastMode:
        """What :meth:`explain` does to the masked passes: the fast mode, or the exact one.

        With ``fast=True``, the device's fast mode until the first explanation,
        then what that explanation measured and used (see
        :func:`~groupcam_core.fast.faster_mode`).
        """
        if not self.fast:
            return EXACT
        return self._last_fast_mode or self._fast_mode()

    def _measured_fast_mode(self, backend: Backend, x: Any, candidate: FastMode) -> FastMode:
        """``candidate`` if it is faster on this model for inputs like ``x``, else exact."""
        key = (tuple(getattr(x, "shape", ())), candidate)
        if key not in self._measured_modes:
            batch = prepare_batch(backend, x)
            rows = resolve_batch_size(self.batch_size, backend)
            first = batch.x[:1]
            probe = concat_rows([first] * rows) if rows > 1 else first

            def run(mode: FastMode) -> None:
                with self._fast_passes(backend, mode) if mode.active else nullcontext():
                    backend.to_numpy(backend.forward(probe))

            self._measured_modes[key] = faster_mode(candidate, run)
        return self._measured_modes[key]

    @contextmanager
    def using_backend(self, x: Any, *, fast: bool = False) -> Iterator[Backend]:
        """The explained model as a core :class:`~groupcam_core.Backend` while the block runs.

        Metrics and the comparison methods of :mod:`groupcam_core` run the model
        through it; the model is prepared as for an explanation (evaluation mode,
        restored afterwards, the model's lock held) for the duration of the block.
        With ``fast=True`` its masked forward passes run in the adapter's fast
        mode (what :meth:`explain` of a ``fast=True`` explainer uses).
        """
        with self._lock, self._explaining():
            backend = self._backend_for(x)
            mode = self._fast_mode(x) if fast else EXACT
            if mode.active:
                mode = self._measured_fast_mode(backend, x, mode)
            if fast:
                self._last_fast_mode = mode
            with self._fast_passes(backend, mode) if mode.active else nullcontext():
                if self.reshape_transform is not None:
                    backend = TransformedBackend(backend, self.reshape_transform)
                yield backend

    def explain(self, x: Any, targets: TargetSpec = None) -> Explanation:
        """Explain a batch and return the maps with scores and diagnostics.

        Parameters
        ----------
        x
            The batch, normalized as the model expects, in the model's layout.
        targets
            ``None`` to explain each image's top class, one int for all images,
            one int per image (a sequence or an integer array), or a target
            function ``f(outputs) -> (B,)`` (see :mod:`groupcam_core.targets`).

        Returns
        -------
        groupcam_core.Explanation
        """
        with self.using_backend(x, fast=self.fast) as backend:
            return explain_group_cam(
                backend, x, targets=targets, config=self.config, batch_size=self.batch_size
            )

    def __call__(self, x: Any, targets: TargetSpec = None) -> np.ndarray:
        """Return the saliency maps only: numpy float32 ``(B, H, W)`` in [0, 1]."""
        return self.explain(x, targets).saliency


def preferred_batch_size(explainer: Any) -> int | None:
    """An explainer's own ``batch_size`` (``None`` for a bare backend)."""
    return explainer.batch_size if isinstance(explainer, ExplainerBase) else None


@contextmanager
def as_backend(explainer: ExplainerBase | Backend, x: Any) -> Iterator[Backend]:
    """Yield ``explainer`` as a core backend for the duration of the block.

    Parameters
    ----------
    explainer
        A groupcam explainer (:class:`~groupcam_core.explainer.ExplainerBase`):
        its model is then prepared as for an explanation and restored when the
        block ends; or a :class:`~groupcam_core.protocol.Backend`, used as it is.
    x
        The batch that will be run (an explainer may need it to find its layer).
    """
    if isinstance(explainer, ExplainerBase):
        with explainer.using_backend(x) as backend:
            yield backend
    elif isinstance(explainer, Backend):
        yield explainer
    else:
        raise BackendError(
            "expected a groupcam explainer (such as groupcam_torch.GroupCAM) or an object "
            f"implementing groupcam_core.Backend, got {type(explainer).__name__}"
        )
