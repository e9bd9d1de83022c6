"""What an explanation explains: class targets, target functions, and checks of outputs.

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
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from array_api_compat import array_namespace, device

from .dtypes import is_half_precision, is_real_floating
from .errors import PROBABILITIES_WARNING, BackendError, ModelOutputError, TargetError, warn
from .namespaces import is_tensorflow, namespace_of

__all__ = [
    "ClassLogit",
    "ClassObjective",
    "ClassProbability",
    "FunctionObjective",
    "Objective",
    "OutputSelector",
    "RegressionOutput",
    "SegmentationClass",
    "TargetSpec",
    "check_outputs",
    "looks_like_probabilities",
    "make_objective",
    "make_target_resolver",
    "select_class_scores",
    "warn_if_probabilities",
]

TargetSpec = int | Sequence[int] | Callable[[Any], Any] | Any | None

#: How to find the class scores in what a model returns: a key or attribute
#: name, an index, or a callable; ``None`` to guess (see select_class_scores).
OutputSelector = str | int | Callable[[Any], Any] | None


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


def warn_if_probabilities(outputs: Any, outputs_probabilities: bool) -> None:
    """Warn (once per calling line) when logits were expected but probabilities came."""
    if not outputs_probabilities and looks_like_probabilities(outputs, array_namespace(outputs)):
        warn(PROBABILITIES_WARNING)


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


def make_target_resolver(
    targets: TargetSpec, batch: int, outputs_probabilities: bool | None = None
) -> Callable[[Any], Any]:
    """Validate ``targets`` now and return a resolver for the model's outputs.

    Parameters
    ----------
    targets
        ``None`` (each image's top class), one int for every image, or one int
        per image (a sequence or an integer array of length ``batch``).
    batch
        Number of images.
    outputs_probabilities
        What the explainer assumes the outputs are. ``False``: logits, and the
        resolver warns (:data:`~groupcam_core.errors.PROBABILITIES_WARNING`)
        when they look like probabilities. ``True`` or ``None``: no warning.

    Returns
    -------
    callable
        ``resolve(outputs) -> targets``: checks the ``(batch, classes)`` outputs
        and returns an integer array of targets in their namespace and device.
    """
    requested = None if targets is None else per_image_classes(targets, batch)

    def resolve(outputs: Any) -> Any:
        check_outputs(outputs, batch)
        xp = array_namespace(outputs)
        if not bool(xp.all(xp.isfinite(outputs))):
            raise ModelOutputError("the model's output on the input batch contains NaN or inf")
        if outputs_probabilities is False:
            warn_if_probabilities(outputs, False)
        classes = outputs.shape[1]
        if requested is None:
            return xp.argmax(outputs, axis=1)
        bad = [(i, t) for i, t in enumerate(requested) if not 0 <= t < classes]
        if bad:
            position, value = bad[0]
            raise TargetError(
                f"target {value} (image {position}) is out of range for a model with "
                f"{classes} classes; valid targets are 0 to {classes - 1}"
            )
        # The namespace's default integer type: int64 for numpy and torch, int32
        # for jax unless 64-bit mode is on.
        return xp.asarray(requested, device=device(outputs))

    return resolve


# -- objectives: what step 1 differentiates and what the masked passes score ----------


def _astype(array: Any, dtype: Any, xp: Any) -> Any:
    astype = getattr(xp, "astype", None)
    return astype(array, dtype) if astype is not None else array.astype(dtype)


def _arange_like(count: int, like: Any, xp: Any) -> Any:
    if is_tensorflow(like):
        return xp.arange(count)
    return xp.arange(count, device=device(like))


def _pick_classes(outputs: Any, targets: Any, xp: Any) -> Any:
    """``outputs[b, targets[b]]`` for each row, differentiable in every framework."""
    classes = _arange_like(outputs.shape[1], outputs, xp)
    chosen = classes[None, :] == xp.reshape(targets, (-1, 1))
    return xp.sum(xp.where(chosen, outputs, xp.zeros_like(outputs)), axis=1)


class ClassObjective:
    """Class targets: differentiate the raw output of each image's class, score by probability.

    Calling the objective on outputs resolves and checks the classes, as
    :func:`make_target_resolver`'s resolver does (so backends written for class
    targets alone keep working).

    Parameters
    ----------
    targets
        ``None`` (each image's top class), one int, or one int per image.
    batch
        Number of images.
    outputs_probabilities
        The model's outputs are probabilities: scores are the outputs
        themselves, no softmax is applied. ``False`` also warns when the
        outputs look like probabilities.
    """

    kind = "class"

    def __init__(self, targets: TargetSpec, batch: int, outputs_probabilities: bool) -> None:
        self.resolve = make_target_resolver(targets, batch, outputs_probabilities)
        self.outputs_probabilities = outputs_probabilities

    def __call__(self, outputs: Any) -> Any:
        return self.resolve(outputs)

    def scores(self, outputs: Any, targets: Any) -> Any:
        """What step 1 differentiates: each row's output at its class (framework arrays)."""
        return _pick_classes(outputs, targets, namespace_of(outputs))

    def pass_scores(self, outputs: Any, targets: Any, dtype: Any, xp: Any) -> Any:
        """What a masked pass scores: the class's softmax probability, in ``dtype``."""
        from .plumbing import target_probabilities

        return target_probabilities(outputs, targets, self.outputs_probabilities, dtype, xp)


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
    outputs_probabilities = False

    def __init__(self, function: Callable[[Any], Any], batch: int) -> None:
        self.function = function
        self.batch = batch
        self.name = getattr(function, "__qualname__", None) or type(function).__name__

    def __call__(self, outputs: Any) -> None:
        return self.resolve(outputs)

    def resolve(self, outputs: Any) -> None:
        """Check that ``f`` gives one finite score per image on the clean outputs."""
        rows = tuple(getattr(outputs, "shape", ()))[:1]
        if rows != (self.batch,):
            raise ModelOutputError(
                f"the model returned an output of shape {tuple(getattr(outputs, 'shape', ()))} "
                f"for a batch of {self.batch}; its first axis must be the batch"
            )
        scores = self.scores(outputs, None)
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


#: An objective: :class:`ClassObjective` or :class:`FunctionObjective`.
Objective = ClassObjective | FunctionObjective


def is_target_function(targets: TargetSpec) -> bool:
    """Whether ``targets`` is a target function (callable, and not an array of classes)."""
    return callable(targets) and not hasattr(targets, "__array__")


def make_objective(targets: TargetSpec, batch: int, outputs_probabilities: bool) -> Objective:
    """The objective for the user's ``targets``: a function if it is callable, else classes."""
    if is_target_function(targets):
        return FunctionObjective(targets, batch)
    return ClassObjective(targets, batch, outputs_probabilities)


# -- ready-made target functions ---------------------------------------------------


def _category(value: Any, name: str = "category") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise TargetError(
            f"{name} must be a non-negative int, got {value!r}; a target function scores every "
            "row on its own (masked inputs of all images share chunks), so for one class per "
            "image pass targets=[...] (ints) instead"
        )
    return int(value)


class _OneClass:
    """A target function about one class (``category``)."""

    def __init__(self, category: int) -> None:
        self.category = _category(category)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category!r})"


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
        xp = namespace_of(outputs)
        top = xp.max(outputs, axis=1)
        log_total = top + xp.log(xp.sum(xp.exp(outputs - top[:, None]), axis=1))
        return xp.exp(outputs[:, self.category] - log_total)


class SegmentationClass:
    """A segmentation model's evidence for one class, summed over pixels.

    ``sum over pixels of mask * outputs[:, category]`` for outputs of shape
    ``(B, classes, H, W)`` (``channel_axis=1``, torch) or ``(B, H, W, classes)``
    (``channel_axis=-1``, Keras and Flax). With ``probabilities=True`` the
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
        The class axis of the outputs: 1 or -1 (also 3).
    probabilities
        Sum softmax probabilities instead of raw scores.
    """

    def __init__(
        self,
        category: int,
        mask: Any = None,
        channel_axis: int = 1,
        probabilities: bool = False,
    ) -> None:
        if channel_axis not in (1, -1, 3):
            raise TargetError(f"channel_axis must be 1 or -1, got {channel_axis!r}")
        self.category = _category(category)
        if mask is not None:
            import numpy as np

            if hasattr(mask, "detach"):
                mask = mask.detach().cpu().numpy()
            mask = np.asarray(mask, dtype=np.float32)
            if mask.ndim != 2:
                raise TargetError(f"the mask must be (H, W), got shape {mask.shape}")
        self.mask = mask
        self.channel_axis = 1 if channel_axis == 1 else -1
        self.probabilities = bool(probabilities)

    def __call__(self, outputs: Any) -> Any:
        xp = namespace_of(outputs)
        if outputs.ndim != 4:
            raise ModelOutputError(
                f"SegmentationClass needs (B, classes, H, W) or (B, H, W, classes) outputs, got "
                f"shape {tuple(outputs.shape)}"
            )
        axis = self.channel_axis
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
        return outputs[:, self.index]

    def __repr__(self) -> str:
        return f"RegressionOutput({self.index})"
