"""The result of an explanation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import GroupCAMConfig

__all__ = ["PER_IMAGE_ARRAYS", "Explanation"]

#: The fields of an :class:`Explanation` that hold one row per image, always set
#: (``target_scores`` and ``layer_saliency`` are per image too, but optional).
PER_IMAGE_ARRAYS: tuple[str, ...] = (
    "saliency",
    "targets",
    "target_probabilities",
    "baseline_scores",
    "group_scores",
    "skipped_groups",
    "degenerate",
)


@dataclass(frozen=True)
class Explanation:
    """Group-CAM saliency maps for a batch, with what produced them.

    Attributes
    ----------
    saliency
        float32 ``(B, H, W)``, each map in [0, 1]. All zeros where ``degenerate``.
    targets
        int64 ``(B,)``: the class each map explains; -1 for a target function.
    target_probabilities
        float32 ``(B,)``: the model's probability of that class on the clean
        input; NaN for a target function.
    baseline_scores
        float32 ``(B,)``: the score on the blurred input (the target class's
        probability, or the target function's value).
    group_scores
        float32 ``(B, G)``: score on each group's masked input minus the
        baseline (after the score ReLU when the configuration asks for it); 0 for
        skipped groups. With L target layers, ``(B, L * G)``: the layers' groups
        one after the other, in the order of ``layer``.
    skipped_groups
        bool ``(B, G)`` (or ``(B, L * G)``): groups whose map was constant and
        got no forward pass.
    degenerate
        bool ``(B,)``: the merged map was constant, so no explanation could be
        formed; the saliency map is all zeros there.
    config
        The :class:`~groupcam_core.GroupCAMConfig` used.
    layer
        Name of the explained layer, when the adapter knows it; several layers'
        names are joined by ``", "``.
    target_scores
        float32 ``(B,)``: the score on the clean input: the class's
        probability, or the target function's value.
    objective
        ``"class"`` for class targets, else the target function's name.
    layer_saliency
        With several target layers, each layer's own map (``(B, H, W)``, in
        [0, 1]) by name, before fusion; ``None`` for one layer.
    """

    saliency: np.ndarray
    targets: np.ndarray
    target_probabilities: np.ndarray
    baseline_scores: np.ndarray
    group_scores: np.ndarray
    skipped_groups: np.ndarray
    degenerate: np.ndarray
    config: GroupCAMConfig
    layer: str | None = None
    target_scores: np.ndarray | None = None
    objective: str = "class"
    layer_saliency: dict[str, np.ndarray] | None = None

    @property
    def forward_passes(self) -> np.ndarray:
        """Passes through the model spent on each image (int64 ``(B,)``).

        The gradient pass (one forward and one backward) counts as one, plus the
        blurred baseline and one masked pass per group that was not skipped:
        ``G + 2`` at most. :attr:`MethodResult.forward_passes
        <groupcam_core.methods.MethodResult.forward_passes>` counts the same way
        for every method.
        """
        return (~self.skipped_groups).sum(axis=1).astype(np.int64) + 2

    def __len__(self) -> int:
        return int(self.saliency.shape[0])
