"""What an explanation explains: class targets and target functions.

``targets=`` of every explainer is one of:

- ``None``: each image's top class; one int for all images; one int per image.
  Step 1 differentiates the class's raw logit and the masked passes are scored
  by its softmax probability, as in the paper (:class:`ClassObjective`).
- a callable ``f(outputs) -> (B,)`` scores, written on the framework's own
  arrays: step 1 differentiates ``f`` and each masked pass is scored as
  ``f(masked) - f(blurred)`` (:class:`FunctionObjective`). The model's outputs
  may then have any shape (segmentation maps, detections, regressions). The
  ready-made functions below (:class:`ClassProbability`, :class:`ClassLogit`,
  :class:`SegmentationClass`, :class:`RegressionOutput`) are written once
  against the array API and run on numpy, torch, JAX and TensorFlow arrays.

Both objectives implement :class:`~groupcam_core.protocol.Objective`, what a
backend's gradient pass is handed.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from array_api_compat import array_namespace, device

from .errors import ModelOutputError, TargetError
from .model_outputs import (
    ModelOutputs,
    check_outputs,
    check_single_logit,
    output_rows,
    warn_if_probabilities,
)
from .namespaces import is_tensorflow, namespace_of
from .protocol import Layout

__all__ = [
    "ClassLogit",
    "DetectionBox",
    "EmbeddingSimilarity",
    "ClassObjective",
    "ClassProbability",
    "FunctionObjective",
    "Objective",
    "RegressionOutput",
    "SegmentationClass",
    "TargetSpec",
    "box_iou",
    "check_framework_scores",
    "is_target_function",
    "log_sum_exp",
    "make_objective",
    "per_image_classes",
    "target_probabilities",
]

TargetSpec = int | Sequence[int] | Callable[[Any], Any] | Any | None


def log_sum_exp(outputs: Any, xp: Any, axis: int = 1, keepdims: bool = False) -> Any:
    """``log(sum(exp(outputs)))`` along ``axis``, without overflow (the max is taken out)."""
    top = xp.max(outputs, axis=axis, keepdims=True)
    total = top + xp.log(xp.sum(xp.exp(outputs - top), axis=axis, keepdims=True))
    return total if keepdims else xp.squeeze(total, axis=axis)


def _astype(array: Any, dtype: Any, xp: Any) -> Any:
    astype = getattr(xp, "astype", None)
    if astype is not None:
        return astype(array, dtype)
    if is_tensorflow(array):  # TensorFlow's numpy has no astype, and its tensors neither
        return xp.asarray(array, dtype=dtype)
    return array.astype(dtype)


def _arange_like(count: int, like: Any, xp: Any) -> Any:
    if is_tensorflow(like):
        return xp.arange(count)
    return xp.arange(count, device=device(like))


def _pick_classes(outputs: Any, targets: Any, xp: Any) -> Any:
    """``outputs[b, targets[b]]`` for each row, differentiable in every framework."""
    classes = _arange_like(outputs.shape[1], outputs, xp)
    chosen = classes[None, :] == xp.reshape(targets, (-1, 1))
    return xp.sum(xp.where(chosen, outputs, xp.zeros_like(outputs)), axis=1)


def target_probabilities(
    outputs: Any, targets: Any, model_outputs: ModelOutputs, dtype: Any, xp: Any
) -> Any:
    """The probability of each row's target class: softmax, sigmoid, or the output itself.

    Parameters
    ----------
    outputs
        ``(n, classes)`` model outputs.
    targets
        ``(n,)`` integer class indices.
    model_outputs
        ``"logits"``: the softmax over classes; ``"probabilities"``: the
        target's value as it is; ``"sigmoid"``: the sigmoid of the target's
        value (binary and multi-label classifiers).
    dtype
        The dtype to compute in (float32 or float64).
    """
    outputs = xp.astype(outputs, dtype)
    picked = _pick_classes(outputs, targets, xp)
    if model_outputs == "probabilities":
        return picked
    if model_outputs == "sigmoid":  # 1 / (1 + e^-z), without overflow for large |z|
        return xp.exp(-xp.logaddexp(xp.zeros_like(picked), -picked))
    return xp.exp(picked - log_sum_exp(outputs, xp))


def per_image_classes(targets: Any, batch: int) -> list[int]:
    """One class per image from an int or a sequence of ints (:class:`TargetError` if not)."""
    if isinstance(targets, bool):
        raise TargetError(f"targets must be an int or a sequence of ints, got {targets!r}")
    if isinstance(targets, numbers.Integral):
        return [int(targets)] * batch
    if isinstance(targets, (str, bytes)):
        raise TargetError(f"targets must be an int or a sequence of ints, got {targets!r}")
    if hasattr(targets, "tolist"):
        targets = targets.tolist()
    if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
        return [int(targets)] * batch
    try:
        values = list(targets)
    except TypeError:
        raise TargetError(
            f"targets must be None, an int or a sequence of ints, got {type(targets).__name__}"
        ) from None
    if len(values) != batch:
        raise TargetError(f"got {len(values)} targets for a batch of {batch} images")
    for position, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TargetError(f"target {position} is {value!r}; targets must be ints")
    return [int(value) for value in values]


class ClassObjective:
    """Class targets: differentiate the raw output of each image's class, score by probability.

    Parameters
    ----------
    targets
        ``None`` (each image's top class), one int for every image, or one int
        per image (a sequence or an integer array of length ``batch``); checked
        now.
    batch
        Number of images.
    model_outputs
        What the outputs are (:data:`~groupcam_core.model_outputs.ModelOutputs`):
        ``"logits"`` are scored by their softmax, and warn
        (:data:`~groupcam_core.errors.PROBABILITIES_WARNING`) when they look
        like probabilities, and a single logit per image is refused;
        ``"probabilities"`` are scored as they are; ``"sigmoid"`` by each
        class's sigmoid.
    """

    kind = "class"

    def __init__(self, targets: TargetSpec, batch: int, model_outputs: ModelOutputs) -> None:
        self.batch = batch
        self.requested = None if targets is None else per_image_classes(targets, batch)
        self.model_outputs = model_outputs

    def __call__(self, outputs: Any) -> Any:
        """Check the ``(batch, classes)`` outputs; the class of each image as an integer array.

        The array is in the outputs' namespace and on their device.
        """
        check_outputs(outputs, self.batch)
        xp = array_namespace(outputs)
        if not bool(xp.all(xp.isfinite(outputs))):
            raise ModelOutputError("the model's output on the input batch contains NaN or inf")
        check_single_logit(outputs, self.model_outputs)
        warn_if_probabilities(outputs, self.model_outputs)
        classes = outputs.shape[1]
        if self.requested is None:
            return xp.argmax(outputs, axis=1)
        bad = [(i, t) for i, t in enumerate(self.requested) if not 0 <= t < classes]
        if bad:
            position, value = bad[0]
            raise TargetError(
                f"target {value} (image {position}) is out of range for a model with "
                f"{classes} classes; valid targets are 0 to {classes - 1}"
            )
        # The namespace's default integer type: int64 for numpy and torch, int32
        # for jax unless 64-bit mode is on.
        return xp.asarray(self.requested, device=device(outputs))

    def scores(self, outputs: Any, targets: Any) -> Any:
        """What step 1 differentiates: each row's output at its class (framework arrays)."""
        return _pick_classes(outputs, targets, namespace_of(outputs))

    def pass_scores(self, outputs: Any, targets: Any, dtype: Any, xp: Any) -> Any:
        """What a masked pass scores: the class's probability (see :func:`target_probabilities`)."""
        return target_probabilities(outputs, targets, self.model_outputs, dtype, xp)


def check_framework_scores(scores: Any, outputs: Any, name: str) -> None:
    """Raise :class:`TargetError` for scores a target function computed outside the outputs'
    framework (numpy scores of a framework's outputs cannot be differentiated)."""
    import numpy as np

    first = outputs[0]["scores"] if isinstance(outputs, list) and outputs else outputs
    if isinstance(first, (np.ndarray, np.generic)):
        return  # a numpy model: numpy scores are its own
    if isinstance(scores, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        raise TargetError(
            f"the target function {name} returned a {type(scores).__module__}."
            f"{type(scores).__name__}; it must compute its scores from the outputs with the "
            f"framework's own operations and return them as a {type(first).__module__}."
            f"{type(first).__name__} (no .numpy() or numpy functions: those cannot be "
            "differentiated)"
        )


class FunctionObjective:
    """A target function: step 1 differentiates ``f``, masked passes score ``f`` minus baseline.

    Parameters
    ----------
    function
        ``f(outputs) -> (n,)``: one score per row of outputs, differentiable,
        written on the framework's own arrays. It must score each row on its own:
        it is called on the clean batch and on chunks that mix the masked inputs
        of several images.
    batch
        Number of images.
    """

    kind = "function"

    def __init__(self, function: Callable[[Any], Any], batch: int) -> None:
        self.function = function
        self.batch = batch
        self.name = getattr(function, "__qualname__", None) or type(function).__name__

    def __call__(self, outputs: Any) -> None:
        """Check that ``f`` gives one finite score per image on the clean outputs."""
        rows = output_rows(outputs)
        if rows != self.batch:
            raise ModelOutputError(
                f"the model returned an output of shape {tuple(getattr(outputs, 'shape', ()))} "
                f"for a batch of {self.batch}; its first axis must be the batch"
            )
        scores = self.scores(outputs, None)
        check_framework_scores(scores, outputs, self.name)
        shape = tuple(getattr(scores, "shape", ()))
        if shape != (self.batch,):
            raise TargetError(
                f"the target function {self.name} returned shape {shape}; it must return one "
                f"score per image, shape ({self.batch},)"
            )
        xp = namespace_of(scores)
        if not bool(xp.all(xp.isfinite(scores))):
            raise TargetError(f"the target function {self.name} returned NaN or inf")
        return None

    def scores(self, outputs: Any, targets: Any) -> Any:
        """``f(outputs)``: what step 1 differentiates (framework arrays)."""
        return self.function(outputs)

    def pass_scores(self, outputs: Any, targets: Any, dtype: Any, xp: Any) -> Any:
        """``f(outputs)`` in ``dtype`` and namespace ``xp``."""
        scores = self.function(outputs)
        if namespace_of(scores) is not xp:
            import numpy as np

            if hasattr(scores, "numpy"):
                scores = scores.numpy()
            scores = xp.asarray(np.asarray(scores), device=device(outputs))
        return xp.astype(scores, dtype)


#: The objectives of :func:`make_objective` (both implement
#: :class:`~groupcam_core.protocol.Objective`).
Objective = ClassObjective | FunctionObjective


def is_target_function(targets: TargetSpec) -> bool:
    """Whether ``targets`` is a target function (callable, and not an array of classes)."""
    return callable(targets) and not hasattr(targets, "__array__")


def make_objective(
    targets: TargetSpec, batch: int, model_outputs: ModelOutputs, layout: Layout | None = None
) -> Objective:
    """The objective for the user's ``targets``: a function if it is callable, else classes.

    A target function with a ``for_layout(layout)`` method (:class:`SegmentationClass`)
    is first bound to ``layout``, the explainer's, when one is given.
    """
    if is_target_function(targets):
        for_layout = getattr(targets, "for_layout", None)
        if layout is not None and callable(for_layout):
            targets = for_layout(layout)
        return FunctionObjective(targets, batch)
    return ClassObjective(targets, batch, model_outputs)


# -- ready-made target functions ---------------------------------------------------


def _category(value: Any, name: str = "category") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise TargetError(
            f"{name} must be a non-negative int, got {value!r}; a target function scores every "
            "row on its own (masked inputs of all images share chunks), so for one class per "
            "image pass targets=[...] (ints) instead"
        )
    return int(value)


def _check_index(index: int, outputs: Any, axis: int, what: str, owner: str) -> None:
    """Refuse an index beyond the outputs' axis (JAX would clamp it, silently)."""
    shape = tuple(getattr(outputs, "shape", ()))
    if len(shape) < 2:
        raise ModelOutputError(
            f"{owner} needs outputs with a batch axis and a {what} axis, got {shape}"
        )
    size = shape[axis]
    if not 0 <= index < size:
        raise TargetError(
            f"{owner}: {what} {index} is out of range for outputs of shape {shape} "
            f"(its axis {axis} has {size})"
        )


class _OneClass:
    """A target function about one class (``category``)."""

    def __init__(self, category: int) -> None:
        self.category = _category(category)

    def _check(self, outputs: Any) -> None:
        _check_index(self.category, outputs, 1, "class", repr(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.category == self.category  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.category))


class ClassLogit(_OneClass):
    """The raw output (logit) of a class: ``outputs[:, category]``.

    Group-CAM score of a masked input: the logit's change from the blurred
    baseline (not a probability). Step 1 differentiates the same logit, as the
    paper does for class targets.

    Parameters
    ----------
    category
        The class.
    """

    def __call__(self, outputs: Any) -> Any:
        self._check(outputs)
        return outputs[:, self.category]


class ClassProbability(_OneClass):
    """The softmax probability of a class (log-sum-exp over the class axis 1).

    Group-CAM score of a masked input: the probability's change from the blurred
    baseline, as for an int target. Unlike an int target, step 1 differentiates
    the probability, not the logit. For a model that already outputs
    probabilities, use :class:`ClassLogit` (it picks the output as it is).

    Parameters
    ----------
    category
        The class.
    """

    def __call__(self, outputs: Any) -> Any:
        self._check(outputs)
        xp = namespace_of(outputs)
        return xp.exp(outputs[:, self.category] - log_sum_exp(outputs, xp))


class SegmentationClass:
    """A segmentation model's evidence for one class, summed over pixels.

    ``sum over pixels of mask * outputs[:, category]`` for outputs of shape
    ``(B, classes, H, W)`` (``channel_axis=1``, torch) or ``(B, H, W, classes)``
    (``channel_axis=-1``, Keras and Flax); by default the explainer's layout
    says which. With ``probabilities=True`` the
    per-pixel softmax over classes is summed instead of the raw scores.
    Group-CAM score of a masked input: that sum's change from the blurred
    baseline. This is pytorch-grad-cam's ``SemanticSegmentationTarget``.

    Parameters
    ----------
    category
        The class.
    mask
        ``None`` (every pixel), or an ``(H, W)`` array of 0/1 (or weights)
        selecting the pixels, in any array type. The same mask serves every
        image: for a mask per image, explain one image at a time.
    channel_axis
        The class axis of the outputs: 1 or -1 (also 3). ``None`` (default):
        the layout of the explainer it is given to (1 for channels-first, -1
        for channels-last: torch, and Keras and JAX as configured); called
        directly, outside an explainer, 1.
    probabilities
        Sum softmax probabilities instead of raw scores.
    """

    def __init__(
        self,
        category: int,
        mask: Any = None,
        channel_axis: int | None = None,
        probabilities: bool = False,
    ) -> None:
        if channel_axis not in (None, 1, -1, 3) or isinstance(channel_axis, bool):
            raise TargetError(f"channel_axis must be None, 1 or -1, got {channel_axis!r}")
        self.category = _category(category)
        if mask is not None:
            import numpy as np

            if hasattr(mask, "detach"):
                mask = mask.detach().cpu().numpy()
            mask = np.asarray(mask, dtype=np.float32)
            if mask.ndim != 2:
                raise TargetError(f"the mask must be (H, W), got shape {mask.shape}")
        self.mask = mask
        self.channel_axis = None if channel_axis is None else 1 if channel_axis == 1 else -1
        self.probabilities = bool(probabilities)

    def for_layout(self, layout: Layout) -> SegmentationClass:
        """This target with the class axis of ``layout`` where none was given."""
        if self.channel_axis is not None:
            return self
        bound = copy.copy(self)
        bound.channel_axis = 1 if layout == "channels_first" else -1
        return bound

    def __call__(self, outputs: Any) -> Any:
        xp = namespace_of(outputs)
        if outputs.ndim != 4:
            raise ModelOutputError(
                f"SegmentationClass needs (B, classes, H, W) or (B, H, W, classes) outputs, got "
                f"shape {tuple(outputs.shape)}"
            )
        axis = 1 if self.channel_axis is None else self.channel_axis
        _check_index(self.category, outputs, axis, "class", repr(self))
        if self.probabilities:
            top = xp.max(outputs, axis=axis, keepdims=True)
            exp = xp.exp(outputs - top)
            outputs = exp / xp.sum(exp, axis=axis, keepdims=True)
        scores = outputs[:, self.category] if axis == 1 else outputs[..., self.category]
        if self.mask is not None:
            mask = self.mask
            if mask.shape != tuple(scores.shape[-2:]):
                raise TargetError(
                    f"the mask has shape {mask.shape}; the outputs' pixels are "
                    f"{tuple(scores.shape[-2:])}"
                )
            if is_tensorflow(scores):
                mask_array = xp.asarray(mask)
            else:
                mask_array = xp.asarray(mask, device=device(scores))
            scores = scores * _astype(mask_array, scores.dtype, xp)
        return xp.sum(xp.reshape(scores, (scores.shape[0], -1)), axis=1)

    def __repr__(self) -> str:
        masked = "" if self.mask is None else ", mask=..."
        return f"SegmentationClass({self.category}{masked})"


class RegressionOutput:
    """One output of a regression model: ``outputs[:, index]`` (or ``outputs`` if 1-D).

    Group-CAM score of a masked input: the output's change from the blurred
    baseline; step 1 differentiates the output itself. To explain a decrease,
    use ``lambda out: -RegressionOutput(0)(out)``.

    Parameters
    ----------
    index
        Which output, for models with several.
    """

    def __init__(self, index: int = 0) -> None:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TargetError(f"index must be an int, got {index!r}")
        self.index = int(index)

    def __call__(self, outputs: Any) -> Any:
        if outputs.ndim == 1:
            return outputs
        _check_index(self.index, outputs, 1, "output", repr(self))
        return outputs[:, self.index]

    def __repr__(self) -> str:
        return f"RegressionOutput({self.index})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegressionOutput) and other.index == self.index

    def __hash__(self) -> int:
        return hash((RegressionOutput, self.index))


def _host_floats(value: Any, what: str) -> Any:
    """``value`` (any framework's array, or a sequence) as a float64 numpy array."""
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TargetError(f"{what} must be numbers, got {type(value).__name__}") from error
    if not np.all(np.isfinite(array)):
        raise TargetError(f"{what} must be finite, got {array.tolist()}")
    return array


def _like(value: float, like: Any) -> Any:
    """An array shaped and typed as ``like``, filled with ``value`` (in ``like``'s framework)."""
    return namespace_of(like).zeros_like(like) + value


def box_iou(boxes: Any, box: Sequence[float]) -> Any:
    """IoU of each predicted box ``(..., 4)`` (x1, y1, x2, y2) with one box, differentiably.

    Written on the array API: runs on numpy, torch, JAX and TensorFlow arrays.
    Predicted boxes with no area (x2 <= x1 or y2 <= y1) have an IoU of 0.
    """
    xp = namespace_of(boxes)
    x1, y1, x2, y2 = (float(value) for value in box)
    zero = _like(0.0, boxes[..., 0])
    width = xp.maximum(
        xp.minimum(boxes[..., 2], _like(x2, zero)) - xp.maximum(boxes[..., 0], _like(x1, zero)),
        zero,
    )
    height = xp.maximum(
        xp.minimum(boxes[..., 3], _like(y2, zero)) - xp.maximum(boxes[..., 1], _like(y1, zero)),
        zero,
    )
    inter = width * height
    predicted = xp.maximum(boxes[..., 2] - boxes[..., 0], zero) * xp.maximum(
        boxes[..., 3] - boxes[..., 1], zero
    )
    union = predicted + (x2 - x1) * (y2 - y1) - inter
    return inter / union


class DetectionBox:
    """A detector's evidence for one object: the predicted boxes that overlap it.

    The score of image ``b`` is the sum, over its predicted boxes ``n`` whose
    IoU with ``box`` is at least ``iou_threshold``, of ``IoU_n * score_n`` with
    ``score_n`` the box's score for ``label``:

    - dense outputs ``(B, N, 4 + classes)``, the boxes first, then one score per
      class (as one-stage detectors give after decoding): ``score_n`` is
      ``outputs[b, n, 4 + label]``;
    - a list of ``B`` dicts with ``boxes`` ``(N, 4)``, ``scores`` ``(N,)`` and
      ``labels`` ``(N,)`` (torchvision's detection models): only boxes whose
      label is ``label`` count, and ``score_n`` is their ``scores``.

    pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` takes, for each reference
    box, the best-matching prediction of that label above the threshold and adds
    its IoU and its score; here every match counts, each weighted by its IoU, so
    that the score moves smoothly as masking shifts the predictions. Boxes are
    ``(x1, y1, x2, y2)`` in input pixels.

    Parameters
    ----------
    box
        The object's box, ``(x1, y1, x2, y2)`` with ``x2 > x1`` and ``y2 > y1``.
    label
        Its class.
    iou_threshold
        Predicted boxes that overlap the box less are not counted.
    """

    def __init__(self, box: Sequence[float], label: int, iou_threshold: float = 0.5) -> None:
        values = _host_floats(box, "box")
        if values.shape != (4,):
            raise TargetError(f"box must be (x1, y1, x2, y2), got shape {values.shape}")
        if not (values[2] > values[0] and values[3] > values[1]):
            raise TargetError(f"box must have x2 > x1 and y2 > y1, got {values.tolist()}")
        self.box = tuple(float(value) for value in values)
        self.label = _category(label, "label")
        threshold = float(iou_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise TargetError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
        self.iou_threshold = threshold

    def _weighted(self, boxes: Any, scores: Any, keep: Any = None) -> Any:
        xp = namespace_of(boxes)
        iou = box_iou(boxes, self.box)
        counted = iou >= self.iou_threshold
        if keep is not None:
            counted = xp.logical_and(counted, keep)
        return xp.where(counted, iou * scores, xp.zeros_like(iou))

    def __call__(self, outputs: Any) -> Any:
        if isinstance(outputs, (list, tuple)):
            return self._per_image_dicts(outputs)
        shape = tuple(getattr(outputs, "shape", ()))
        if len(shape) != 3 or shape[-1] < 5:
            raise ModelOutputError(
                f"DetectionBox needs dense outputs (B, boxes, 4 + classes) or a list of dicts "
                f"with boxes, scores and labels; got shape {shape}"
            )
        if 4 + self.label >= shape[-1]:
            raise TargetError(
                f"label {self.label} is out of range for outputs with {shape[-1] - 4} classes "
                f"(shape {shape}: 4 box coordinates, then one score per class)"
            )
        xp = namespace_of(outputs)
        weighted = self._weighted(outputs[..., :4], outputs[..., 4 + self.label])
        return xp.sum(weighted, axis=1)

    def _per_image_dicts(self, outputs: Sequence[Any]) -> Any:
        totals = []
        for position, found in enumerate(outputs):
            if not all(key in found for key in ("boxes", "scores", "labels")):
                raise ModelOutputError(
                    f"DetectionBox: output {position} is {type(found).__name__}; a list of "
                    "detections must hold dicts with boxes, scores and labels"
                )
            boxes, scores, labels = found["boxes"], found["scores"], found["labels"]
            xp = namespace_of(scores)
            weighted = self._weighted(boxes, scores, labels == self.label)
            totals.append(xp.sum(weighted, axis=0))
        if not totals:
            raise ModelOutputError("DetectionBox: the model returned no detections list")
        return namespace_of(*totals).stack(totals, axis=0)

    def _key(self) -> tuple[Any, ...]:
        return (self.box, self.label, self.iou_threshold)

    def __repr__(self) -> str:
        box, label, threshold = self._key()
        return f"DetectionBox({list(box)}, label={label}, iou_threshold={threshold})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DetectionBox) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((DetectionBox, *self._key()))


class EmbeddingSimilarity:
    """Cosine similarity of each output row ``(B, D)`` to a reference embedding.

    For face verification, image retrieval and image-text models (CLIP: a text
    embedding as the reference): the map shows what makes the image's
    embedding close to the reference. Group-CAM score of a masked input: the
    similarity's change from the blurred baseline.

    Parameters
    ----------
    reference
        ``(D,)``: one reference for every image; or ``(B, D)``: one per image
        (row ``b`` for image ``b``; the images are then explained as per-image
        targets, see :mod:`groupcam_core.per_image`). Any array type; it must
        not be all zeros.
    """

    def __init__(self, reference: Any) -> None:
        values = _host_floats(reference, "reference")
        if values.ndim not in (1, 2) or values.shape[-1] < 1:
            raise TargetError(
                f"reference must be an embedding (D,) or one per image (B, D), got shape "
                f"{values.shape}"
            )
        import numpy as np

        norms = np.linalg.norm(values, axis=-1)
        if np.any(norms == 0):
            raise TargetError("reference embeddings must not be all zeros")
        self.reference = values

    def per_image_targets(self, batch: int) -> list[EmbeddingSimilarity] | None:
        """One similarity per image for a ``(B, D)`` reference; ``None`` for a shared one."""
        if self.reference.ndim == 1:
            return None
        if self.reference.shape[0] != batch:
            raise TargetError(
                f"reference holds {self.reference.shape[0]} embeddings for a batch of {batch} "
                "images; give one per image, or one (D,) for all"
            )
        return [EmbeddingSimilarity(row) for row in self.reference]

    def __call__(self, outputs: Any) -> Any:
        shape = tuple(getattr(outputs, "shape", ()))
        size = self.reference.shape[-1]
        if len(shape) != 2 or shape[1] != size:
            raise ModelOutputError(
                f"EmbeddingSimilarity needs embeddings of shape (B, {size}) (the reference's "
                f"size), got {shape}"
            )
        if self.reference.ndim == 2 and shape[0] != self.reference.shape[0]:
            raise TargetError(
                f"a reference per image ({self.reference.shape[0]}) for {shape[0]} output rows; "
                "pass the function as targets= so that each image is scored with its own"
            )
        xp = namespace_of(outputs)
        if is_tensorflow(outputs):
            reference = xp.asarray(self.reference, dtype=outputs.dtype)
        else:
            reference = xp.asarray(self.reference, dtype=outputs.dtype, device=device(outputs))
        if reference.ndim == 1:
            reference = xp.reshape(reference, (1, size))
        dot = xp.sum(outputs * reference, axis=1)
        norms = xp.sqrt(xp.sum(outputs * outputs, axis=1)) * xp.sqrt(
            xp.sum(reference * reference, axis=1)
        )
        tiny = _like(1e-12, norms)
        return dot / xp.maximum(norms, tiny)

    def __repr__(self) -> str:
        return f"EmbeddingSimilarity(reference of shape {self.reference.shape})"

    def __eq__(self, other: object) -> bool:
        import numpy as np

        return isinstance(other, EmbeddingSimilarity) and np.array_equal(
            other.reference, self.reference
        )

    def __hash__(self) -> int:
        return hash((EmbeddingSimilarity, self.reference.shape, self.reference.tobytes()))
