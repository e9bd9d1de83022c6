"""What every framework's ``GroupCAM`` class shares: settings, target layers, explanations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np

from ..arguments import one_of, positive_int
from ..batches import concat_rows, has_spatial_rank, prepare_batch
from ..config import GroupCAMConfig, make_config
from ..engine import explain_group_cam
from ..errors import (
    BackendError,
    ConfigError,
    LayerNotConnectedError,
    TargetLayerError,
    naming_the_users_batch,
)
from ..fast import EXACT, FastMode, check_fast, faster_mode
from ..features import refusing_zero_gradients
from ..forward import resolve_batch_size
from ..locks import model_lock
from ..model_outputs import MODEL_OUTPUTS
from ..protocol import Backend, Layout
from ..result import Explanation
from ..targets import TargetSpec
from ..transforms import FeatureTransform, TransformedBackend
from .layers import DefaultLayerRule, LayerCall, pick_last_feature_layer, requested_layers

__all__ = ["MODEL_OUTPUTS", "ExplainerBase", "as_backend", "check_model", "preferred_batch_size"]


def check_model(model: Any, kind: type | tuple[type, ...], who: str, what: str) -> None:
    """Raise :class:`BackendError` unless ``model`` is a ``kind``.

    Parameters
    ----------
    model
        What the user passed.
    kind
        The framework's model class(es).
    who, what
        The explainer's name and the model kind, for the message:
        ``"groupcam_torch.GroupCAM needs a torch.nn.Module, got list"``.
    """
    if not isinstance(model, kind):
        raise BackendError(f"{who} needs {what}, got {type(model).__name__}")


class ExplainerBase:
    """Settings, ``explain`` and ``__call__`` on top of a framework's backend.

    Subclasses call ``super().__init__`` and implement ``_backend_for(x)``; they
    may override ``_explaining()`` (a context manager around each explanation,
    for example to put the model in evaluation mode). Adapters with target
    layers also implement ``_resolve_layer`` (a user's layer to the adapter's
    record of it), ``_layer_name`` (that record's name) and, for the default
    layer, ``_probe_backend`` and ``_probe_layer_calls``; the base class keeps
    the layers (:meth:`_set_target_layers`, :meth:`_layers_for`), names them
    (:attr:`target_layer_name`) and writes ``repr``.

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
    model_outputs
        What the model outputs, one of the class attribute
        ``model_outputs_choices`` (:data:`MODEL_OUTPUTS` unless an adapter offers more).
    """

    #: What ``model_outputs=`` may say for this adapter.
    model_outputs_choices: tuple[str, ...] = MODEL_OUTPUTS

    def __init__(
        self,
        model: Any,
        groups: int,
        variant: str | GroupCAMConfig,
        batch_size: int | None,
        settings: dict[str, Any],
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        model_outputs: str = "logits",
    ) -> None:
        self.model_outputs = one_of(model_outputs, "model_outputs", self.model_outputs_choices)
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
        # The target layers as the adapter records them (None: the default, not yet found).
        self._layers: tuple[Any, ...] | None = None
        self._default_layer_note: str | None = None
        #: Earlier candidates for the default layer, last first, while it has not
        #: given an explanation yet (a layer the output does not depend on steps back).
        self._default_fallbacks: list[str] = []

    def _backend_for(self, x: Any) -> Backend:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- target layers --------------------------------------------------------------
    def _resolve_layer(self, target: Any) -> Any:  # pragma: no cover - abstract
        """The adapter's record of one layer the user named (raises for an unknown one)."""
        raise NotImplementedError

    def _layer_name(self, layer: Any) -> str:
        """The name of a layer record, as the user sees it."""
        return str(layer)

    def _probe_backend(self) -> Backend:  # pragma: no cover - abstract
        """A backend with no target layer, to run the default-layer probe with."""
        raise NotImplementedError

    def _probe_layer_calls(
        self, probe: Any, batch: Any
    ) -> tuple[Sequence[LayerCall], Any]:  # pragma: no cover - abstract
        """Every layer's last call in one pass of ``probe`` on ``batch``, and the model's output.

        ``batch`` is the probe batch: two rows of the user's prepared batch (the
        first image twice for a batch of one), so that a layer's output with
        another first axis is known not to be one row per image. The output may
        be the model's raw return value or its shapes (an abstract run).
        """
        raise NotImplementedError

    def _set_target_layers(
        self, target_layer: Any, is_one: Callable[[Any], bool] | None = None
    ) -> None:
        """Resolve the user's ``target_layer=`` now (``None``: find the default at first use)."""
        if target_layer is not None:
            self._layers = tuple(
                self._resolve_layer(target) for target in requested_layers(target_layer, is_one)
            )

    def _layers_for(self, x: Any) -> tuple[Any, ...] | None:
        """The target layers; the default one is found on the first image of the first batch.

        ``None`` while no layer is known and ``x`` cannot be probed (a batch of
        the wrong rank, or an empty one): the core then reports the bad input.
        """
        if self._layers is None:
            probe = self._probe_backend()
            batch = probe.prepare_input(x)
            if has_spatial_rank(getattr(batch, "ndim", 0)) and 0 not in tuple(batch.shape):
                rows = batch[:2] if batch.shape[0] >= 2 else concat_rows([batch[:1], batch[:1]])
                with naming_the_users_batch(tuple(batch.shape)):
                    calls, output = self._probe_layer_calls(probe, rows)
                rule = self._default_layer_rule(probe, tuple(batch.shape), output)
                name = pick_last_feature_layer(calls, rule)
                self._default_layer_note = _default_layer_note(name, calls, rule)
                self._default_fallbacks = [
                    call.name for call in reversed(rule.candidates(calls)) if call.name != name
                ][:_MAX_FALLBACKS]
                self._layers = (self._resolve_layer(name),)
        return self._layers

    def _default_layer_rule(
        self, probe: Backend, shape: tuple[int, ...], output: Any
    ) -> DefaultLayerRule:
        """What the default layer must satisfy for a batch of ``shape``, given the probe's
        ``output`` (see :class:`~groupcam_core.kit.DefaultLayerRule`)."""
        size = shape[2:] if probe.input_layout == "channels_first" else shape[1:-1]
        accepts = getattr(self.reshape_transform, "accepts", None)
        return DefaultLayerRule(
            rows=2,
            image_size=tuple(int(side) for side in size),
            layout=probe.feature_layout,
            accepts=accepts if callable(accepts) else None,
            output_channels=_spatial_output_channels(output, probe.feature_layout, len(shape)),
        )

    @property
    def target_layer_name(self) -> str | None:
        """Name(s) of the explained layer(s) (``None`` until the default is found)."""
        if not self._layers:
            return None
        return ", ".join(self._layer_name(layer) for layer in self._layers)

    def _model_description(self) -> str:
        """How ``repr`` names the model."""
        return type(getattr(self, "model", None)).__name__

    def _repr_settings(self) -> str:
        """Adapter settings ``repr`` shows after the groups (``", backend='jax'"``)."""
        return ""

    def __repr__(self) -> str:
        layer = self.target_layer_name or "<last feature layer>"
        return (
            f"GroupCAM({self._model_description()}, target_layer={layer!r}, "
            f"groups={self.config.groups}{self._repr_settings()}"
            f"{', fast=True' if self.fast else ''})"
        )

    @property
    def input_layout(self) -> Layout:
        """The layout of the images the model takes: ``"channels_first"`` or ``"channels_last"``.

        PyTorch: channels-first; Keras: ``keras.config.image_data_format()`` at
        the time of asking; JAX: the ``layout`` the explainer was given.
        :func:`groupcam.compare.compare` reads it to hand each explainer
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

        A :class:`~groupcam_core.protocol.FastBackend` reads its ``fast``
        attribute; it is set for the block and put back to the exact mode
        afterwards.
        """
        if not hasattr(backend, "fast"):  # not a FastBackend (an isinstance check would
            yield  # evaluate every property of the protocol on the backend)
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
                try:
                    yield backend
                except (TargetLayerError, ConfigError) as error:
                    note = self._default_layer_note
                    if note and note not in getattr(error, "__notes__", ()):
                        error.add_note(note)  # a failure on a layer the user did not choose
                    raise

    def explain(self, x: Any, targets: TargetSpec = None) -> Explanation:
        """Explain a batch and return the maps with scores and diagnostics.

        Parameters
        ----------
        x
            The batch, normalized as the model expects, in the model's layout.
        targets
            ``None`` to explain each image's top class, one int for all images,
            one int per image (a sequence or an integer array), a target
            function ``f(outputs) -> (B,)`` (see :mod:`groupcam_core.targets`),
            or one int or target function per image (a list; see
            :mod:`groupcam_core.per_image`).

        Returns
        -------
        groupcam_core.Explanation
        """
        with self._lock:  # the default layer's trial and its steps back are one at a time
            while True:
                # While the default layer is on trial, a layer with gradients that are zero
                # everywhere (a ViT's final norm, whose head reads the class token only) is
                # refused like one on a branch the output does not use (an auxiliary head),
                # and the candidate before it is tried instead.
                on_trial = self._layers is None or bool(self._default_fallbacks)
                trial = refusing_zero_gradients.set(on_trial)
                try:
                    with self.using_backend(x, fast=self.fast) as backend:
                        explanation = explain_group_cam(
                            backend,
                            x,
                            targets=targets,
                            config=self.config,
                            batch_size=self.batch_size,
                        )
                except LayerNotConnectedError:
                    if not self._default_fallbacks:
                        raise
                    self._step_back_default_layer()
                    continue
                finally:
                    refusing_zero_gradients.reset(trial)
                self._default_fallbacks = []
                return explanation

    def _step_back_default_layer(self) -> None:
        """Explain the candidate before the default layer from now on (first explanation only)."""
        old = self.target_layer_name
        new = self._default_fallbacks.pop(0)
        logger.info(
            "default target layer %r: the output does not depend on it; trying %r", old, new
        )
        self._layers = (self._resolve_layer(new),)
        self._forget_backend()

    def _forget_backend(self) -> None:
        """Drop a backend kept for the old target layers (adapters that keep one override)."""

    def __call__(self, x: Any, targets: TargetSpec = None) -> np.ndarray:
        """Return the saliency maps only: numpy float32 ``(B, H, W)`` in [0, 1]."""
        return self.explain(x, targets).saliency


def _spatial_output_channels(output: Any, layout: Layout, rank: int) -> int | None:
    """The classes of a spatial model output of the input's ``rank`` (a segmentation
    model's), else ``None``.

    ``output`` is what the probe returned: an array or its shapes, an object with
    ``logits``, a mapping with ``"logits"``, or a tuple or list led by an array.
    """
    candidates = [output, getattr(output, "logits", None)]
    if isinstance(output, Mapping):
        candidates.append(output.get("logits"))
    if isinstance(output, (tuple, list)) and output:
        candidates.append(output[0])
    for candidate in candidates:
        shape = tuple(getattr(candidate, "shape", ()) or ())
        if len(shape) == rank and all(isinstance(side, int) for side in shape):
            return shape[1] if layout == "channels_first" else shape[-1]
    return None


logger = logging.getLogger("groupcam")

#: How many earlier candidates the default layer may step back through.
_MAX_FALLBACKS = 32


def _default_layer_note(name: str, calls: Sequence[LayerCall], rule: DefaultLayerRule) -> str:
    """What a failure on the default layer adds: which layer was chosen, and the others."""
    others = rule.candidates(calls)
    if rule.accepts is not None:
        how = "the last layer whose output the reshape_transform accepts"
    else:
        how = "the last spatial feature map after the last convolution"
    listed = ", ".join(f"{call.name!r} {call.shape}" for call in others[-6:] if call.name != name)
    return (
        f"groupcam: the target layer {name!r} was chosen by default ({how}); "
        f"other candidates: {listed or 'none'}. Pass target_layer= to choose another"
    )


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
