"""Group-CAM for JAX models: Flax linen, Flax NNX, or any function split in two."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from groupcam_core.arguments import one_of
from groupcam_core.config import GroupCAMConfig
from groupcam_core.errors import BackendError
from groupcam_core.fast import FastMode
from groupcam_core.kit import ExplainerBase, LayerCall, OutputSelector
from groupcam_core.model_outputs import ModelOutputs
from groupcam_core.protocol import Layout
from groupcam_core.transforms import FeatureTransform

from .backend import JaxBackend
from .fast import fast_mode
from .layers import record_layer_calls
from .models import NO_PARAMS, FunctionPair, LinenModel, ModelWayIn, NnxModel

__all__ = ["GroupCAM"]


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
        4-D feature map in the same layout as the input; ``(params, x) ->
        activations`` with ``params=``.
    head_fn
        ``activations -> scores``: the rest of the network;
        ``(params, activations) -> scores`` with ``params=``.
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
        ``"logits"`` (default), ``"probabilities"`` if the model already
        applies softmax, or ``"sigmoid"`` for independent classes (a binary
        classifier with one logit, a multi-label classifier): each class is
        then scored by its sigmoid. A single logit with ``"logits"`` is refused.
    reshape_transform
        A function from the target layer's output to a feature map in
        ``layout`` (for a transformer's tokens: ``groupcam_core.tokens_to_grid()``).
    fast
        ``True`` runs the masked forward passes with the variables and the input
        in bfloat16 (float16 on GPUs of compute capability 7.x) up to the target
        layer and in float32 after it, where that was measured faster: on GPUs
        and TPUs. On a CPU (see docs/benchmarks.md) and for
        ``GroupCAM(features_fn, head_fn)`` (the functions hold their own
        parameters) the passes stay exact; ``cam.fast_mode`` says which. The
        gradient pass and groupcam's arithmetic stay float32. Default ``False``.
    params
        The functional form: any pytree of arrays, passed as the first argument
        of both functions at every call (set ``cam.params`` to explain with new
        values, in a training loop say). Without it, the functions close over
        their arrays, and those are baked into the compiled passes when first
        traced: change them and this explainer keeps the old values (make a new
        ``GroupCAM``, or use ``params=``).
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
        params: Any = NO_PARAMS,
        **settings: Any,
    ) -> None:
        if way_in is None:
            if features_fn is None or head_fn is None:
                raise BackendError(
                    "GroupCAM(features_fn, head_fn) needs both functions; for Flax models use "
                    "GroupCAM.from_linen(module, variables) or GroupCAM.from_nnx(model)"
                )
            way_in = FunctionPair(features_fn, head_fn, params)
        elif features_fn is not None or head_fn is not None:
            raise BackendError("pass either features_fn and head_fn, or way_in, not both")
        elif params is not NO_PARAMS:
            raise BackendError("params= goes with features_fn and head_fn, not with way_in")
        lock = way_in.lock_key()
        super().__init__(
            lock, groups, variant, batch_size, settings, reshape_transform, fast, model_outputs
        )
        self.way_in = way_in
        self.layout: Layout = one_of(layout, "layout", ("channels_last", "channels_first"))  # type: ignore[assignment]
        self.output = output
        self._backend: JaxBackend | None = None
        self._variables: tuple[Any, Any] = ((), ())  # the way in's (structure key, variables)
        self._set_target_layers(target_layer, is_one=_is_path_tuple)

    @property
    def params(self) -> Any:
        """The ``params`` of ``GroupCAM(features_fn, head_fn, params=...)``; set it to
        explain with new values (the compiled passes take them as arguments)."""
        if not isinstance(self.way_in, FunctionPair) or not self.way_in.functional:
            raise BackendError("this explainer was not made with params= (the functional form)")
        return self.way_in.params

    @params.setter
    def params(self, value: Any) -> None:
        if not isinstance(self.way_in, FunctionPair) or not self.way_in.functional:
            raise BackendError("this explainer was not made with params= (the functional form)")
        if value is NO_PARAMS:
            raise BackendError("params must be a pytree of arrays, not None")
        self.way_in.params = value

    @classmethod
    def from_linen(
        cls,
        module: Any,
        variables: Any,
        target_layer: str | tuple[str, ...] | None = None,
        *,
        method: str | Callable[..., Any] | None = None,
        apply_kwargs: dict[str, Any] | None = None,
        **options: Any,
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
        **options
            Any other argument of :class:`GroupCAM` (``groups``, ``variant``,
            ``batch_size``, ``layout``, ``output``, ``model_outputs``,
            ``reshape_transform``, ``fast``, fields of the configuration).
        """
        way_in = LinenModel(module, variables, method, apply_kwargs)
        return cls(way_in=way_in, target_layer=target_layer, **options)

    @classmethod
    def from_nnx(
        cls,
        model: Any,
        target_layer: Any = None,
        **options: Any,
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
        **options
            Any other argument of :class:`GroupCAM`, as for :meth:`from_linen`.
        """
        return cls(way_in=NnxModel(model), target_layer=target_layer, **options)

    @property
    def input_layout(self) -> Layout:
        """The ``layout`` given: the layout of the input and of the feature map."""
        return self.layout

    def _resolve_layer(self, target: Any) -> str:
        return self.way_in.resolve(target, self.layout)

    def _layer_name(self, layer: str) -> str:
        return layer

    def _probe_backend(self) -> JaxBackend:
        return self._make_backend(("",))

    def _probe_layer_calls(self, probe: JaxBackend, batch: Any) -> tuple[list[LayerCall], Any]:
        record = record_layer_calls(self.way_in, probe.variables, batch, self.layout)
        return list(record.finished.values()), record.output

    def _backend_for(self, x: Any) -> JaxBackend:
        self._variables = self.way_in.current_variables()
        key, variables = self._variables
        backend = self._backend
        if backend is not None and _same(backend.structure_key, key):
            backend.variables = variables
            return backend
        layers = self._layers_for(x)
        if layers is None:
            return self._probe_backend()  # the core reports the bad input
        self._backend = self._make_backend(layers)
        return self._backend

    def _forget_backend(self) -> None:
        self._backend = None

    def _make_backend(self, layer_names: tuple[str, ...]) -> JaxBackend:
        key, variables = self._variables
        return JaxBackend(
            self.way_in,
            key,
            variables,
            layer_names,
            self.layout,
            self.output,
            self.model_outputs,
        )

    def _fast_mode(self, x: Any = None) -> FastMode:
        if isinstance(self.way_in, FunctionPair):
            return FastMode(reason="plain functions hold their own parameters: exact passes")
        return fast_mode()

    def _model_description(self) -> str:
        return self.way_in.description


def _is_path_tuple(target: tuple[Any, ...]) -> bool:
    """``("backbone", "stage4")`` is one path; ``("a/b", "c/d")`` or modules are several layers."""
    return all(isinstance(part, (str, int)) and "/" not in str(part) for part in target)


def _same(old: Any, new: Any) -> bool:
    try:
        return bool(old == new)
    except Exception:  # a structure key that cannot be compared is a new structure
        return False
