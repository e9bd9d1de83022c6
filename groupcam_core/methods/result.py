"""What every comparison method returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ops
from ..batches import PreparedBatch

__all__ = ["MethodResult", "finish"]


@dataclass(frozen=True)
class MethodResult:
    """Saliency maps of one method for a batch, with what they cost.

    Attributes
    ----------
    saliency
        float32 ``(B, H, W)``, each map in [0, 1]; all zeros where ``degenerate``.
    targets
        int64 ``(B,)``: the class each map explains; -1 for a target function.
    forward_passes
        int64 ``(B,)``: passes through the model for each image's map, counting
        the gradient pass (one forward and one backward) or the clean pass as
        one, as :attr:`Explanation.forward_passes
        <groupcam_core.Explanation.forward_passes>` does. Rows added only to pad
        a chunk are not counted. Grad-CAM: 1; Score-CAM: 1 + its non-constant
        channels (K at most); RISE: 1 + masks; Group-CAM: 2 + its non-skipped
        groups (G + 2 at most).
    degenerate
        bool ``(B,)``: the map was constant before normalization (returned as zeros).
    method
        The method's name, one of :data:`~groupcam_core.methods.METHODS`.
    """

    saliency: np.ndarray
    targets: np.ndarray
    forward_passes: np.ndarray
    degenerate: np.ndarray
    method: str

    @property
    def total_forward_passes(self) -> int:
        """Passes through the model for the whole batch."""
        return int(self.forward_passes.sum())

    def __len__(self) -> int:
        return int(self.saliency.shape[0])


def finish(
    batch: PreparedBatch, maps: Any, targets: Any, passes: np.ndarray, method: str
) -> MethodResult:
    """The ending shared by all methods: min-max normalize and copy to the host."""
    saliency, degenerate = ops.min_max_normalize(maps, batch.xp, batch.spatial_axes)
    backend = batch.backend
    return MethodResult(
        saliency=backend.to_numpy(saliency).astype(np.float32),
        targets=(
            np.full(batch.size, -1, dtype=np.int64)
            if targets is None
            else backend.to_numpy(targets).astype(np.int64)
        ),
        forward_passes=np.asarray(passes, dtype=np.int64),
        degenerate=backend.to_numpy(degenerate).astype(bool),
        method=method,
    )
