"""Per-image targets: one batch whose images are explained for targets of different kinds.

``targets=[t_0, ..., t_{B-1}]`` where each entry is an int (a class) or a
target function: image ``b`` is explained for ``t_b``. The images are grouped
by target (every class entry in one group, as a list of ints; the entries that
are one function, or equal ready-made functions such as two
``ClassLogit(3)``, in one group each), each group is explained as one batch,
and the results are put back in the images' order. The result therefore
equals explaining each image alone with its own target, and images that share
a target still share their passes.

A target function may also stand for one function per image: one that
defines ``per_image_targets(batch)`` (as
:class:`~groupcam_core.targets.EmbeddingSimilarity` with one reference per
image does) is expanded into that list first.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from .batches import concat_rows
from .errors import TargetError
from .result import PER_IMAGE_ARRAYS, Explanation
from .targets import TargetSpec, is_target_function

__all__ = [
    "TargetGroup",
    "batch_rows",
    "explain_by_target",
    "groups_of",
    "merge_explanations",
    "merge_method_results",
    "take_images",
    "target_groups",
]

Result = TypeVar("Result")


@dataclass(frozen=True)
class TargetGroup:
    """Images of a batch explained for one kind of target.

    Attributes
    ----------
    images
        Their positions in the batch, in increasing order.
    targets
        What they are explained for: a list of ints (one class per image of
        the group) or one target function.
    """

    images: tuple[int, ...]
    targets: TargetSpec


def _same_function(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:  # an __eq__ that returns an array, or fails: not the same function
        return False


def _entries(targets: Any, batch: int) -> list[Any] | None:
    """The per-image entries of ``targets``, or ``None`` when it is not a per-image list."""
    if is_target_function(targets):
        expand = getattr(targets, "per_image_targets", None)
        return None if expand is None else expand(batch)
    if targets is None or isinstance(targets, (str, bytes, numbers.Number)):
        return None
    if hasattr(targets, "__array__") or not isinstance(targets, Sequence):
        return None  # an array of classes, or something the class targets' check refuses
    if not any(is_target_function(entry) for entry in targets):
        return None  # one int per image: the class targets' own path
    return list(targets)


def target_groups(targets: TargetSpec, batch: int) -> list[TargetGroup] | None:
    """The groups of a per-image target list; ``None`` for targets shared by the batch.

    Raises
    ------
    TargetError
        For a list of the wrong length, or an entry that is neither an int nor
        a target function.
    """
    entries = _entries(targets, batch)
    if entries is None:
        return None
    if len(entries) != batch:
        raise TargetError(f"got {len(entries)} targets for a batch of {batch} images")
    classes: list[int] = []
    class_images: list[int] = []
    functions: list[tuple[Any, list[int]]] = []
    for position, entry in enumerate(entries):
        if isinstance(entry, numbers.Integral) and not isinstance(entry, bool):
            classes.append(int(entry))
            class_images.append(position)
        elif is_target_function(entry):
            for function, images in functions:
                if _same_function(function, entry):
                    images.append(position)
                    break
            else:
                functions.append((entry, [position]))
        else:
            raise TargetError(
                f"target {position} is {entry!r}; each entry of a per-image target list is "
                "an int (a class) or a target function"
            )
    groups = [TargetGroup(tuple(class_images), classes)] if class_images else []
    groups += [TargetGroup(tuple(images), function) for function, images in functions]
    return sorted(groups, key=lambda group: group.images[0])


def batch_rows(x: Any) -> int | None:
    """How many images a batch holds (``None`` if it has no first axis to tell)."""
    shape = getattr(x, "shape", None)
    try:
        return int(shape[0]) if shape is not None and len(shape) else len(x)
    except (TypeError, ValueError):
        return None


def groups_of(targets: TargetSpec, x: Any) -> list[TargetGroup] | None:
    """:func:`target_groups` for the batch ``x`` (``None`` if ``x`` is no batch: its
    explainer's own checks then say what is wrong with it)."""
    rows = batch_rows(x)
    return None if rows is None else target_groups(targets, rows)


def take_images(x: Any, images: Sequence[int]) -> Any:
    """The rows ``images`` of a batch, in that order, in the batch's own framework."""
    return concat_rows([x[index : index + 1] for index in images])


def explain_by_target(
    run: Callable[[Any, TargetSpec], Result],
    x: Any,
    groups: list[TargetGroup],
    merge: Callable[[list[tuple[tuple[int, ...], Result]], int], Result],
) -> Result:
    """``run(images, targets)`` for each group, merged back into the batch's order."""
    size = sum(len(group.images) for group in groups)
    if len(groups) == 1 and groups[0].images == tuple(range(size)):
        return run(x, groups[0].targets)
    parts = [(group.images, run(take_images(x, group.images), group.targets)) for group in groups]
    return merge(parts, size)


def _placed(parts: list[tuple[tuple[int, ...], Any]], size: int, field: str) -> Any:
    first = getattr(parts[0][1], field)
    if first is None:
        return None
    joined = np.empty((size, *np.shape(first)[1:]), dtype=np.asarray(first).dtype)
    for images, part in parts:
        joined[list(images)] = getattr(part, field)
    return joined


def merge_explanations(parts: list[tuple[tuple[int, ...], Explanation]], size: int) -> Explanation:
    """One :class:`Explanation` of ``size`` images from explanations of some of them each."""
    fields = (*PER_IMAGE_ARRAYS, "target_scores")
    merged = {field: _placed(parts, size, field) for field in fields}
    objectives = {part.objective for _, part in parts}
    layer_saliency = parts[0][1].layer_saliency
    if layer_saliency is not None:
        layer_saliency = {
            name: _placed(
                [(images, _Saliency(part.layer_saliency[name])) for images, part in parts],
                size,
                "saliency",
            )
            for name in layer_saliency
        }
    return replace(
        parts[0][1],
        **merged,
        objective=objectives.pop() if len(objectives) == 1 else "per-image",
        layer_saliency=layer_saliency,
    )


@dataclass(frozen=True)
class _Saliency:
    saliency: np.ndarray


def merge_method_results(parts: list[tuple[tuple[int, ...], Any]], size: int) -> Any:
    """One :class:`~groupcam_core.methods.MethodResult` from results of some images each."""
    fields = ("saliency", "targets", "forward_passes", "degenerate")
    return replace(parts[0][1], **{field: _placed(parts, size, field) for field in fields})
