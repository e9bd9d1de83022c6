"""Group-CAM for Keras 3 models, on the TensorFlow, JAX and PyTorch backends."""

from __future__ import annotations

from typing import Any, Literal

import keras

from groupcam_core.config import GroupCAMConfig
from groupcam_core.fast import FastMode
from groupcam_core.kit import MODEL_OUTPUTS, ExplainerBase, LayerCall, OutputSelector, check_model
from groupcam_core.protocol import Layout
from groupcam_core.transforms import FeatureTransform

from .backend import KerasBackend, make_backend
from .fast import fast_mode
from .layers import Target, final_activation, record_layer_calls, resolve_layer

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
        subclassed model) is detected from the outputs, with a warning. A
        final ``activation="sigmoid"`` (binary and multi-label classifiers) is
        switched off the same way and each class is scored by its sigmoid.
        ``"logits"``: use outputs as they are and apply softmax.
        ``"probabilities"``: the model outputs probabilities that cannot be
        switched off; use them as they are.
        ``"sigmoid"``: the outputs are logits of independent classes; score
        each class by its sigmoid.
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

    model_outputs_choices = ("auto", *MODEL_OUTPUTS)

    def __init__(
        self,
        model: keras.Model,
        target_layer: str | keras.Operation | list[str | keras.Operation] | None = None,
        groups: int = 32,
        variant: str | GroupCAMConfig = "paper",
        batch_size: int | None = None,
        *,
        model_outputs: Literal["auto", "logits", "probabilities", "sigmoid"] = "auto",
        output: OutputSelector = None,
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        **settings: Any,
    ) -> None:
        check_model(model, keras.Model, "groupcam_keras.GroupCAM", "a keras.Model")
        super().__init__(
            model, groups, variant, batch_size, settings, reshape_transform, fast, model_outputs
        )
        self.model = model
        self.output = output
        self.activation_layer, self.scored_as = (
            final_activation(model) if model_outputs == "auto" else (None, self.model_outputs)
        )
        self._backend: KerasBackend | None = None
        self._set_target_layers(target_layer)

    @property
    def input_layout(self) -> Layout:
        """``keras.config.image_data_format()``: the layout Keras models take."""
        layout: Layout = keras.config.image_data_format()
        return layout

    def _resolve_layer(self, target: str | keras.Operation) -> Target:
        return resolve_layer(self.model, target)

    def _layer_name(self, layer: Target) -> str:
        return layer.path

    def _probe_backend(self) -> KerasBackend:
        return make_backend(self.model, self.model, "", None, "logits", self.output)

    def _probe_layer_calls(self, probe: KerasBackend, batch: Any) -> tuple[list[LayerCall], Any]:
        return record_layer_calls(self.model, lambda: probe.probe(batch))

    def _backend_for(self, x: Any) -> KerasBackend:
        layers = self._layers_for(x)
        if self._backend is not None and layers is not None:
            return self._backend
        backend = make_backend(
            self.model,
            list(layers or (Target("", self.model),)),
            "",
            self.activation_layer,
            self.scored_as,
            self.output,
        )
        if layers is not None:
            self._backend = backend
        return backend

    def _fast_mode(self, x: Any = None) -> FastMode:
        return fast_mode()

    def _forget_backend(self) -> None:
        self._backend = None

    def _model_description(self) -> str:
        return str(self.model.name)

    def _repr_settings(self) -> str:
        return f", backend={keras.backend.backend()!r}"
