"""Evaluation metrics for saliency maps, run through any framework's adapter.

Causal metrics (deletion and insertion, as RISE and the Group-CAM paper ran
them), localisation metrics (the pointing game and its energy-based variant),
faithfulness by confidence (average drop and increase in confidence, as in
Grad-CAM++ and Score-CAM) and the model-randomisation sanity check (Adebayo et
al., 2018).

Inputs are built on the host in numpy; models run through the
:class:`~groupcam_core.protocol.Backend` protocol, in chunks of ``batch_size``
rows over all images and steps together. Every function that runs a model
accepts either a backend or a groupcam explainer (``groupcam_torch.GroupCAM``,
``groupcam_keras.GroupCAM``, ``groupcam_jax.GroupCAM``); the explainer's model
is then prepared as for an explanation (evaluation mode) while the metric runs.

Saliency maps are ``(B, H, W)`` arrays matching the spatial size of the batch.
Only the pointing-game variants and :func:`rank_correlations` need no model;
:func:`rank_correlations` needs scipy.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from array_api_compat import array_namespace

from . import ops
from .engine import forward_in_chunks, validate_input
from .errors import BackendError, ConfigError, InputError
from .explainer import ExplainerBase, as_backend, positive_int
from .protocol import Backend
from .targets import TargetSpec, make_target_resolver

__all__ = [
    "CausalCurves",
    "ConfidenceChange",
    "EnergyPointingGame",
    "PointingGame",
    "RandomizationCorrelations",
    "as_backend",
    "average_drop_and_increase",
    "curve_auc",
    "deletion",
    "energy_pointing_game",
    "insertion",
    "pointing_game",
    "rank_correlations",
    "sanity_check",
]

#: A core backend or a groupcam explainer (any ``ExplainerBase``).
ModelLike = Backend | ExplainerBase

#: The default number of deletion/insertion steps: ``step = H * W // 112``
#: pixels, that is 448 at 224 x 224 as in the Group-CAM evaluation.
DEFAULT_STEPS = 112


# -- results -----------------------------------------------------------------


@dataclass(frozen=True)
class CausalCurves:
    """Deletion or insertion curves of a batch.

    Attributes
    ----------
    kind
        ``"deletion"`` or ``"insertion"``.
    curves
        ``(B, n + 1)`` float64: probability of the target class after each step;
        column 0 is the start image, column ``n`` the fully deleted (or fully
        inserted) image.
    auc
        ``(B,)`` float64: area under each curve, see :func:`curve_auc`.
    targets
        ``(B,)`` int64: the class whose probability is tracked.
    step
        Pixels taken per step; ``n = ceil(H * W / step)``.
    """

    kind: Literal["deletion", "insertion"]
    curves: np.ndarray
    auc: np.ndarray
    targets: np.ndarray
    step: int

    @property
    def steps(self) -> int:
        """Number of steps ``n`` (the curves have ``n + 1`` points)."""
        return self.curves.shape[1] - 1

    @property
    def mean_auc(self) -> float:
        """The AUC averaged over images (the number papers report)."""
        return float(np.mean(self.auc))


@dataclass(frozen=True)
class PointingGame:
    """Pointing-game outcome of a batch.

    Attributes
    ----------
    hits
        ``(B,)`` bool: the saliency maximum lies within the tolerance of the mask.
    points
        ``(B, 2)`` int64: the (row, column) of each map's maximum.
    distances
        ``(B,)`` float64: Euclidean distance, in pixels, from that point to the
        nearest mask pixel (0 inside the mask).
    tolerance
        The tolerance used, in pixels.
    """

    hits: np.ndarray
    points: np.ndarray
    distances: np.ndarray
    tolerance: float

    @property
    def accuracy(self) -> float:
        """Share of hits, in [0, 1]."""
        return float(np.mean(self.hits))


@dataclass(frozen=True)
class EnergyPointingGame:
    """Energy-based pointing game (Score-CAM) of a batch.

    Attributes
    ----------
    proportions
        ``(B,)`` float64: share of each map's total saliency inside the mask
        (0 for a map that sums to 0).
    """

    proportions: np.ndarray

    @property
    def mean(self) -> float:
        """The proportion averaged over images."""
        return float(np.mean(self.proportions))


@dataclass(frozen=True)
class ConfidenceChange:
    """Average drop and increase in confidence (Grad-CAM++ and Score-CAM definitions).

    Attributes
    ----------
    original
        ``(B,)`` float64: probability Y of the target on the image.
    masked
        ``(B,)`` float64: probability O of the target on ``image * saliency``.
    drops
        ``(B,)`` float64: ``max(0, Y - O) / Y * 100`` (0 when Y is 0).
    increased
        ``(B,)`` bool: ``O > Y``.
    targets
        ``(B,)`` int64: the target classes.
    """

    original: np.ndarray
    masked: np.ndarray
    drops: np.ndarray
    increased: np.ndarray
    targets: np.ndarray

    @property
    def average_drop(self) -> float:
        """Mean of the per-image drops, in percent (lower is better)."""
        return float(np.mean(self.drops))

    @property
    def increase_in_confidence(self) -> float:
        """Percentage of images whose confidence rose on the masked image (higher is better)."""
        return float(np.mean(self.increased) * 100.0)


@dataclass(frozen=True)
class RandomizationCorrelations:
    """Rank correlations between original maps and maps of randomised models.

    Attributes
    ----------
    names
        One name per randomisation step (for cascading randomisation, the layer
        randomised last).
    correlations
        ``(steps, B)`` float64: Spearman rank correlation of each image's map
        with its original map, over the flattened pixels; 0 where either map is
        constant.
    """

    names: tuple[str, ...]
    correlations: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """``(steps,)`` correlation averaged over images."""
        return self.correlations.mean(axis=1)


# -- models, inputs and chunked forward passes ---------------------------------


def _chunk_size(backend: Backend, batch_size: int | None) -> int:
    if batch_size is None:
        batch_size = backend.default_batch_size
    return positive_int(batch_size, "batch_size")


def _host_batch(backend: Backend, x: Any) -> np.ndarray:
    """The batch as channels-first host numpy, in the model's input dtype, validated."""
    prepared = backend.prepare_input(x)
    layout = backend.input_layout
    validate_input(prepared, layout, array_namespace(prepared))
    host = np.asarray(backend.to_numpy(prepared))
    return host.transpose(0, 3, 1, 2) if layout == "channels_last" else host


def _to_host(array: Any) -> np.ndarray:
    """Any framework's array as numpy (tensors are detached and moved to the CPU)."""
    if hasattr(array, "detach"):
        array = array.detach()
    if hasattr(array, "cpu") and callable(array.cpu):
        array = array.cpu()
    return np.asarray(array)


def _check_maps(saliency: Any, shape: tuple[int, int, int], what: str = "saliency") -> np.ndarray:
    maps = _to_host(saliency)
    if maps.shape != shape:
        raise InputError(
            f"{what} maps must have shape (B, H, W) = {shape} to match the batch, got {maps.shape}"
        )
    if not (np.issubdtype(maps.dtype, np.floating) or np.issubdtype(maps.dtype, np.integer)):
        raise InputError(f"{what} maps must be real numbers, got dtype {maps.dtype}")
    maps = maps.astype(np.float64)
    if not np.all(np.isfinite(maps)):
        raise InputError(f"{what} maps contain NaN or inf")
    return maps


def _check_masks(masks: Any, shape: tuple[int, ...]) -> np.ndarray:
    found = _to_host(masks)
    if found.shape != shape:
        raise InputError(
            f"ground-truth masks must have shape (B, H, W) = {shape} like the saliency maps, "
            f"got {found.shape}"
        )
    if found.dtype != np.bool_:
        if not np.all((found == 0) | (found == 1)):
            raise InputError("ground-truth masks must be boolean (or hold only 0 and 1)")
        found = found.astype(bool)
    empty = np.flatnonzero(~found.reshape(shape[0], -1).any(axis=1))
    if empty.size:
        raise InputError(f"the ground-truth mask of image {int(empty[0])} is empty")
    return found


def _to_layout(chunk: np.ndarray, backend: Backend) -> np.ndarray:
    if backend.input_layout == "channels_last":
        return np.ascontiguousarray(chunk.transpose(0, 2, 3, 1))
    return chunk


def _host_outputs(
    backend: Backend, count: int, batch_size: int, build: Callable[[int, int], np.ndarray]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """:func:`~groupcam_core.engine.forward_in_chunks` on channels-first host rows.

    ``build(start, stop)`` returns the rows ``start:stop``; yields ``(start,
    stop, outputs)`` with float64 host outputs.
    """
    chunks = forward_in_chunks(
        backend,
        count,
        batch_size,
        lambda start, stop: backend.prepare_input(_to_layout(build(start, stop), backend)),
        "the model (on metric inputs)",
    )
    for start, stop, outputs in chunks:
        yield start, stop, np.asarray(backend.to_numpy(outputs), dtype=np.float64)


def _target_probabilities(outputs: np.ndarray, targets: np.ndarray, probabilities: bool) -> Any:
    """Probability of each row's target: a log-sum-exp softmax unless already probabilities."""
    picked = np.take_along_axis(outputs, targets[:, None], axis=1)[:, 0]
    if probabilities:
        return picked
    top = outputs.max(axis=1)
    log_total = top + np.log(np.exp(outputs - top[:, None]).sum(axis=1))
    return np.exp(picked - log_total)


def _clean_pass(
    backend: Backend, images: np.ndarray, targets: TargetSpec, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Targets (given or predicted) and their probabilities on the clean images."""
    outputs = np.concatenate(
        [
            out
            for _, _, out in _host_outputs(
                backend, images.shape[0], batch_size, lambda a, b: images[a:b]
            )
        ]
    )
    resolved = np.asarray(make_target_resolver(targets, images.shape[0])(outputs), dtype=np.int64)
    return resolved, _target_probabilities(outputs, resolved, backend.outputs_probabilities)


def _scores(
    backend: Backend,
    count: int,
    batch_size: int,
    build: Callable[[int, int], np.ndarray],
    row_targets: np.ndarray,
) -> np.ndarray:
    """Probability of ``row_targets[r]`` on each built row ``r``."""
    scores = np.empty(count, dtype=np.float64)
    for start, stop, outputs in _host_outputs(backend, count, batch_size, build):
        scores[start:stop] = _target_probabilities(
            outputs, row_targets[start:stop], backend.outputs_probabilities
        )
    return scores


# -- deletion and insertion ----------------------------------------------------


def curve_auc(curves: Any) -> np.ndarray:
    """Normalised trapezoidal area under curves sampled at ``n + 1`` equally spaced steps.

    ``(sum(curve) - (curve[0] + curve[-1]) / 2) / n`` along the last axis: the
    x axis runs from 0 to 1 in steps of ``1 / n`` (RISE's ``auc``).

    Parameters
    ----------
    curves
        ``(..., n + 1)`` values, ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``(...)`` float64 areas.
    """
    values = np.asarray(curves, dtype=np.float64)
    if values.ndim < 1 or values.shape[-1] < 2:
        raise InputError(f"a curve needs at least 2 points, got shape {values.shape}")
    steps = values.shape[-1] - 1
    return (values.sum(axis=-1) - (values[..., 0] + values[..., -1]) / 2.0) / steps


def _causal(
    kind: Literal["deletion", "insertion"],
    model: ModelLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec,
    step: int | None,
    batch_size: int | None,
    blur_kernel_size: int,
    blur_sigma: float,
) -> CausalCurves:
    with as_backend(model, x) as backend:
        chunk = _chunk_size(backend, batch_size)
        images = _host_batch(backend, x)
        batch, _, height, width = images.shape
        maps = _check_maps(saliency, (batch, height, width))
        pixels = height * width
        step = max(1, pixels // DEFAULT_STEPS) if step is None else step
        step = positive_int(step, "step")
        steps = -(-pixels // step)

        # rank[b, p]: position of pixel p in image b's order of decreasing saliency
        # (a stable sort: ties go in pixel index order).
        order = np.argsort(-maps.reshape(batch, pixels), axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(pixels)[None, :], axis=1)
        rank = rank.reshape(batch, 1, height, width)

        resolved, clean = _clean_pass(backend, images, targets, chunk)
        if kind == "deletion":
            start_images, end_images = images, np.zeros((), dtype=images.dtype)
            computed = np.arange(1, steps + 1)  # step 0 is the clean image
        else:
            blurred = ops.blur_images(
                images.astype(np.float64), blur_kernel_size, blur_sigma, array_namespace(images)
            )
            start_images, end_images = blurred.astype(images.dtype), images
            computed = np.arange(0, steps)  # step n is the clean image

        # One row per (image, step), image-major, all run through the model in chunks.
        row_image = np.repeat(np.arange(batch), computed.size)
        row_taken = np.tile(computed * step, batch)

        def build(first: int, last: int) -> np.ndarray:
            owners = row_image[first:last]
            taken = rank[owners] < row_taken[first:last, None, None, None]
            end = end_images[owners] if end_images.ndim else end_images
            return np.where(taken, end, start_images[owners])

        scores = _scores(backend, row_image.size, chunk, build, resolved[row_image])

    curves = np.empty((batch, steps + 1), dtype=np.float64)
    if kind == "deletion":
        curves[:, 0] = clean
        curves[:, 1:] = scores.reshape(batch, steps)
    else:
        curves[:, :-1] = scores.reshape(batch, steps)
        curves[:, -1] = clean
    return CausalCurves(
        kind=kind, curves=curves, auc=curve_auc(curves), targets=resolved, step=step
    )


def deletion(
    model: ModelLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec = None,
    *,
    step: int | None = None,
    batch_size: int | None = None,
) -> CausalCurves:
    """Deletion curves: remove the most salient pixels first and track the target probability.

    The protocol of RISE, as the Group-CAM evaluation ran it: pixels are taken
    in order of decreasing saliency (a stable sort, ties in row-major pixel
    order), ``step`` pixels per step over ``n = ceil(H * W / step)`` steps.
    Each step sets the taken pixels, in all channels, to 0 in the model's input
    space (the normalised input, as RISE did). Lower AUC is better.

    Parameters
    ----------
    model
        A groupcam explainer or a :class:`~groupcam_core.protocol.Backend`.
    x
        The batch, as the model consumes it, in the model's layout.
    saliency
        ``(B, H, W)`` maps; only their order matters.
    targets
        ``None`` (the class predicted on the clean image), one int, or one int
        per image.
    step
        Pixels per step; ``None`` for ``max(1, H * W // 112)`` (448 at 224 x 224,
        the Group-CAM evaluation's setting, 112 steps).
    batch_size
        Rows per forward pass, over all images and steps; ``None`` for the
        backend's default.

    Returns
    -------
    CausalCurves
        ``curves`` of ``n + 1`` points (the clean image first, the all-zero
        image last), their ``auc``, ``targets`` and ``step``.
    """
    return _causal("deletion", model, x, saliency, targets, step, batch_size, 51, 50.0)


def insertion(
    model: ModelLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec = None,
    *,
    step: int | None = None,
    batch_size: int | None = None,
    blur_kernel_size: int = 51,
    blur_sigma: float = 50.0,
) -> CausalCurves:
    """Insertion curves: restore the most salient pixels first into a blurred image.

    The start image is the Gaussian-blurred image (kernel ``blur_kernel_size``,
    ``blur_sigma``, reflect border, as :func:`groupcam_core.ops.blur_images`);
    each step puts ``step`` original pixels back (all channels), in order of
    decreasing saliency (stable sort, ties in row-major pixel order). Higher AUC
    is better.

    Parameters
    ----------
    model
        A groupcam explainer or a :class:`~groupcam_core.protocol.Backend`.
    x
        The batch, as the model consumes it, in the model's layout.
    saliency
        ``(B, H, W)`` maps; only their order matters.
    targets
        ``None`` (the class predicted on the clean image), one int, or one int
        per image.
    step
        Pixels per step; ``None`` for ``max(1, H * W // 112)``.
    batch_size
        Rows per forward pass, over all images and steps; ``None`` for the
        backend's default.
    blur_kernel_size, blur_sigma
        The Gaussian blur of the start image (odd size, positive sigma).

    Returns
    -------
    CausalCurves
        ``curves`` of ``n + 1`` points (the blurred image first, the original
        image last), their ``auc``, ``targets`` and ``step``.
    """
    blur_kernel_size = positive_int(blur_kernel_size, "blur_kernel_size")
    if blur_kernel_size % 2 == 0:
        raise ConfigError(f"blur_kernel_size must be odd, got {blur_kernel_size}")
    if (
        isinstance(blur_sigma, bool)
        or not isinstance(blur_sigma, numbers.Real)
        or not math.isfinite(blur_sigma)
        or blur_sigma <= 0
    ):
        raise ConfigError(f"blur_sigma must be a positive number, got {blur_sigma!r}")
    return _causal(
        "insertion",
        model,
        x,
        saliency,
        targets,
        step,
        batch_size,
        blur_kernel_size,
        float(blur_sigma),
    )


# -- confidence ----------------------------------------------------------------


def average_drop_and_increase(
    model: ModelLike,
    x: Any,
    saliency: Any,
    targets: TargetSpec = None,
    *,
    batch_size: int | None = None,
) -> ConfidenceChange:
    """Average drop and increase in confidence when the model sees only the salient part.

    The masked image is ``x * saliency`` (the map broadcast over channels, in
    the model's input space). With Y the probability of the target on ``x`` and
    O on the masked image: average drop is the mean of ``max(0, Y - O) / Y``
    in percent; increase in confidence is the percentage of images with
    ``O > Y`` (Chattopadhyay et al. 2018; Wang et al. 2020).

    Parameters
    ----------
    model
        A groupcam explainer or a :class:`~groupcam_core.protocol.Backend`.
    x
        The batch, as the model consumes it, in the model's layout.
    saliency
        ``(B, H, W)`` maps with values in [0, 1].
    targets
        ``None`` (the class predicted on the clean image), one int, or one int
        per image.
    batch_size
        Rows per forward pass; ``None`` for the backend's default.

    Returns
    -------
    ConfidenceChange
        Per-image ``original``, ``masked``, ``drops`` and ``increased``, with the
        aggregates ``average_drop`` and ``increase_in_confidence``.
    """
    with as_backend(model, x) as backend:
        chunk = _chunk_size(backend, batch_size)
        images = _host_batch(backend, x)
        batch, _, height, width = images.shape
        maps = _check_maps(saliency, (batch, height, width))
        if maps.min() < 0 or maps.max() > 1:
            raise InputError(
                f"saliency maps must lie in [0, 1] to mask images, got values from "
                f"{maps.min():g} to {maps.max():g}; min-max normalise them first"
            )
        resolved, original = _clean_pass(backend, images, targets, chunk)
        weights = maps[:, None].astype(images.dtype)
        masked = _scores(backend, batch, chunk, lambda a, b: images[a:b] * weights[a:b], resolved)
    with np.errstate(divide="ignore", invalid="ignore"):
        drops = np.where(original > 0, np.maximum(original - masked, 0.0) / original, 0.0)
    return ConfidenceChange(
        original=original,
        masked=masked,
        drops=drops * 100.0,
        increased=masked > original,
        targets=resolved,
    )


# -- localisation ----------------------------------------------------------------


def pointing_game(saliency: Any, masks: Any, tolerance: float = 15.0) -> PointingGame:
    """The pointing game (Zhang et al. 2016): does each map's maximum hit the object?

    The point is the map's maximum; among equal maxima, the first in row-major
    order. It is a hit when its Euclidean distance to the nearest mask pixel is
    at most ``tolerance`` pixels (15 in the standard protocol). A constant map
    (for example a degenerate explanation, all zeros) points nowhere and counts
    as a miss.

    Parameters
    ----------
    saliency
        ``(B, H, W)`` maps.
    masks
        ``(B, H, W)`` boolean ground-truth masks (bounding boxes or segments),
        none of them empty.
    tolerance
        Distance in pixels, at least 0.

    Returns
    -------
    PointingGame
        Per-image ``hits``, ``points`` and ``distances``, and the ``accuracy``.
    """
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, numbers.Real)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ConfigError(f"tolerance must be a non-negative number of pixels, got {tolerance!r}")
    maps = _to_host(saliency)
    if maps.ndim != 3:
        raise InputError(f"saliency maps must have shape (B, H, W), got {maps.shape}")
    maps = _check_maps(maps, maps.shape)
    found = _check_masks(masks, maps.shape)
    batch, _, width = maps.shape
    flat_index = np.argmax(maps.reshape(batch, -1), axis=1)  # the first maximum
    points = np.stack([flat_index // width, flat_index % width], axis=1).astype(np.int64)
    distances = np.empty(batch, dtype=np.float64)
    for b in range(batch):
        rows, cols = np.nonzero(found[b])
        distances[b] = np.sqrt(np.min((rows - points[b, 0]) ** 2 + (cols - points[b, 1]) ** 2))
    constant = maps.reshape(batch, -1).max(axis=1) <= maps.reshape(batch, -1).min(axis=1)
    return PointingGame(
        hits=(distances <= tolerance) & ~constant,
        points=points,
        distances=distances,
        tolerance=float(tolerance),
    )


def energy_pointing_game(saliency: Any, masks: Any) -> EnergyPointingGame:
    """Energy-based pointing game (Wang et al. 2020): the share of saliency on the object.

    ``sum(saliency * mask) / sum(saliency)`` per image; 0 for a map that sums
    to 0.

    Parameters
    ----------
    saliency
        ``(B, H, W)`` non-negative maps.
    masks
        ``(B, H, W)`` boolean ground-truth masks, none of them empty.

    Returns
    -------
    EnergyPointingGame
        Per-image ``proportions`` and their ``mean``.
    """
    maps = _to_host(saliency)
    if maps.ndim != 3:
        raise InputError(f"saliency maps must have shape (B, H, W), got {maps.shape}")
    maps = _check_maps(maps, maps.shape)
    if maps.min() < 0:
        raise InputError(
            f"the energy pointing game needs non-negative saliency maps, got a minimum of "
            f"{maps.min():g}"
        )
    found = _check_masks(masks, maps.shape)
    total = maps.sum(axis=(1, 2))
    inside = (maps * found).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        proportions = np.where(total > 0, inside / total, 0.0)
    return EnergyPointingGame(proportions=proportions)


# -- model randomisation sanity check ---------------------------------------------


def _spearman() -> Callable[..., Any]:
    try:
        from scipy.stats import spearmanr
    except ImportError as error:
        raise ImportError(
            "groupcam_core.metrics.rank_correlations needs scipy; install it with "
            "`pip install scipy`"
        ) from error
    return spearmanr


def rank_correlations(
    original: Any, randomized: Iterable[tuple[str, Any]]
) -> RandomizationCorrelations:
    """Spearman rank correlation of each image's map with the maps of randomised models.

    Parameters
    ----------
    original
        ``(B, H, W)`` maps of the trained model.
    randomized
        ``(name, maps)`` pairs, one per randomisation step, each ``maps`` of the
        same shape as ``original``.

    Returns
    -------
    RandomizationCorrelations
        The names and a ``(steps, B)`` array of correlations over the flattened
        pixels; a constant map (no ranking) correlates 0 with anything.

    Notes
    -----
    Needs scipy (``scipy.stats.spearmanr``). Adebayo et al. (2018) expect the
    correlation to fall as more layers are randomised; maps that stay similar
    do not depend on what the model learnt.
    """
    spearmanr = _spearman()
    reference = _to_host(original)
    if reference.ndim != 3:
        raise InputError(f"original maps must have shape (B, H, W), got {reference.shape}")
    reference = _check_maps(reference, reference.shape, "original")
    flat_reference = reference.reshape(reference.shape[0], -1)
    constant_reference = np.ptp(flat_reference, axis=1) == 0
    names: list[str] = []
    rows: list[np.ndarray] = []
    for name, maps in randomized:
        other = _check_maps(maps, reference.shape, f"randomised ({name})")
        flat = other.reshape(other.shape[0], -1)
        row = np.zeros(reference.shape[0], dtype=np.float64)
        for b in range(reference.shape[0]):
            if constant_reference[b] or np.ptp(flat[b]) == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = float(spearmanr(flat_reference[b], flat[b])[0])
            row[b] = value if math.isfinite(value) else 0.0
        names.append(str(name))
        rows.append(row)
    correlations = np.stack(rows) if rows else np.zeros((0, reference.shape[0]), dtype=np.float64)
    return RandomizationCorrelations(names=tuple(names), correlations=correlations)


def _maps_and_targets(explainer: Any, x: Any, targets: TargetSpec) -> tuple[np.ndarray, Any]:
    if hasattr(explainer, "explain"):
        result = explainer.explain(x, targets)
        return _to_host(result.saliency), result.targets
    if callable(explainer):
        return _to_host(explainer(x, targets)), targets
    raise BackendError(
        "make_explainer must return a groupcam explainer or a callable (x, targets) -> maps, "
        f"got {type(explainer).__name__}"
    )


def sanity_check(
    make_explainer: Callable[[Any], Any],
    model: Any,
    randomized_models: Iterable[tuple[str, Any]],
    x: Any,
    targets: TargetSpec = None,
) -> RandomizationCorrelations:
    """Model-randomisation sanity check (Adebayo et al. 2018) for any saliency method.

    Explains ``x`` with the trained model, then with each randomised model, and
    compares the maps by rank correlation (:func:`rank_correlations`). The
    randomised models explain the same classes as the trained one: the given
    ``targets``, or the classes the trained model's explanation chose.

    Parameters
    ----------
    make_explainer
        ``model -> explainer``, for example
        ``lambda m: groupcam_torch.GroupCAM(m, target_layer="layer4")``. The
        explainer is a groupcam explainer (its ``explain`` is used) or any
        callable ``(x, targets) -> (B, H, W) maps``.
    model
        The trained model.
    randomized_models
        ``(name, model)`` pairs, consumed one at a time; for example
        ``groupcam_torch.randomization.cascading_randomization(model)``.
    x
        The batch to explain.
    targets
        ``None``, one int, or one int per image.

    Returns
    -------
    RandomizationCorrelations
    """
    original, chosen = _maps_and_targets(make_explainer(model), x, targets)

    def explained() -> Iterator[tuple[str, np.ndarray]]:
        for name, randomized in randomized_models:
            yield name, _maps_and_targets(make_explainer(randomized), x, chosen)[0]

    return rank_correlations(original, explained())
