"""Group-CAM for JAX models: Flax linen, Flax NNX, or any function split in two."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from groupcam_core.config import GroupCAMConfig
from groupcam_core.errors import BackendError, ConfigError
from groupcam_core.explainer import ExplainerBase, pick_last_feature_layer
from groupcam_core.fast import FastMode
from groupcam_core.protocol import Layout
from groupcam_core.targets import OutputSelector
from groupcam_core.transforms import FeatureTransform

from ._backend import JaxBackend, device_fast_mode, record_layer_calls
from ._models import FunctionPair, LinenModel, ModelWayIn, NnxModel

__all__ = ["GroupCAM"]

ModelOutputs = Literal["logits", "probabilities"]


class GroupCAM(ExplainerBase):
    """Group-CAM saliency maps for a JAX image classifier.

    ``GroupCAM(features_fn, head_fn)`` explains any JAX model split in two at the
    target layer: ``head_fn(features_fn(x))`` must give the ``(B, classes)``
    scores. Flax users need not split anything: see :meth:`from_linen` and
    :meth:`from_nnx`.

    The gradient pass and the masked passes are jit-compiled. Full chunks have
    ``batch_size`` rows and a shorter last chunk is padded to the next power of
    two, so a compiled function is traced once per shape, not once per call.

    Parameters
    ----------
    features_fn
        ``x -> activations``: the network up to the target layer, returning a
        4-D feature map in the same layout as the input.
    head_fn
        ``activations -> scores``: the rest of the network.
    groups, variant, batch_size
        As for :class:`groupcam_torch.GroupCAM` (32 groups, the ``"paper"``
        preset; chunks of 8 on a CPU and 64 on an accelerator by default).
    layout
        ``"channels_last"`` (Flax's convention, the default) or
        ``"channels_first"``: the layout of the input and of the feature map.
    output
        How to find the class scores if the model returns more than one array:
        a key or attribute name, an index, or a callable.
    model_outputs
        ``"logits"`` (default) or ``"probabilities"`` if the model already
        applies softmax.
    reshape_transform
        A function from the target layer's output to a feature map in
        ``layout`` (for a transformer's tokens: ``groupcam_core.tokens_to_grid()``).
    fast
        ``True`` runs the masked forward passes with the variables and the input
        in bfloat16 (float16 on GPUs of compute capability 7.x) up to the target
        layer and in float32 after it, where that was measured faster: on GPUs
        and TPUs. On a CPU (XLA ran bfloat16 no faster) and for
        ``GroupCAM(features_fn, head_fn)`` (the functions hold their own
        parameters) the passes stay exact; ``cam.fast_mode`` says which. The
        gradient pass and groupcam's arithmetic stay float32. Default ``False``.
    way_in
        Instead of the two functions: any object implementing
        :class:`groupcam_jax.ModelWayIn` (what :meth:`from_linen` and
        :meth:`from_nnx` build), to explain other kinds of JAX models.
    target_layer
        With ``way_in``: the layer to explain, as the way in names layers
        (``None`` for the automatic choice), or a list of layers, explained
        from one gradient pass and fused (``layer_fusion``).
    **settings
        Other fields of :class:`groupcam_core.GroupCAMConfig`.

    Notes
    -----
    Calls from several threads on one model are serialized (one lock per
    model, shared by every explainer of it).
    """

    def __init__(
        self,
        features_fn: Callable[[Any], Any] | None = None,
        head_fn: Callable[[Any], Any] | None = None,
        groups: int = 32,
        variant: str | GroupCAMConfig = "paper",
        batch_size: int | None = None,
        *,
        way_in: ModelWayIn | None = None,
        target_layer: Any = None,
        layout: Layout = "channels_last",
        output: OutputSelector = None,
        model_outputs: ModelOutputs = "logits",
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        **settings: Any,
    ) -> None:
        if way_in is None:
            if features_fn is None or head_fn is None:
                raise BackendError(
                    "GroupCAM(features_fn, head_fn) needs both functions; for Flax models use "
                    "GroupCAM.from_linen(module, variables) or GroupCAM.from_nnx(model)"
                )
            way_in = FunctionPair(features_fn, head_fn)
        elif features_fn is not None or head_fn is not None:
            raise BackendError("pass either features_fn and head_fn, or way_in, not both")
        if layout not in ("channels_last", "channels_first"):
            raise ConfigError(f"layout must be 'channels_last' or 'channels_first', got {layout!r}")
        if model_outputs not in ("logits", "probabilities"):
            raise ConfigError(
                f"model_outputs must be 'logits' or 'probabilities', got {model_outputs!r}"
            )
        super().__init__(
            way_in.lock_key(), groups, variant, batch_size, settings, reshape_transform, fast
        )
        self.way_in = way_in
        self.layout: Layout = layout
        self.output = output
        self.model_outputs = model_outputs
        self._layer_names: tuple[str, ...] | None = None
        if target_layer is not None:
            several = isinstance(target_layer, list) or (
                isinstance(target_layer, tuple) and not _is_path_tuple(target_layer)
            )
            targets = list(target_layer) if several else [target_layer]
            if not targets:
                raise ConfigError("target_layer is an empty list; name at least one layer")
            self._layer_names = tuple(way_in.resolve(target, layout) for target in targets)
        self._backend: JaxBackend | None = None

    @classmethod
    def from_linen(
        cls,
        module: Any,
        variables: Any,
        target_layer: str | tuple[str, ...] | None = None,
        groups: int = 32,
        variant: str | GroupCAMConfig = "paper",
        batch_size: int | None = None,
        *,
        method: str | Callable[..., Any] | None = None,
        apply_kwargs: dict[str, Any] | None = None,
        layout: Layout = "channels_last",
        output: OutputSelector = None,
        model_outputs: ModelOutputs = "logits",
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        **settings: Any,
    ) -> GroupCAM:
        """Explain an unmodified ``flax.linen`` module.

        Parameters
        ----------
        module
            The module (unbound), as defined by the user.
        variables
            Its variables, as returned by ``module.init`` (``params`` and, for
            BatchNorm, ``batch_stats``). They are read, never changed.
        target_layer
            Path of the submodule to explain, as in the variables tree:
            ``"Conv_2"``, ``"backbone/stage4"`` (dots work too), or ``None`` for
            the last submodule that outputs a spatial feature map after the last
            convolution. The module's code needs no ``sow`` or ``perturb``: the
            layer is tapped with ``flax.linen.intercept_methods``. A path that
            is not in the variables tree (a submodule without parameters, or a
            misspelling) is looked up by tracing the module abstractly on a
            probe input; a misspelling is reported here, with close matches.
        method, apply_kwargs
            Passed to ``module.apply`` (for example ``apply_kwargs={"train":
            False}``). Whatever they say, every ``BatchNorm`` uses its running
            averages and every ``Dropout`` is deterministic.
        groups, variant, batch_size, layout, output, model_outputs, fast, **settings
            As for :class:`GroupCAM`.
        """
        return cls(
            way_in=LinenModel(module, variables, method, apply_kwargs),
            target_layer=target_layer,
            groups=groups,
            variant=variant,
            batch_size=batch_size,
            layout=layout,
            output=output,
            model_outputs=model_outputs,
            reshape_transform=reshape_transform,
            fast=fast,
            **settings,
        )

    @classmethod
    def from_nnx(
        cls,
        model: Any,
        target_layer: Any = None,
        groups: int = 32,
        variant: str | GroupCAMConfig = "paper",
        batch_size: int | None = None,
        *,
        layout: Layout = "channels_last",
        output: OutputSelector = None,
        model_outputs: ModelOutputs = "logits",
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        **settings: Any,
    ) -> GroupCAM:
        """Explain a ``flax.nnx`` module.

        Each explanation reads the module's current state and runs a private
        copy of it in evaluation mode (BatchNorm on running averages, Dropout
        off): the module itself, its train/eval flags and its state stay
        exactly as they were.

        Parameters
        ----------
        model
            The ``nnx.Module``.
        target_layer
            The submodule to explain: its path (``"backbone/stage4"``,
            ``"layers/2"``; dots work too), the submodule object, or ``None``
            for the last submodule that outputs a spatial feature map after the
            last convolution.
        groups, variant, batch_size, layout, output, model_outputs, fast, **settings
            As for :class:`GroupCAM`.
        """
        return cls(
            way_in=NnxModel(model),
            target_layer=target_layer,
            groups=groups,
            variant=variant,
            batch_size=batch_size,
            layout=layout,
            output=output,
            model_outputs=model_outputs,
            reshape_transform=reshape_transform,
            fast=fast,
            **settings,
        )

    @property
    def input_layout(self) -> Layout:
        """The ``layout`` given: the layout of the input and of the feature map."""
        return self.layout

    @property
    def target_layer_name(self) -> str | None:
        """Path(s) of the explained layer(s) (``None`` until found automatically)."""
        return ", ".join(self._layer_names) if self._layer_names else None

    def _backend_for(self, x: Any) -> JaxBackend:
        key, variables = self.way_in.current_variables()
        backend = self._backend
        if backend is not None and _same(backend.structure_key, key):
            backend.variables = variables
            return backend
        if self._layer_names is None:
            probe = self._make_backend(key, variables, ("",))
            batch = probe.prepare_input(x)
            if batch.ndim != 4 or 0 in batch.shape:
                return probe  # the core reports the bad input
            record = record_layer_calls(self.way_in, variables, batch, self.layout)
            self._layer_names = (pick_last_feature_layer(list(record.finished.values())),)
        self._backend = self._make_backend(key, variables, self._layer_names)
        return self._backend

    def _make_backend(self, key: Any, variables: Any, layer_names: tuple[str, ...]) -> JaxBackend:
        return JaxBackend(
            self.way_in,
            key,
            variables,
            layer_names,
            self.layout,
            self.output,
            self.model_outputs == "probabilities",
        )

    def _fast_mode(self, x: Any = None) -> FastMode:
        if isinstance(self.way_in, FunctionPair):
            return FastMode(reason="plain functions hold their own parameters: exact passes")
        return device_fast_mode()

    def __repr__(self) -> str:
        layer = self.target_layer_name or "<last feature layer>"
        return (
            f"GroupCAM({self.way_in.description}, target_layer={layer!r}, "
            f"groups={self.config.groups}{', fast=True' if self.fast else ''})"
        )


def _is_path_tuple(target: tuple[Any, ...]) -> bool:
    """``("backbone", "stage4")`` is one path; ``("a/b", "c/d")`` or modules are several layers."""
    return all(isinstance(part, (str, int)) and "/" not in str(part) for part in target)


def _same(old: Any, new: Any) -> bool:
    try:
        return bool(old == new)
    except Exception:  # a structure key that cannot be compared is a new structure
        return False
