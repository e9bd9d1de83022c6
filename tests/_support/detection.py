"""A dense detection head for the blob net, on the array API (every framework's arrays).

``(B, 4)`` logits -> ``(B, 3 boxes, 4 + 4 classes)`` detections: three fixed boxes
(x1, y1, x2, y2) over a 64 x 64 input, each with class scores ``sigmoid(logits +
offsets)``. The contract suite turns the blob net into a detector with it, in each way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from groupcam_core.namespaces import namespace_of

BOXES = np.array([[8.0, 8.0, 40.0, 40.0], [20.0, 24.0, 60.0, 56.0], [0.0, 30.0, 30.0, 64.0]])
OFFSETS = np.array([[0.0, 0.5, -0.5, 0.2], [0.3, -0.2, 0.1, 0.0], [-0.4, 0.0, 0.6, -0.1]])


def dense_head(logits: Any) -> Any:
    """The detections, computed in the logits' own framework (differentiable)."""
    xp = namespace_of(logits)
    concat = getattr(xp, "concat", None) or xp.concatenate  # TensorFlow's numpy: concatenate
    zeros = xp.zeros_like(logits)
    rows = []
    for box, offsets in zip(BOXES, OFFSETS, strict=True):
        coordinates = [zeros[:, :1] + float(value) for value in box]
        shifted = logits + xp.asarray(offsets, dtype=logits.dtype)
        rows.append(concat([*coordinates, 1.0 / (1.0 + xp.exp(-shifted))], axis=1))
    return xp.stack(rows, axis=1)


def dense_head_numpy(logits: np.ndarray) -> np.ndarray:
    """The same detections from numpy logits, written out."""
    scores = 1.0 / (1.0 + np.exp(-(logits[:, None, :] + OFFSETS[None])))
    boxes = np.broadcast_to(BOXES[None], (len(logits), *BOXES.shape))
    return np.concatenate([boxes, scores], axis=-1)


def keras_dense_head(logits: Any) -> Any:
    """The same head in ``keras.ops`` (for a functional Keras model)."""
    import keras

    ops = keras.ops
    scores = ops.sigmoid(ops.expand_dims(logits, 1) + ops.convert_to_tensor(OFFSETS, "float32"))
    boxes = ops.zeros_like(scores[..., :1]) + ops.convert_to_tensor(BOXES, "float32")
    return ops.concatenate([boxes, scores], axis=-1)
