"""The adapter kit: what every framework adapter builds its ``GroupCAM`` from.

An adapter (``groupcam_torch``, ``groupcam_keras``, ``groupcam_jax``) subclasses
:class:`ExplainerBase` and implements a :class:`~groupcam_core.protocol.Backend`;
everything the three would otherwise repeat is here, written once: the checks of
the constructor's arguments, the target-layer list and its default (one
:class:`LayerCallRecorder` and one rule, :func:`pick_last_feature_layer`), the
error for an unknown layer, the conversion and checks of a user's batch, and
the selection of the class scores in what a model returns. docs/architecture.md
says where a new adapter goes.
"""

from ..forward import default_batch_size
from ..model_outputs import OutputSelector, select_class_scores
from .explainer import MODEL_OUTPUTS, ExplainerBase, as_backend, check_model, preferred_batch_size
from .inputs import cast_input, floating_batch
from .layers import (
    DefaultLayerRule,
    LayerCall,
    LayerCallRecorder,
    LayerKind,
    is_spatial_feature_map,
    pick_last_feature_layer,
    requested_layers,
    unknown_layer_error,
)

__all__ = [
    "MODEL_OUTPUTS",
    "DefaultLayerRule",
    "ExplainerBase",
    "LayerCall",
    "LayerCallRecorder",
    "LayerKind",
    "OutputSelector",
    "as_backend",
    "cast_input",
    "check_model",
    "default_batch_size",
    "floating_batch",
    "is_spatial_feature_map",
    "pick_last_feature_layer",
    "preferred_batch_size",
    "requested_layers",
    "select_class_scores",
    "unknown_layer_error",
]
