"""Comparison methods on the backend protocol: Grad-CAM, Score-CAM and RISE.

Each method explains one batch through the same :class:`~groupcam_core.Backend`
as Group-CAM, so that any model an adapter serves can be explained by any of
them with one call::

    from groupcam_core.methods import explain_with, run_method

    maps = explain_with("score-cam", cam, x)            # cam: a groupcam GroupCAM
    result = run_method("rise", cam, x, masks=4000)     # maps, targets, pass counts

``model`` is either a backend or a groupcam explainer (``groupcam_torch.GroupCAM``
and its Keras and JAX siblings); an explainer lends its backend, target layer,
batch size and evaluation-mode handling. Masked inputs of every image stream
through ``backend.forward`` together, in chunks of ``batch_size`` rows (the last
chunk padded for backends with a fixed batch shape), and the masks are built
chunk by chunk in the backend's array namespace, on its device.

Every map is float32 ``(B, H, W)`` in [0, 1]; a constant map (nothing to
explain) is returned as zeros, never NaN.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from . import ops
from .config import GroupCAMConfig, make_config
from .engine import (
    _channels_first,
    _check_features,
    _compute_dtype,
    _target_probabilities,
    forward_in_chunks,
    validate_input,
)
from .engine import explain as explain_group_cam
from .errors import ConfigError
from .explainer import ExplainerBase, as_backend, positive_int
from .protocol import Backend
from .targets import TargetSpec, make_target_resolver

__all__ = [
    "METHODS",
    "MethodResult",
    "explain_with",
    "grad_cam",
    "rise",
    "rise_masks",
    "run_method",
    "score_cam",
]

#: The method names :func:`explain_with` and :func:`run_method` accept.
METHODS: tuple[str, ...] = ("group-cam", "grad-cam", "score-cam", "rise")


@dataclass(frozen=True)
class MethodResult:
    """Saliency maps of one method for a batch, with what they cost.

    Attributes
    ----------
    saliency
        float32 ``(B, H, W)``, each map in [0, 1]; all zeros where ``degenerate``.
    targets
        int64 ``(B,)``: the class each map explains.
    forward_passes
        int64 ``(B,)``: images run through the model for each image's map,
        counting the gradient pass (one forward and one backward) or the clean
        pass as one. Rows added only to pad a chunk are not counted. Grad-CAM: 1;
        Score-CAM: 1 + its non-constant channels (K at most); RISE: 1 + masks;
        Group-CAM: 1 + :attr:`Explanation.forward_passes
        <groupcam_core.Explanation.forward_passes>` (its masked and blurred passes).
    degenerate
        bool ``(B,)``: the map was constant before normalisation (returned as zeros).
    method
        The method's name, one of :data:`METHODS`.
    """

    saliency: np.ndarray
    targets: np.ndarray
    forward_passes: np.ndarray
    degenerate: np.ndarray
    method: str

    @property
    def total_forward_passes(self) -> int:
        """Images run through the model for the whole batch."""
        return int(self.forward_passes.sum())

    def __len__(self) -> int:
        return int(self.saliency.shape[0])


# -- shared plumbing -----------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """A prepared, validated input batch and what the methods need to know about it."""

    backend: Backend
    x: Any
    xp: Any
    dtype: Any
    size: int
    height: int
    width: int
    mask_axis: int
    layer: str | None


def _chunk_size(model: Any, backend: Backend, batch_size: int | None) -> int:
    if batch_size is None and isinstance(model, ExplainerBase):
        batch_size = model.batch_size
    if batch_size is None:
        batch_size = backend.default_batch_size
    return positive_int(batch_size, "batch_size")


def _prepare(backend: Backend, x: Any) -> _Batch:
    x = backend.prepare_input(x)
    xp = array_namespace(x)
    validate_input(x, backend.input_layout, xp)
    if backend.input_layout == "channels_first":
        height, width, mask_axis = x.shape[2], x.shape[3], 1
    else:
        height, width, mask_axis = x.shape[1], x.shape[2], 3
    return _Batch(
        backend=backend,
        x=x,
        xp=xp,
        dtype=_compute_dtype(x, xp),
        size=x.shape[0],
        height=height,
        width=width,
        mask_axis=mask_axis,
        layer=getattr(backend, "layer_name", None) or None,
    )


def _gradient_features(batch: _Batch, targets: TargetSpec) -> tuple[Any, Any, Any]:
    """One gradient pass: channels-first activations and gradients, and the targets."""
    backend, xp = batch.backend, batch.xp
    result = backend.gradient_pass(batch.x, make_target_resolver(targets, batch.size))
    activations = xp.astype(
        _channels_first(result.activations, backend.feature_layout, xp), batch.dtype
    )
    gradients = xp.astype(
        _channels_first(result.gradients, backend.feature_layout, xp), batch.dtype
    )
    _check_features(activations, gradients, batch.size, 1, batch.layer)
    return activations, gradients, result.targets


def _probabilities(batch: _Batch, outputs: Any, targets: Any) -> Any:
    return _target_probabilities(
        outputs, targets, batch.backend.outputs_probabilities, batch.dtype, batch.xp
    )


def _finish(
    batch: _Batch, maps: Any, targets: Any, passes: np.ndarray, method: str
) -> MethodResult:
    """The ending shared by all methods: min-max normalise and copy to the host."""
    saliency, degenerate = ops.min_max_normalise(maps, batch.xp)
    backend = batch.backend
    return MethodResult(
        saliency=backend.to_numpy(saliency).astype(np.float32),
        targets=backend.to_numpy(targets).astype(np.int64),
        forward_passes=np.asarray(passes, dtype=np.int64),
        degenerate=backend.to_numpy(degenerate).astype(bool),
        method=method,
    )


def _relu(values: Any, xp: Any) -> Any:
    return xp.maximum(values, xp.zeros_like(values))


# -- Grad-CAM -----------------------------------------------------------------


def _run_grad_cam(model: Any, x: Any, targets: TargetSpec) -> MethodResult:
    with as_backend(model, x) as backend:
        batch = _prepare(backend, x)
        xp = batch.xp
        activations, gradients, chosen = _gradient_features(batch, targets)
        alpha = xp.mean(gradients, axis=(2, 3))
        cam = _relu(xp.sum(alpha[:, :, None, None] * activations, axis=1), xp)
        upsampled = ops.resize_bilinear(cam, batch.height, batch.width, xp)
        passes = np.ones(batch.size, dtype=np.int64)
        return _finish(batch, upsampled, chosen, passes, "grad-cam")


def grad_cam(model: Any, x: Any, targets: TargetSpec = None) -> np.ndarray:
    """Grad-CAM saliency maps (Selvaraju et al., ICCV 2017).

    ``alpha_k`` is the spatial mean of the gradient of the target's raw output
    (the logit, or the probability for models that output probabilities) with
    respect to the target layer's channel ``k``; the map is
    ``ReLU(sum_k alpha_k A_k)`` at feature resolution, upsampled bilinearly to
    the input size (half-pixel centres) and min-max normalised. One gradient
    pass per image.

    Parameters
    ----------
    model
        A groupcam explainer (its model and target layer are used) or a
        :class:`~groupcam_core.Backend`.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1]; zeros where the map is constant.
    """
    return _run_grad_cam(model, x, targets).saliency


# -- Score-CAM ----------------------------------------------------------------


def _run_score_cam(model: Any, x: Any, targets: TargetSpec, batch_size: int | None) -> MethodResult:
    with as_backend(model, x) as backend:
        size = _chunk_size(model, backend, batch_size)
        batch = _prepare(backend, x)
        xp, count = batch.xp, batch.size
        activations, _, chosen = _gradient_features(batch, targets)
        _, channels, rows, cols = activations.shape
        maps = xp.reshape(activations, (count * channels, rows, cols))
        flat = xp.reshape(maps, (count * channels, rows * cols))
        # Constant channels (decided at feature resolution, like Group-CAM's step 7)
        # get no forward pass and no weight, as in the reference's `continue`.
        constant = xp.max(flat, axis=1) <= xp.min(flat, axis=1)
        (kept,) = xp.nonzero(~constant)
        owner = kept // channels
        kept_count = int(kept.shape[0])
        kept_targets = xp.take(chosen, owner, axis=0)

        flat_masks: dict[int, Any] = {}

        def masked_inputs(start: int, stop: int) -> Any:
            upsampled = ops.resize_bilinear(
                xp.take(maps, kept[start:stop], axis=0), batch.height, batch.width, xp
            )
            masks, flat_masks[start] = ops.min_max_normalise(upsampled, xp)
            masks = xp.expand_dims(xp.astype(masks, batch.x.dtype), axis=batch.mask_axis)
            return xp.take(batch.x, owner[start:stop], axis=0) * masks

        # A map that rounding made constant after upsampling gets no weight either
        # (the reference checks constancy after upsampling).
        scores = [
            xp.where(
                flat_masks.pop(start),
                0.0,
                _probabilities(batch, outputs, kept_targets[start:stop]),
            )
            for start, stop, outputs in forward_in_chunks(
                batch.backend,
                kept_count,
                size,
                masked_inputs,
                "the model (on Score-CAM's masked inputs)",
            )
        ]
        scores_all = (
            xp.concat(scores, axis=0)
            if scores
            else xp.zeros((0,), dtype=batch.dtype, device=device(batch.x))
        )
        # sum_k score_k * upsample(A_k) == upsample(sum_k score_k * A_k): bilinear
        # resampling is linear, so the weighted sum is taken at feature resolution.
        images = xp.arange(count, device=device(batch.x))
        weights = xp.where(owner[None, :] == images[:, None], scores_all[None, :], 0.0)
        merged = xp.matmul(weights, xp.take(flat, kept, axis=0))
        cam = ops.resize_bilinear(
            xp.reshape(merged, (count, rows, cols)), batch.height, batch.width, xp
        )
        kept_per_image = np.bincount(
            backend.to_numpy(owner).astype(np.int64), minlength=count
        ).astype(np.int64)
        return _finish(batch, _relu(cam, xp), chosen, kept_per_image + 1, "score-cam")


def score_cam(
    model: Any, x: Any, targets: TargetSpec = None, batch_size: int | None = None
) -> np.ndarray:
    """Score-CAM saliency maps (Wang et al., CVPR workshops 2020), as the reference code.

    This follows the authors' public implementation (``cam/scorecam.py`` of
    haofanwang/Score-CAM), which differs from the paper's Algorithm 1:

    1. One gradient pass gives the target layer's activations ``A`` (the gradients
       are not used) and the target classes.
    2. Each channel ``A_k`` is upsampled bilinearly to the input size and min-max
       normalised to [0, 1]: the mask ``M_k``. Constant channels are skipped (no
       pass, no weight).
    3. ``s_k`` = softmax probability of the target class on ``x * M_k`` (the mask
       broadcast over the input channels; no baseline is subtracted). For models
       that output probabilities, their output is used as is.
    4. The map is ``ReLU(sum_k s_k * upsample(A_k))``, min-max normalised: the
       weights are the probabilities themselves (the paper's softmax over
       channels of the score increases is not applied), and they weight the
       upsampled activations, not the normalised masks.

    Parameters
    ----------
    model
        A groupcam explainer or a :class:`~groupcam_core.Backend`.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.
    batch_size
        Rows per forward pass; all ``B * K`` masked inputs of the batch stream
        together. Defaults to the explainer's, else the backend's default.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1]; zeros where the map is constant.

    Notes
    -----
    Cost: one gradient pass plus one forward pass per non-constant channel and
    image (``B * K`` at most).
    """
    return _run_score_cam(model, x, targets, batch_size).saliency


# -- RISE -----------------------------------------------------------------------


@lru_cache(maxsize=64)
def _bilinear_reflect_matrix(out_size: int, in_size: int) -> np.ndarray:
    """``(out_size, in_size)`` bilinear resampling, half-pixel centres, mirror border.

    What ``skimage.transform.resize(order=1, mode="reflect", anti_aliasing=False)``
    computes along one axis: positions outside the samples mirror without
    repeating the edge sample, instead of being clamped.
    """
    source = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    lower = np.floor(source).astype(np.int64)
    upper_weight = source - lower
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, ops.reflect_index(lower, in_size)), 1.0 - upper_weight)
    np.add.at(matrix, (rows, ops.reflect_index(lower + 1, in_size)), upper_weight)
    matrix.setflags(write=False)
    return matrix


def _check_rise_options(masks: Any, cell: Any, keep: Any, seed: Any) -> tuple[int, int, float]:
    if isinstance(masks, bool) or not isinstance(masks, numbers.Integral) or masks < 1:
        raise ConfigError(f"masks must be a positive int (the number of RISE masks), got {masks!r}")
    if isinstance(cell, bool) or not isinstance(cell, numbers.Integral) or cell < 1:
        raise ConfigError(
            f"cell must be a positive int (the side of the RISE grid in cells), got {cell!r}"
        )
    if (
        isinstance(keep, bool)
        or not isinstance(keep, numbers.Real)
        or not math.isfinite(keep)
        or not 0.0 < keep <= 1.0
    ):
        raise ConfigError(
            f"keep must be a probability in (0, 1] (the chance a grid cell is kept), got {keep!r}"
        )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
    ):
        raise ConfigError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(masks), int(cell), float(keep)


class _RiseMasks:
    """RISE's random masks, built on demand in a namespace from small factors.

    Mask ``i`` is ``R[r_i : r_i + H] @ grid_i @ C[c_i : c_i + W].T``: the binary
    ``cell x cell`` grid upsampled bilinearly to ``(cell + 1) * ceil(H / cell)``
    rows (likewise columns), then cropped at the random shift ``(r_i, c_i)``.
    """

    def __init__(
        self,
        count: int,
        cell: int,
        keep: float,
        height: int,
        width: int,
        seed: int | None,
        xp: Any,
        like: Any,
    ) -> None:
        rng = np.random.default_rng(seed)
        grids = (rng.random((count, cell, cell)) < keep).astype(np.float64)
        cell_height, cell_width = -(-height // cell), -(-width // cell)
        row_shift = rng.integers(0, cell_height, size=count)
        col_shift = rng.integers(0, cell_width, size=count)
        self.xp, self.height, self.width, self.cell = xp, height, width, cell
        where = device(like)
        self.grids = ops.to_namespace(grids, xp, like)
        self.rows = ops.to_namespace(
            _bilinear_reflect_matrix((cell + 1) * cell_height, cell), xp, like
        )
        self.cols = ops.to_namespace(
            _bilinear_reflect_matrix((cell + 1) * cell_width, cell), xp, like
        )
        self.row_shift = xp.asarray(row_shift.tolist(), device=where)
        self.col_shift = xp.asarray(col_shift.tolist(), device=where)
        self.row_offsets = xp.arange(height, dtype=self.row_shift.dtype, device=where)
        self.col_offsets = xp.arange(width, dtype=self.col_shift.dtype, device=where)

    def __call__(self, index: Any) -> Any:
        """The ``(n, H, W)`` masks at integer positions ``index`` (``(n,)``)."""
        xp, count = self.xp, index.shape[0]
        row_index = xp.take(self.row_shift, index, axis=0)[:, None] + self.row_offsets[None, :]
        col_index = xp.take(self.col_shift, index, axis=0)[:, None] + self.col_offsets[None, :]
        rows = xp.reshape(
            xp.take(self.rows, xp.reshape(row_index, (-1,)), axis=0),
            (count, self.height, self.cell),
        )
        cols = xp.reshape(
            xp.take(self.cols, xp.reshape(col_index, (-1,)), axis=0),
            (count, self.width, self.cell),
        )
        grids = xp.take(self.grids, index, axis=0)
        return xp.matmul(xp.matmul(rows, grids), xp.matrix_transpose(cols))


def rise_masks(
    masks: int, height: int, width: int, cell: int = 7, keep: float = 0.5, seed: int | None = 0
) -> np.ndarray:
    """The masks :func:`rise` uses for an ``height x width`` input, as numpy.

    Parameters
    ----------
    masks
        Number of masks N.
    height, width
        Input size.
    cell, keep, seed
        As for :func:`rise`.

    Returns
    -------
    numpy.ndarray
        float64 ``(N, height, width)`` masks with values in [0, 1].
    """
    count, cell, keep = _check_rise_options(masks, cell, keep, seed)
    positive_int(height, "height")
    positive_int(width, "width")
    like = np.zeros((), dtype=np.float64)
    xp = array_namespace(like)
    source = _RiseMasks(count, cell, keep, int(height), int(width), seed, xp, like)
    return np.asarray(source(xp.arange(count)))


def _run_rise(
    model: Any,
    x: Any,
    targets: TargetSpec,
    masks: int,
    cell: int,
    keep: float,
    seed: int | None,
    batch_size: int | None,
) -> MethodResult:
    count, cell, keep = _check_rise_options(masks, cell, keep, seed)
    with as_backend(model, x) as backend:
        size = _chunk_size(model, backend, batch_size)
        batch = _prepare(backend, x)
        xp, images = batch.xp, batch.size
        where = device(batch.x)

        # The clean pass: targets (and a check of the model's outputs).
        clean = [
            outputs
            for _, _, outputs in forward_in_chunks(
                batch.backend,
                images,
                size,
                lambda start, stop: batch.x[start:stop, ...],
                "the model (on the input)",
            )
        ]
        chosen = make_target_resolver(targets, images)(xp.concat(clean, axis=0))

        like = xp.zeros((), dtype=batch.dtype, device=where)
        source = _RiseMasks(count, cell, keep, batch.height, batch.width, seed, xp, like)
        image_ids = xp.arange(images, device=where)
        pixels = batch.height * batch.width
        saliency = xp.zeros((images, pixels), dtype=batch.dtype, device=where)
        chunk_masks: dict[int, Any] = {}

        def masked_inputs(start: int, stop: int) -> Any:
            # Row r of the stream is mask r % N applied to image r // N.
            rows = xp.arange(start, stop, device=where)
            chunk_masks[start] = source(rows % count)
            mask = xp.expand_dims(
                xp.astype(chunk_masks[start], batch.x.dtype), axis=batch.mask_axis
            )
            return xp.take(batch.x, rows // count, axis=0) * mask

        for start, stop, outputs in forward_in_chunks(
            batch.backend,
            images * count,
            size,
            masked_inputs,
            "the model (on RISE's masked inputs)",
        ):
            owner = xp.arange(start, stop, device=where) // count
            probability = _probabilities(batch, outputs, xp.take(chosen, owner, axis=0))
            weights = xp.where(owner[None, :] == image_ids[:, None], probability[None, :], 0.0)
            mask = chunk_masks.pop(start)
            saliency = saliency + xp.matmul(weights, xp.reshape(mask, (stop - start, pixels)))
        saliency = xp.reshape(saliency, (images, batch.height, batch.width)) / (count * keep)
        passes = np.full(images, count + 1, dtype=np.int64)
        return _finish(batch, saliency, chosen, passes, "rise")


def rise(
    model: Any,
    x: Any,
    targets: TargetSpec = None,
    masks: int = 4000,
    cell: int = 7,
    keep: float = 0.5,
    seed: int | None = 0,
    batch_size: int | None = None,
) -> np.ndarray:
    """RISE saliency maps (Petsiuk, Das and Saenko, BMVC 2018).

    As the reference code (eclique/RISE): each of N masks is a ``cell x cell``
    binary grid whose cells are kept with probability ``keep``, upsampled
    bilinearly (half-pixel centres, mirrored border, as scikit-image's
    ``resize(order=1, mode="reflect")``) to ``(cell + 1) * ceil(H / cell)`` by
    ``(cell + 1) * ceil(W / cell)`` and cropped to ``H x W`` at a random shift of
    less than one cell. The saliency of image ``b`` is
    ``sum_i P(target | x_b * M_i) * M_i / (N * keep)``, with the mask broadcast
    over the input channels and P the softmax probability (the model's own output
    for models that output probabilities). The same masks serve every image.

    Unlike the reference, which returns the expectation itself, the map is then
    min-max normalised to [0, 1] so that it compares with the other methods'
    maps; the ``1 / (N * keep)`` factor does not change that result.

    Parameters
    ----------
    model
        A groupcam explainer or a :class:`~groupcam_core.Backend`. RISE needs no
        target layer and no gradient; only ``backend.forward`` is called.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.
    masks
        Number of masks N (4000 in the paper for ResNet50).
    cell
        Grid side s in cells (7 in the paper).
    keep
        Probability p that a grid cell is kept, in (0, 1] (0.5 in the paper).
    seed
        Seed of ``numpy.random.default_rng`` for the masks; the same seed gives
        the same masks and maps. ``None`` draws fresh masks each call.
    batch_size
        Rows per forward pass; all ``B * N`` masked inputs stream together.
        Defaults to the explainer's, else the backend's default.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1]; zeros where the map is constant.

    Notes
    -----
    Cost: one clean forward pass (for the targets) plus N masked passes per image.
    """
    return _run_rise(model, x, targets, masks, cell, keep, seed, batch_size).saliency


# -- Group-CAM and the dispatcher ------------------------------------------------


def _run_group_cam(
    model: Any,
    x: Any,
    targets: TargetSpec,
    config: GroupCAMConfig | str | None = None,
    batch_size: int | None = None,
) -> MethodResult:
    if config is None:
        config = model.config if isinstance(model, ExplainerBase) else GroupCAMConfig()
    else:
        config = make_config(config)
    with as_backend(model, x) as backend:
        size = _chunk_size(model, backend, batch_size)
        explanation = explain_group_cam(
            backend,
            x,
            targets=targets,
            config=config,
            batch_size=size,
            layer=getattr(backend, "layer_name", None) or None,
        )
    return MethodResult(
        saliency=explanation.saliency,
        targets=explanation.targets,
        forward_passes=explanation.forward_passes + 1,
        degenerate=explanation.degenerate,
        method="group-cam",
    )


_RUNNERS: dict[str, tuple[Callable[..., MethodResult], tuple[str, ...]]] = {
    "group-cam": (_run_group_cam, ("config", "batch_size")),
    "grad-cam": (_run_grad_cam, ()),
    "score-cam": (_run_score_cam, ("batch_size",)),
    "rise": (_run_rise, ("masks", "cell", "keep", "seed", "batch_size")),
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "group-cam": {},
    "grad-cam": {},
    "score-cam": {"batch_size": None},
    "rise": {"masks": 4000, "cell": 7, "keep": 0.5, "seed": 0, "batch_size": None},
}


def run_method(
    method: str, model: Any, x: Any, targets: TargetSpec = None, **options: Any
) -> MethodResult:
    """Explain a batch with any method of :data:`METHODS`; maps, targets and costs.

    Parameters
    ----------
    method
        ``"group-cam"``, ``"grad-cam"``, ``"score-cam"`` or ``"rise"`` (case and
        underscores are forgiven: ``"Score_CAM"`` works).
    model
        A groupcam explainer or a :class:`~groupcam_core.Backend`.
    x
        The batch the model consumes, in its input layout.
    targets
        ``None`` (each image's top class), one int for all images, or one int per image.
    **options
        The method's options. ``"group-cam"``: ``config`` (a
        :class:`~groupcam_core.GroupCAMConfig` or a variant name; default: the
        explainer's configuration, else the "paper" preset) and ``batch_size``
        (default: the explainer's, else the backend's). ``"score-cam"``:
        ``batch_size``. ``"rise"``: ``masks``, ``cell``, ``keep``, ``seed``,
        ``batch_size`` (see :func:`rise`). ``"grad-cam"``: none.

    Returns
    -------
    MethodResult
    """
    if not isinstance(method, str):
        raise ConfigError(f"method must be a name, one of {list(METHODS)}; got {method!r}")
    name = method.strip().lower().replace("_", "-")
    if name not in _RUNNERS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    runner, accepted = _RUNNERS[name]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = ", ".join(accepted) if accepted else "none"
        raise ConfigError(
            f"{name} has no option {', '.join(repr(u) for u in unknown)}; its options are: {known}"
        )
    return runner(model, x, targets, **{**_DEFAULTS[name], **options})


def explain_with(
    method: str, model: Any, x: Any, targets: TargetSpec = None, **options: Any
) -> np.ndarray:
    """Saliency maps of a batch with any method of :data:`METHODS`.

    The same as ``run_method(method, model, x, targets, **options).saliency``;
    see :func:`run_method` for the parameters.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)`` maps in [0, 1].
    """
    return run_method(method, model, x, targets, **options).saliency
