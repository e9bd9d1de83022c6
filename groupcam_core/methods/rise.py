"""RISE (Petsiuk, Das and Saenko, BMVC 2018), as its authors' public code computes it."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from .. import ops
from ..arguments import positive_int, real_number
from ..batches import prepare_batch
from ..forward import forward_in_chunks, resolve_batch_size
from ..kit.explainer import as_backend, preferred_batch_size
from ..per_image import explain_by_target, groups_of, merge_method_results
from ..targets import ClassObjective, TargetSpec, target_probabilities
from .result import MethodResult, finish

__all__ = ["rise", "rise_masks", "run_rise"]


@lru_cache(maxsize=64)
def _bilinear_reflect_matrix(out_size: int, in_size: int) -> np.ndarray:
    """``(out_size, in_size)`` bilinear resampling, half-pixel centers, mirror border.

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
    count = positive_int(masks, "masks", "the number of RISE masks")
    cell = positive_int(cell, "cell", "the side of the RISE grid in cells")
    keep = real_number(keep, "keep", "the chance a grid cell is kept", above=0.0, at_most=1.0)
    if seed is not None:
        positive_int(seed, "seed", "or None", minimum=0)
    return count, cell, keep


class _RiseMasks:
    """RISE's random masks, built on demand in a namespace from small factors.

    In 2-D, mask ``i`` is ``R[r_i : r_i + H] @ grid_i @ C[c_i : c_i + W].T``: the
    binary ``cell x cell`` grid upsampled bilinearly to ``(cell + 1) * ceil(H /
    cell)`` rows (likewise columns), then cropped at the random shift ``(r_i,
    c_i)``. With 1 or 3 spatial axes the grid has ``cell`` cells along each, and
    each axis is upsampled and cropped the same way.
    """

    def __init__(
        self,
        count: int,
        cell: int,
        keep: float,
        spatial: tuple[int, ...],
        seed: int | None,
        xp: Any,
        like: Any,
    ) -> None:
        rng = np.random.default_rng(seed)
        grids = (rng.random((count, *(cell,) * len(spatial))) < keep).astype(np.float64)
        cell_sizes = [-(-side // cell) for side in spatial]
        shifts = [rng.integers(0, cell_size, size=count) for cell_size in cell_sizes]
        self.xp, self.spatial, self.cell = xp, spatial, cell
        where = device(like)
        self.grids = ops.to_namespace(grids, xp, like)
        self.matrices = [
            ops.to_namespace(_bilinear_reflect_matrix((cell + 1) * cell_size, cell), xp, like)
            for cell_size in cell_sizes
        ]
        self.shifts = [xp.asarray(shift.tolist(), device=where) for shift in shifts]
        self.offsets = [
            xp.arange(side, dtype=shift.dtype, device=where)
            for side, shift in zip(spatial, self.shifts, strict=True)
        ]

    def _axis_matrices(self, index: Any) -> list[Any]:
        """Per mask and axis, the rows of that axis' upsampling at the mask's shift."""
        xp, count = self.xp, index.shape[0]
        matrices = []
        for matrix, shift, offsets, side in zip(
            self.matrices, self.shifts, self.offsets, self.spatial, strict=True
        ):
            rows = xp.take(shift, index, axis=0)[:, None] + offsets[None, :]
            matrices.append(
                xp.reshape(
                    xp.take(matrix, xp.reshape(rows, (-1,)), axis=0), (count, side, self.cell)
                )
            )
        return matrices

    def __call__(self, index: Any) -> Any:
        """The ``(n, *spatial)`` masks at integer positions ``index`` (``(n,)``)."""
        xp = self.xp
        grids = xp.take(self.grids, index, axis=0)
        matrices = self._axis_matrices(index)
        if len(matrices) == 2:
            rows, cols = matrices
            return xp.matmul(xp.matmul(rows, grids), xp.matrix_transpose(cols))
        # Upsample the leading grid axis, then move it last; after every axis the
        # axes are back in order at their new sizes.
        out = grids
        for matrix in matrices:
            count, first, *rest = out.shape
            flat = xp.matmul(matrix, xp.reshape(out, (count, first, math.prod(rest))))
            out = xp.reshape(flat, (count, matrix.shape[1], *rest))
            out = xp.permute_dims(out, (0, *range(2, out.ndim), 1))
        return out


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
    source = _RiseMasks(count, cell, keep, (int(height), int(width)), seed, xp, like)
    return np.asarray(source(xp.arange(count)))


def run_rise(
    explainer: Any,
    x: Any,
    targets: TargetSpec,
    masks: int,
    cell: int,
    keep: float,
    seed: int | None,
    batch_size: int | None,
) -> MethodResult:
    """RISE maps with their targets and costs; see :func:`rise`."""
    count, cell, keep = _check_rise_options(masks, cell, keep, seed)
    groups = groups_of(targets, x)
    if groups is not None:
        return explain_by_target(
            lambda images, shared: run_rise(
                explainer, images, shared, masks, cell, keep, seed, batch_size
            ),
            x,
            groups,
            merge_method_results,
        )
    with as_backend(explainer, x) as backend:
        size = resolve_batch_size(batch_size, backend, preferred_batch_size(explainer))
        batch = prepare_batch(backend, x)
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
        chosen = ClassObjective(targets, images, backend.model_outputs)(xp.concat(clean, axis=0))

        images_first = batch.channels_first()
        like = xp.zeros((), dtype=batch.dtype, device=where)
        source = _RiseMasks(count, cell, keep, batch.spatial, seed, xp, like)
        image_ids = xp.arange(images, device=where)
        pixels = batch.positions
        saliency = xp.zeros((images, pixels), dtype=batch.dtype, device=where)
        chunk_masks: dict[int, Any] = {}

        def masked_inputs(start: int, stop: int) -> Any:
            # Row r of the stream is mask r % N applied to image r // N.
            rows = xp.arange(start, stop, device=where)
            chunk_masks[start] = source(rows % count)
            return batch.to_input_layout(
                xp.take(images_first, rows // count, axis=0) * chunk_masks[start][:, None, ...]
            )

        for start, stop, outputs in forward_in_chunks(
            batch.backend,
            images * count,
            size,
            masked_inputs,
            "the model (on RISE's masked inputs)",
        ):
            owner = xp.arange(start, stop, device=where) // count
            probability = target_probabilities(
                outputs,
                xp.take(chosen, owner, axis=0),
                backend.model_outputs,
                batch.dtype,
                xp,
            )
            weights = xp.where(owner[None, :] == image_ids[:, None], probability[None, :], 0.0)
            mask = chunk_masks.pop(start)
            saliency = saliency + xp.matmul(weights, xp.reshape(mask, (stop - start, pixels)))
        saliency = xp.reshape(saliency, (images, *batch.spatial)) / (count * keep)
        passes = np.full(images, count + 1, dtype=np.int64)
        return finish(batch, saliency, chosen, passes, "rise")


def rise(
    explainer: Any,
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
    bilinearly (half-pixel centers, mirrored border, as scikit-image's
    ``resize(order=1, mode="reflect")``) to ``(cell + 1) * ceil(H / cell)`` by
    ``(cell + 1) * ceil(W / cell)`` and cropped to ``H x W`` at a random shift of
    less than one cell (with 1 or 3 spatial axes, the grid has ``cell`` cells
    along each and each axis is upsampled and cropped alike). The saliency of
    image ``b`` is
    ``sum_i P(target | x_b * M_i) * M_i / (N * keep)``, with the mask broadcast
    over the input channels and P the softmax probability (the model's own output
    for models that output probabilities). The same masks serve every image.

    Unlike the reference, which returns the expectation itself, the map is then
    min-max normalized to [0, 1] so that it compares with the other methods'
    maps; the ``1 / (N * keep)`` factor does not change that result.

    Parameters
    ----------
    explainer
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
        The float32 ``(B, *spatial)`` maps in [0, 1] (``(B, H, W)`` for images),
        zeros where a map is constant; :func:`run_rise` also gives the targets
        and the cost.

    Notes
    -----
    Cost: one clean forward pass (for the targets) plus N masked passes per image.
    """
    return run_rise(explainer, x, targets, masks, cell, keep, seed, batch_size).saliency
