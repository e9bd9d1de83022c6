"""Group-CAM for Keras 3 models, on the TensorFlow, JAX and PyTorch backends."""

from __future__ import annotations

from typing import Any, Literal

import keras

from groupcam_core.config import GroupCAMConfig
from groupcam_core.errors import BackendError, ConfigError
from groupcam_core.explainer import ExplainerBase
from groupcam_core.fast import FastMode
from groupcam_core.protocol import Layout
from groupcam_core.targets import OutputSelector
from groupcam_core.transforms import FeatureTransform

from ._backend import KerasBackend, make_backend
from ._layers import Target, final_softmax, find_last_feature_layer, resolve_layer
from ._precision import fast_mode

__all__ = ["GroupCAM"]


class GroupCAM(ExplainerBase):
    """Group-CAM saliency maps for a Keras 3 image classifier.

    Parameters
    ----------
    model
        A ``keras.Model`` (Sequential, Functional or subclassed) taking a batch in
        ``keras.config.image_data_format()`` layout (channels-last by default)
        and returning ``(B, classes)`` scores.
    target_layer
        Where to explain the model: a layer's name (searched through nested
        models too), a path ``"outer/inner"`` for a layer inside a nested model,
        the layer object; the name, path or object of a non-layer operation of a
        functional graph (``x + y`` makes an ``Add`` operation, named ``"add"``,
        ``"add_1"``, ... by a global counter); ``"<layer>:input"`` for the tensor
        that layer receives (a spelling that does not depend on the counter, and
        the only one for a tensor made by ``x + y`` inside a subclassed model's
        ``call``); or ``None`` for the last spatial feature map at or after the
        last convolution, skipping pooling layers and nested models (found on
        the first call; see :func:`groupcam_core.explainer.pick_last_feature_layer`).
    groups, variant, batch_size
        As for :class:`groupcam_torch.GroupCAM`. Full chunks have ``batch_size``
        rows and a shorter last chunk is padded to the next power of two, so
        compiled functions are traced once per shape, never once per call.
    reshape_transform
        For a layer that does not output a 4-D map (a transformer block's
        ``(B, tokens, channels)``): a function from its output to one, such as
        ``groupcam_core.tokens_to_grid()``.
    output
        How to find the class scores when the model returns more than one
        tensor: a dict key, an attribute name, a list index or a callable. By
        default a one-entry dict's value or a list's first item.
    model_outputs
        ``"auto"`` (default): if the model's output layer applies softmax (a
        layer with ``activation="softmax"`` or a ``Softmax`` layer), it is
        switched off during the explanation, so that step 1 differentiates the
        raw logit as the paper does and the softmax is applied once; a softmax
        that cannot be seen (``keras.ops.softmax`` in a functional graph, a
        subclassed model) is detected from the outputs, with a warning.
        ``"logits"``: use outputs as they are and apply softmax.
        ``"probabilities"``: the model outputs probabilities that cannot be
        switched off; use them as they are.
    fast
        ``True`` runs the masked forward passes in the fastest mode measured for
        the Keras backend and device (``cam.fast_mode`` says which): every
        float32 layer but the output layer under the ``"mixed_bfloat16"``
        policy for the duration of the passes (TensorFlow on CPUs with native
        bfloat16; GPUs, ``"mixed_float16"`` before compute capability 8);
        elsewhere the passes stay exact. The gradient pass and groupcam's
        arithmetic stay float32, and every layer's policy is restored.
        Default ``False``.
    **settings
        Other fields of :class:`groupcam_core.GroupCAMConfig`.
    """

    def __init__(
        self,
        model: keras.Model,
        target_layer: str | keras.Operation | list[str | keras.Operation] | None = None,
        groups: int = 32,
        variant: str | GroupCAMConfig = "paper",
        batch_size: int | None = None,
        *,
        model_outputs: Literal["auto", "logits", "probabilities"] = "auto",
        output: OutputSelector = None,
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        **settings: Any,
    ) -> None:
        if not isinstance(model, keras.Model):
            raise BackendError(
                f"groupcam_keras.GroupCAM needs a keras.Model, got {type(model).__name__}"
            )
        if model_outputs not in ("auto", "logits", "probabilities"):
            raise ConfigError(
                f"model_outputs must be 'auto', 'logits' or 'probabilities', got {model_outputs!r}"
            )
        super().__init__(model, groups, variant, batch_size, settings, reshape_transform, fast)
        self.model = model
        self.output = output
        self.model_outputs = model_outputs
        self.softmax_layer = final_softmax(model) if model_outputs == "auto" else None
        self._layers: tuple[Target, ...] | None = None
        if target_layer is not None:
            requested = target_layer if isinstance(target_layer, (list, tuple)) else [target_layer]
            if not requested:
                raise ConfigError("target_layer is an empty list; name at least one layer")
            self._layers = tuple(resolve_layer(model, target) for target in requested)
        self._backend: KerasBackend | None = None

    @property
    def input_layout(self) -> Layout:
        """``keras.config.image_data_format()``: the layout Keras models take."""
        layout: Layout = keras.config.image_data_format()
        return layout

    @property
    def target_layer_name(self) -> str | None:
        """Path(s) of the explained layer(s) or operation(s) (``None`` until found)."""
        return ", ".join(target.path for target in self._layers) if self._layers else None

    def _backend_for(self, x: Any) -> KerasBackend:
        if self._layers is None:
            probe = make_backend(self.model, self.model, "", None, False, self.output)
            batch = probe.prepare_input(x)
            if batch.ndim == 4 and batch.shape[0] > 0:
                path = find_last_feature_layer(self.model, lambda: probe.probe(batch))
                self._layers = (resolve_layer(self.model, path),)
        if self._backend is None or self._layers is None:
            backend = make_backend(
                self.model,
                list(self._layers or (Target("", self.model),)),
                "",
                self.softmax_layer,
                self.model_outputs == "probabilities",
                self.output,
            )
            if self._layers is None:
                return backend
            self._backend = backend
        return self._backend

    def _fast_mode(self, x: Any = None) -> FastMode:
        return fast_mode()

    def __repr__(self) -> str:
        layer = self.target_layer_name or "<last feature layer>"
        return (
            f"GroupCAM({self.model.name}, target_layer={layer!r}, "
            f"groups={self.config.groups}, backend={keras.backend.backend()!r}"
            f"{', fast=True' if self.fast else ''})"
        )
