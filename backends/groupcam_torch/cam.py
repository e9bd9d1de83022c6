"""Group-CAM for PyTorch models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from groupcam_core.config import GroupCAMConfig
from groupcam_core.fast import FastMode
from groupcam_core.kit import ExplainerBase, LayerCall, OutputSelector, check_model
from groupcam_core.model_outputs import ModelOutputs
from groupcam_core.protocol import Layout
from groupcam_core.transforms import FeatureTransform

from .backend import TorchBackend, model_device_and_dtype
from .fast import Autocast, fast_mode
from .layers import record_layer_calls, resolve_layer

__all__ = ["GroupCAM", "evaluation_mode"]


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own mode.

    Each module's ``training`` flag is restored individually, so mixed states
    (say, frozen BatchNorm layers in eval inside a model in training) come back
    exactly as they were, even when an exception is raised.
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, training in modes:
            module.training = training


class GroupCAM(ExplainerBase):
    """Group-CAM saliency maps for a PyTorch image classifier.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` taking a ``(B, C, H, W)`` batch and returning class
        scores ``(B, classes)`` (or a tuple, a dict, or an object with ``.logits``
        holding them; see ``output``).
    target_layer
        The layer to explain: its dotted name as in ``model.named_modules()``
        (``"layer4"``, ``"features.28"``), the module itself, or ``None`` for the
        last module that outputs a spatial feature map after the last
        convolution (found on the first call; pooling layers are passed over).
        If the module runs several times in one forward pass, its last call is
        explained. A list of layers explains each from one gradient pass and
        fuses their maps (``layer_fusion``, see docs/algorithm.md);
        ``explain()`` keeps each layer's map in ``layer_saliency``.
    groups
        Number of channel groups G (32 in the paper).
    variant
        ``"paper"`` (default) or ``"official-head"``; see docs/algorithm.md.
    batch_size
        Rows per masked forward pass, over all images and groups together.
        ``None`` picks a default for the model's device type (4 on CPU, 64 on
        CUDA).
    output
        How to read class scores from the model's return value when it is not a
        tensor: a dict key or attribute name, a tuple index, or a callable.
        By default a tensor is used as is, then ``.logits``, then a dict's
        ``"logits"`` entry, then a tuple's first element.
    model_outputs
        ``"logits"`` (default) or ``"probabilities"`` if the model already ends in
        a softmax; probabilities are then used as they are. ``"sigmoid"`` for
        independent classes (a binary classifier with one logit, a multi-label
        classifier): each class is scored by its sigmoid. A single logit with
        ``"logits"`` is refused.
    reshape_transform
        For a layer that does not output a ``(B, K, u, v)`` map (a transformer
        block's ``(B, tokens, channels)``): a function from its output to one,
        such as ``groupcam_core.tokens_to_grid()``.
    fast
        ``True`` runs the masked forward passes in the fastest mode measured on
        the model's device (``cam.fast_mode`` says which): bfloat16 autocast with
        channels-last inputs on CPUs with native bfloat16 and on CUDA from
        compute capability 8, float16 on 7.x; the network after the target
        layer (the classifier head) stays float32. Elsewhere the passes stay
        exact. The gradient pass and groupcam's arithmetic stay float32. Maps
        rank pixels as the exact ones do (Spearman above 0.99 in
        docs/benchmarks.md) at 2 to 3 times the speed. Default ``False``.
    **settings
        Other fields of :class:`groupcam_core.GroupCAMConfig` to override, e.g.
        ``percentile=None`` or ``blur_sigma=25.0``.

    Notes
    -----
    The model is left as it was: each submodule's train/eval mode is restored,
    hooks are removed (also when an exception is raised), parameters' ``.grad``
    and ``requires_grad`` are untouched. Calls inside ``torch.no_grad()``,
    ``torch.inference_mode()`` and ``torch.autocast(...)`` work; under autocast
    the model's passes run in the autocast dtype while groupcam's own arithmetic
    stays in float32. Calls from several threads on one model are serialized
    (one lock per model, shared by every explainer of it).

    Examples
    --------
    >>> cam = GroupCAM(model, target_layer="layer4")        # doctest: +SKIP
    >>> maps = cam(images)                # numpy float32 (B, H, W) in [0, 1]
    >>> result = cam.explain(images, targets=[281, 281])    # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | Sequence[str | nn.Module] | None = None,
        groups: int = 32,
        variant: str | GroupCAMConfig = "paper",
        batch_size: int | None = None,
        *,
        output: OutputSelector = None,
        model_outputs: ModelOutputs = "logits",
        reshape_transform: FeatureTransform | None = None,
        fast: bool = False,
        **settings: Any,
    ) -> None:
        check_model(model, nn.Module, "groupcam_torch.GroupCAM", "a torch.nn.Module")
        super().__init__(
            model, groups, variant, batch_size, settings, reshape_transform, fast, model_outputs
        )
        self.model = model
        self.output = output
        self._autocast: Autocast | None = None
        self._call_counts: dict[str, int] = {}  # target layer calls per forward pass
        self._set_target_layers(target_layer)

    @property
    def input_layout(self) -> Layout:
        """``"channels_first"``: PyTorch models take ``(B, C, H, W)`` batches."""
        return "channels_first"

    def _resolve_layer(self, target: str | nn.Module) -> tuple[str, nn.Module]:
        return resolve_layer(self.model, target)

    def _layer_name(self, layer: tuple[str, nn.Module]) -> str:
        return layer[0]

    def _make_backend(self, layers: Sequence[tuple[str, nn.Module]]) -> TorchBackend:
        return TorchBackend(
            self.model,
            [layer for _, layer in layers],
            [name for name, _ in layers],
            output=self.output,
            model_outputs=self.model_outputs,
            autocast=self._autocast,
            call_counts=self._call_counts,
        )

    def _probe_backend(self) -> TorchBackend:
        return self._make_backend([("", self.model)])

    def _probe_layer_calls(
        self, probe: TorchBackend, batch: torch.Tensor
    ) -> tuple[list[LayerCall], Any]:
        return record_layer_calls(self.model, lambda: probe.run_model(batch))

    def _backend_for(self, x: Any) -> TorchBackend:
        return self._make_backend(self._layers_for(x) or [("", self.model)])

    def _fast_mode(self, x: Any = None) -> FastMode:
        return fast_mode(*model_device_and_dtype(self.model))

    @contextmanager
    def _fast_passes(self, backend: TorchBackend, mode: FastMode) -> Iterator[None]:  # type: ignore[override]
        """``backend`` runs its masked passes in ``mode`` while the block runs; its mode
        before is put back after, also after an error (a model that fails in
        low precision), so a timed exact run, and the passes after an exact
        choice, are exact."""
        previous = backend.fast
        backend.fast = mode
        try:
            if mode.dtype is None:
                yield
                return
            # An autocast block around the whole explanation, switched off, keeps
            # autocast's cache of low-precision weights alive from one masked chunk to
            # the next (it is emptied when the outermost autocast block ends).
            with torch.autocast(backend.device.type, enabled=False):
                yield
        finally:
            backend.fast = previous

    @contextmanager
    def _explaining(self) -> Iterator[None]:
        device, _ = model_device_and_dtype(self.model)
        self._autocast = Autocast.ambient(device.type)
        try:
            with evaluation_mode(self.model), self._autocast.core_arithmetic():
                yield
        finally:
            self._autocast = None

    def _repr_settings(self) -> str:
        return f", batch_size={self.batch_size}"
