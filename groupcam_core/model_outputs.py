"""Reading a model's outputs: the class scores in what it returns, and checks of them.

Every adapter selects the ``(B, classes)`` scores with :func:`select_class_scores`
(``output=``), checks them with :func:`check_outputs` and tells logits from
probabilities with :func:`looks_like_probabilities`: one rule and one message in
every framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from array_api_compat import array_namespace

from .dtypes import is_half_precision, is_real_floating
from .errors import PROBABILITIES_WARNING, BackendError, ModelOutputError, warn

__all__ = [
    "MODEL_OUTPUTS",
    "ModelOutputs",
    "OutputSelector",
    "check_outputs",
    "is_detection_list",
    "output_rows",
    "looks_like_probabilities",
    "select_class_scores",
    "check_single_logit",
    "warn_if_probabilities",
]

#: What a model's class outputs are, and so how a masked pass scores a class:
#: ``"logits"`` by the softmax over classes (the paper), ``"probabilities"`` as
#: they are, ``"sigmoid"`` by each class's own sigmoid (binary and multi-label
#: classifiers).
ModelOutputs = Literal["logits", "probabilities", "sigmoid"]

#: The values of :data:`ModelOutputs`, in every adapter (Keras adds ``"auto"``).
MODEL_OUTPUTS: tuple[str, ...] = ("logits", "probabilities", "sigmoid")

#: How to find the class scores in what a model returns: a key or attribute
#: name, an index, or a callable; ``None`` to guess (see select_class_scores).
OutputSelector = str | int | Callable[[Any], Any] | None


def is_detection_list(outputs: Any) -> bool:
    """Whether ``outputs`` is a list of per-image detections, as torchvision's detectors give:
    one mapping per image with ``boxes`` and ``scores`` (see
    :class:`~groupcam_core.targets.DetectionBox`)."""
    return (
        isinstance(outputs, (list, tuple))
        and len(outputs) > 0
        and all(
            isinstance(item, Mapping) and "boxes" in item and "scores" in item for item in outputs
        )
    )


def output_rows(outputs: Any) -> int | None:
    """How many rows (images) a model's outputs hold: an array's first axis, or how many
    per-image detections a list holds; ``None`` for neither."""
    if is_detection_list(outputs):
        return len(outputs)
    shape = tuple(getattr(outputs, "shape", ()))
    return int(shape[0]) if shape else None


def select_class_scores(
    raw: Any, selector: OutputSelector, is_array: Callable[[Any], bool], array_type: str
) -> Any:
    """Pick the ``(B, classes)`` array from whatever a model returned.

    Parameters
    ----------
    raw
        The model's return value.
    selector
        ``None`` to take an array as it is, else its ``logits`` attribute or key,
        the only value of a one-entry mapping, or the first item of a sequence; a
        key or attribute name, an index, or a callable to say which.
    is_array, array_type
        The framework's array test and the name of its array type, for errors.
    """
    if selector is None and is_detection_list(raw):
        return list(raw)  # per-image detections, for a target function (DetectionBox)
    if selector is not None:
        if callable(selector):
            chosen = selector(raw)
        elif isinstance(selector, str):
            if isinstance(raw, Mapping) and selector in raw:
                chosen = raw[selector]
            elif hasattr(raw, selector):
                chosen = getattr(raw, selector)
            else:
                raise ModelOutputError(
                    f"output={selector!r}: the model's {type(raw).__name__} output has no "
                    "such key or attribute"
                )
        elif isinstance(selector, int) and not isinstance(selector, bool):
            try:
                chosen = raw[selector]
            except (IndexError, KeyError, TypeError) as error:
                raise ModelOutputError(
                    f"output={selector}: cannot index the model's {type(raw).__name__} output"
                ) from error
        else:
            raise BackendError(
                "output must be None, a key or attribute name, an index, or a callable"
            )
    elif is_array(raw):
        chosen = raw
    elif is_array(getattr(raw, "logits", None)):
        chosen = raw.logits
    elif isinstance(raw, Mapping):
        if "logits" in raw:
            chosen = raw["logits"]
        elif len(raw) == 1:
            chosen = next(iter(raw.values()))
        else:
            raise ModelOutputError(
                f"the model returned a mapping with keys {sorted(map(str, raw))}; "
                "pass output=<key> to say which one holds the class scores"
            )
    elif isinstance(raw, (tuple, list)) and raw:
        chosen = raw[0]
    else:
        chosen = raw
    if not is_array(chosen):
        raise ModelOutputError(
            f"expected the class scores as a {array_type}, got {type(chosen).__name__}; "
            "pass output= (a key, an attribute name, an index or a callable) to select them"
        )
    return chosen


def check_outputs(outputs: Any, batch: int, where: str = "the model") -> None:
    """Raise :class:`ModelOutputError` unless ``outputs`` is a ``(batch, classes)`` array."""
    if is_detection_list(outputs):
        raise ModelOutputError(
            f"{where} returned detections (a list of dicts with boxes and scores), not class "
            "scores; explain an object with targets=DetectionBox(box, label)"
        )
    shape = tuple(getattr(outputs, "shape", ()))
    if len(shape) != 2 or shape[0] != batch or shape[1] < 1:
        raise ModelOutputError(
            f"{where} returned an output of shape {shape} for a batch of {batch}; "
            f"Group-CAM needs one score per class, shape ({batch}, classes). "
            "Pass `output=` to select the class scores from what the model returns."
        )


def looks_like_probabilities(outputs: Any, xp: Any) -> bool:
    """The rule every adapter uses: at least 2 classes, rows non-negative and summing to 1.

    Computed in float32 (never float64, which some accelerators lack), with an
    absolute tolerance on each row's sum of 1e-3, or 1e-2 for half-precision
    outputs.
    """
    if outputs.ndim != 2 or outputs.shape[1] < 2 or not is_real_floating(outputs.dtype, xp):
        return False
    tolerance = 1e-2 if is_half_precision(outputs.dtype) else 1e-3
    values = xp.astype(outputs, xp.float32)
    sums = xp.sum(values, axis=1)
    return bool(xp.all(values >= 0)) and bool(xp.all(xp.abs(sums - 1.0) <= tolerance))


def warn_if_probabilities(outputs: Any, model_outputs: ModelOutputs) -> None:
    """Warn (once per calling line) when logits were expected but probabilities came."""
    if model_outputs == "logits" and looks_like_probabilities(outputs, array_namespace(outputs)):
        warn(PROBABILITIES_WARNING)


def check_single_logit(outputs: Any, model_outputs: ModelOutputs) -> None:
    """Refuse a one-column output scored by a softmax: it is 1 for every input, so
    every score and every map would be 0."""
    shape = tuple(getattr(outputs, "shape", ()))
    if model_outputs == "logits" and len(shape) == 2 and shape[1] == 1:
        raise ModelOutputError(
            f"the model returns a single logit per image (shape {shape}); a softmax over "
            "one class is always 1, so every score and every map would be 0. Pass "
            "model_outputs='sigmoid' to score it by its sigmoid (a binary classifier), or "
            "model_outputs='probabilities' if it outputs a probability"
        )
