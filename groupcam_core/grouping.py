"""Channel grouping by k-means, written against the Python array API.

Group-CAM's paper splits the ``K`` channels of the target layer into ``G`` contiguous
groups. The public reference code can instead cluster the channels with
``sklearn.cluster.KMeans(n_clusters=G, random_state=0)``: each channel is one sample,
its flattened, gradient-weighted activation ``alpha_k * A_k`` (``u*v`` values, not
normalized) is the feature vector. This module does the same clustering, per image,
in the namespace and on the device of the input (numpy, torch, jax.numpy):

* **Initialization**: greedy k-means++, as scikit-learn does it (first center uniform,
  then ``2 + floor(ln G)`` candidates per step drawn with probability proportional to
  the squared distance to the nearest chosen center, keeping the candidate that
  lowers the potential most). Only the uniform random numbers come from a
  ``numpy.random.default_rng(seed)``; they are drawn once, independently of the data,
  and shared by every image, so an image's grouping does not depend on the other
  images of its batch. Everything data-dependent happens on the device. The distances
  to the chosen centers are computed directly, so a copy of a chosen pattern (dead,
  all-zero channels are common) has weight exactly 0 and is never drawn again.
* **Lloyd iterations**: a fixed number, with no data-dependent Python control flow (so
  the functions trace under ``jax.jit``). Once the labels stop changing, further
  iterations are exact no-ops, so enough iterations give the converged result; the
  ``converged`` flag of :class:`KMeansGrouping` tells whether the last one changed
  anything. Each iteration is two batched matrix products (``(B, K, N+1) x (B, N+1,
  G)`` for the distances, ``(B, G, K) x (B, K, N+1)`` for the sums and counts), one
  argmin and one sort of ``K`` distances per image.
* **Empty clusters** are handled as scikit-learn's Lloyd does: inside an iteration, a
  cluster that lost all its points takes the point farthest from its own center (the
  ``j``-th empty cluster, in label order, the ``j``-th farthest point; ties broken by
  the lower channel index). Unlike there, a point that sits on its center is never
  moved. So with fewer distinct patterns than groups (once every pattern is a center,
  k-means++ repeats one; the repeat takes no points) the surplus clusters end empty:
  their rows of the grouping matrix are all zeros, their group maps are constant and
  Group-CAM skips them (or, with ``skip_constant_masks=False``, uses all-zero masks).
* **Group order** does not depend on label permutations: groups are sorted by the
  smallest channel index they contain (group 0 always holds channel 0); empty groups
  come last.
* **More groups than channels** (``G > K``) raises :class:`~groupcam_core.ConfigError`,
  as scikit-learn does and as Group-CAM's contiguous grouping does (``check_groups``).

The data are centered per image before clustering (k-means is translation invariant;
scikit-learn does the same), and distances use ``|x|^2 - 2 x.c + |c|^2`` with one
matrix product, in float64 for float64 input and float32 otherwise (half-precision
input is upcast). Patterns must be finite.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import device

from .dtypes import compute_dtype
from .errors import ConfigError

__all__ = [
    "DEFAULT_ITERATIONS",
    "KMeansGrouping",
    "kmeans_group_matrices",
    "kmeans_grouping",
    "kmeans_plus_plus",
    "lloyd",
    "take_centers",
]

#: Lloyd iterations run by default. scikit-learn allows up to 300 and stops at convergence;
#: on EfficientNet-Lite0's head activations Lloyd converges within 15, on noise within 50.
DEFAULT_ITERATIONS = 50


@dataclass(frozen=True)
class KMeansGrouping:
    """The k-means grouping of the channels of a batch.

    Attributes
    ----------
    matrices
        ``(B, G, K)`` 0/1 matrices in the dtype of the patterns (float32 for integer
        input): ``matrices[b, g, k] == 1`` when channel ``k`` of image ``b`` is in
        group ``g``. Groups are sorted by their smallest channel index; empty groups
        (all-zero rows) come last.
    labels
        ``(B, K)`` integer group of each channel, in the same group order.
    converged
        ``(B,)`` bool: the last Lloyd iteration left the labels unchanged (the result
        is a fixed point of Lloyd's algorithm).
    """

    matrices: Any
    labels: Any
    converged: Any


def kmeans_group_matrices(patterns: Any, groups: int, xp: Any, **options: Any) -> Any:
    """The ``(B, G, K)`` 0/1 matrices that sum k-means groups of channels, per image.

    A drop-in for the contiguous ``(G, K)`` matrix of ``ops.group_matrix``:
    ``xp.matmul(matrices, weighted)`` gives the ``(B, G, u*v)`` group maps, on
    the device of ``patterns``. Parameters (``seed``, ``iterations``,
    ``check_every`` among ``options``) and errors are those of
    :func:`kmeans_grouping`.
    """
    return kmeans_grouping(patterns, groups, xp, **options).matrices


def kmeans_grouping(
    patterns: Any,
    groups: int,
    xp: Any,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    check_every: int | None = None,
) -> KMeansGrouping:
    """Cluster each image's channels with k-means++ and Lloyd's algorithm.

    Parameters
    ----------
    patterns
        ``(B, K, N)`` array: for each image, the ``K`` channels' flattened spatial
        patterns (the reference clusters the weighted activations ``alpha_k * A_k``).
    groups
        Number of clusters ``G``, between 1 and ``K``.
    xp
        The array namespace of ``patterns``.
    seed
        Seed of the numpy generator that draws the k-means++ random numbers.
    iterations
        Number of Lloyd iterations (at most, with ``check_every``).
    check_every
        If given, stop early when every image has converged, testing every
        ``check_every`` iterations. The result is the same as without (a converged
        state is a fixed point), but each test reads one bool on the host: a device
        synchronization, and not traceable by ``jax.jit``. ``None`` (the default): no
        test, exactly ``iterations`` iterations.

    Raises
    ------
    ValueError
        If ``patterns`` is not 3-D, ``groups`` is not between 1 and ``K``,
        ``iterations`` is negative or ``check_every`` is below 1.

    Returns
    -------
    KMeansGrouping
        Matrices, labels and convergence flags.
    """
    points, out_dtype = _prepare(patterns, groups, xp)
    iterations = operator.index(iterations)
    if iterations < 0:
        raise ConfigError(f"iterations={iterations} must be >= 0")
    if check_every is not None and operator.index(check_every) < 1:
        raise ConfigError(f"check_every={check_every} must be >= 1 or None")
    chosen = kmeans_plus_plus(points, groups, xp, seed=seed, centered=True)
    centers = take_centers(points, chosen, xp)
    labels, _, converged = lloyd(
        points, centers, xp, iterations=iterations, check_every=check_every, centered=True
    )
    labels = _sort_groups(labels, groups, xp)
    where = device(points)
    matrices = labels[:, None, :] == xp.arange(groups, device=where)[None, :, None]
    return KMeansGrouping(
        matrices=xp.astype(matrices, out_dtype), labels=labels, converged=converged
    )


def kmeans_plus_plus(
    patterns: Any, groups: int, xp: Any, seed: int = 0, centered: bool = False
) -> Any:
    """Greedy k-means++ seeding, per image, as scikit-learn does it.

    Parameters
    ----------
    patterns
        ``(B, K, N)`` points.
    groups
        Number of centers ``G`` (1 to ``K``).
    xp
        The array namespace of ``patterns``.
    seed
        Seed of ``numpy.random.default_rng``; the same draws serve every image.
    centered
        ``patterns`` are already centered and in the working dtype (internal use).

    Returns
    -------
    Any
        ``(B, G)`` integer indices of the points chosen as initial centers, in the
        order chosen; ``xp.take_along_axis`` on ``patterns`` gives the centers.
    """
    points = patterns if centered else _prepare(patterns, groups, xp)[0]
    batch, channels, features = points.shape
    where = device(points)
    integer = _index_dtype(xp, where)
    trials = 2 + int(math.log(groups))
    rng = np.random.default_rng(seed)
    first = int(rng.integers(channels))
    draws = xp.asarray(rng.random((max(groups - 1, 0), trials)), dtype=points.dtype, device=where)

    norms = xp.sum(points * points, axis=-1)  # (B, K)
    position = xp.arange(channels, device=where)[None, :]
    chosen = [xp.full((batch, 1), first, dtype=integer, device=where)]
    # Squared distances to the nearest chosen center, computed exactly (not by expansion):
    # duplicates of a chosen point get exactly 0 and are never drawn.
    closest = _exact_distances(points, points[:, first : first + 1, :], xp)  # (B, K)
    for step in range(groups - 1):
        # Candidates drawn with probability closest / sum(closest), by inverse CDF: the first
        # point whose cumulative sum exceeds the threshold (scikit-learn's searchsorted), and
        # never beyond the last point with a positive weight (rounding of the draw).
        cumulative = xp.cumulative_sum(closest, axis=-1)  # (B, K)
        thresholds = draws[step][None, :] * cumulative[:, -1:]  # (B, L)
        below = xp.astype(cumulative[:, None, :] <= thresholds[:, :, None], integer)
        last = xp.max(xp.where(closest > 0, position, 0), axis=-1, keepdims=True)  # (B, 1)
        index = xp.minimum(xp.sum(below, axis=-1, dtype=integer), xp.astype(last, integer))
        candidates = xp.take_along_axis(
            points, xp.broadcast_to(index[:, :, None], (batch, trials, features)), axis=1
        )  # (B, L, N)
        # (B, L, K): squared distances from each candidate to every point (to rank them).
        to_candidates = xp.matrix_transpose(_distances(points, norms, candidates, xp))
        potential = xp.sum(xp.minimum(closest[:, None, :], to_candidates), axis=-1)  # (B, L)
        best = xp.astype(xp.argmin(potential, axis=-1), integer)[:, None]  # (B, 1)
        chosen.append(xp.take_along_axis(index, best, axis=1))
        center = xp.take_along_axis(
            candidates, xp.broadcast_to(best[:, :, None], (batch, 1, features)), axis=1
        )
        closest = xp.minimum(closest, _exact_distances(points, center, xp))
    return xp.concat(chosen, axis=1)


def take_centers(patterns: Any, indices: Any, xp: Any) -> Any:
    """The ``(B, G, N)`` centers that ``(B, G)`` ``indices`` pick from ``(B, K, N)`` patterns."""
    batch, _, features = patterns.shape
    shape = (batch, indices.shape[1], features)
    return xp.take_along_axis(patterns, xp.broadcast_to(indices[:, :, None], shape), axis=1)


def lloyd(
    patterns: Any,
    centers: Any,
    xp: Any,
    iterations: int = DEFAULT_ITERATIONS,
    check_every: int | None = None,
    centered: bool = False,
) -> tuple[Any, Any, Any]:
    """Run a fixed number of Lloyd iterations from given centers, per image.

    Each iteration assigns every point to its nearest center (ties: lowest label),
    relocates empty clusters to the farthest points (see the module docstring) and
    moves each center to the mean of its points; a final assignment step labels the
    points with the final centers, as scikit-learn's ``KMeans`` does.

    Parameters
    ----------
    patterns
        ``(B, K, N)`` points.
    centers
        ``(B, G, N)`` initial centers, in the coordinates of ``patterns``.
    xp
        The array namespace of ``patterns``.
    iterations
        Number of Lloyd iterations (at most, with ``check_every``).
    check_every
        See :func:`kmeans_grouping`.
    centered
        ``patterns`` and ``centers`` are already centered and in the working dtype
        (internal use).

    Returns
    -------
    labels, centers, converged
        ``(B, K)`` labels (indices into the centers, no reordering), ``(B, G, N)``
        final centers (centered coordinates when ``centered``, else those of
        ``patterns``) and ``(B,)`` bool flags: the last iteration changed no label.
    """
    groups = centers.shape[1]
    if centered:
        points, mean = patterns, None
    else:
        points, _ = _prepare(patterns, groups, xp, center=False)
        mean = xp.mean(points, axis=1, keepdims=True)
        points = points - mean
        centers = xp.astype(centers, points.dtype) - mean
    where = device(points)
    batch, channels, _ = points.shape
    norms = xp.sum(points * points, axis=-1)  # (B, K)
    # A column of ones: one product then gives |c|^2 - 2 x.c, another the sums and counts.
    ones = xp.ones((batch, channels, 1), dtype=points.dtype, device=where)
    augmented = xp.concat([points, ones], axis=-1)  # (B, K, N + 1)
    labels_of = xp.arange(groups, device=where)[None, :, None]
    previous = xp.full((batch, channels), -1, dtype=_index_dtype(xp, where), device=where)
    # A center equal to a lower-labeled one (k-means++ repeats points once every point sits
    # on a center) takes no points, so ties cannot split identical points between them.
    penalty = _duplicate_penalty(centers, xp)  # (B, 1, G): 0 or +inf
    for iteration in range(iterations):
        partial = _partial_distances(augmented, centers, xp) + penalty  # (B, K, G)
        labels = xp.argmin(partial, axis=-1)
        if (
            check_every
            and iteration > 0
            and iteration % check_every == 0
            and bool(xp.all(labels == previous))
        ):
            break  # the centers are the means of these labels already: a fixed point
        previous = labels
        closest = norms + xp.min(partial, axis=-1)  # squared distance to the own center
        closest = xp.maximum(closest, xp.zeros_like(closest))
        onehot = xp.astype(labels[:, None, :] == labels_of, points.dtype)  # (B, G, K)
        totals = xp.matmul(onehot, augmented)  # (B, G, N + 1): sums, then counts
        totals = totals + _relocation(totals, labels, closest, augmented, centers, xp)
        counts = totals[..., -1:]
        means = totals[..., :-1] / xp.maximum(counts, xp.ones_like(counts))
        centers = xp.where(counts > 0, means, centers)
        penalty = xp.where(xp.matrix_transpose(counts) > 0, 0.0, penalty)
    labels = xp.argmin(_partial_distances(augmented, centers, xp) + penalty, axis=-1)
    converged = xp.all(labels == xp.astype(previous, labels.dtype), axis=-1)
    if mean is not None:
        centers = centers + mean
    return labels, centers, converged


def _prepare(patterns: Any, groups: int, xp: Any, center: bool = True) -> tuple[Any, Any]:
    """Check the arguments; return the (centered) working-dtype points and the output dtype."""
    if patterns.ndim != 3:
        raise ConfigError(f"patterns must be (B, K, N), got shape {tuple(patterns.shape)}")
    groups = operator.index(groups)
    channels = patterns.shape[1]
    if not 1 <= groups <= channels:
        raise ConfigError(f"groups={groups} must be between 1 and the {channels} channels")
    work = compute_dtype(patterns, xp)
    floating = xp.isdtype(patterns.dtype, "real floating")
    points = xp.astype(patterns, work)
    if center:
        points = points - xp.mean(points, axis=1, keepdims=True)
    return points, patterns.dtype if floating else work


def _index_dtype(xp: Any, where: Any) -> Any:
    """The namespace's default integer dtype (int64, or int32 for jax without x64)."""
    return xp.arange(1, device=where).dtype


def _exact_distances(points: Any, center: Any, xp: Any) -> Any:
    """``(B, K)`` squared distances from ``(B, K, N)`` points to one ``(B, 1, N)`` center."""
    offset = points - center
    return xp.sum(offset * offset, axis=-1)


def _distances(points: Any, norms: Any, centers: Any, xp: Any) -> Any:
    """``(B, K, C)`` squared distances from ``(B, K, N)`` points to ``(B, C, N)`` centers."""
    cross = xp.matmul(points, xp.matrix_transpose(centers))
    center_norms = xp.sum(centers * centers, axis=-1)
    squared = norms[:, :, None] - 2.0 * cross + center_norms[:, None, :]
    return xp.maximum(squared, xp.zeros_like(squared))


def _duplicate_penalty(centers: Any, xp: Any) -> Any:
    """``(B, 1, G)``: +inf for a center exactly equal to a lower-labeled center, else 0."""
    groups = centers.shape[1]
    same = xp.all(centers[:, :, None, :] == centers[:, None, :, :], axis=-1)  # (B, G, G)
    label = xp.arange(groups, device=device(centers))
    duplicate = xp.any(same & (label[None, :] < label[:, None])[None, :, :], axis=-1)
    return xp.where(duplicate, math.inf, 0.0)[:, None, :]


def _partial_distances(augmented: Any, centers: Any, xp: Any) -> Any:
    """``(B, K, G)`` values ``|c|^2 - 2 x.c``: squared distances less ``|x|^2``, one product.

    ``augmented`` is ``(B, K, N + 1)``: the points with a column of ones.
    """
    squared = xp.sum(centers * centers, axis=-1, keepdims=True)
    terms = xp.concat([-2.0 * centers, squared], axis=-1)  # (B, G, N + 1)
    return xp.matmul(augmented, xp.matrix_transpose(terms))


def _relocation(
    totals: Any, labels: Any, closest: Any, augmented: Any, centers: Any, xp: Any
) -> Any:
    """The change of the ``(B, G, N + 1)`` sums and counts that refills empty clusters.

    ``totals`` holds each cluster's sum of points and, last, its count; ``labels`` the
    ``(B, K)`` assignment and ``closest`` each point's squared distance to its center. The
    ``j``-th empty cluster (in label order) takes the ``j``-th farthest point (stable order:
    the lower channel index first among equal distances), which leaves its old cluster,
    as in scikit-learn's Lloyd iteration. Unlike there, a point on its center (distance
    computed directly, at most ``K * eps`` relative: the rounding of a mean of ``K`` equal
    points) does not move, so with fewer distinct points than clusters some stay empty
    instead of cycling between equal centers. Only the ``G`` farthest points
    can move: this costs one sort of the ``K`` distances and ``(B, G, G)`` work.
    """
    batch, groups, width = totals.shape
    where = device(totals)
    integer = _index_dtype(xp, where)
    empty = totals[..., -1] == 0  # (B, G): counts are exact sums of ones
    empties = xp.sum(xp.astype(empty, integer), axis=-1, keepdims=True)  # (B, 1)
    target = xp.argsort(xp.astype(~empty, integer), axis=-1, stable=True)  # empty ones first
    farthest = xp.argsort(closest, axis=-1, descending=True, stable=True)[:, :groups]  # (B, G)
    source = xp.take_along_axis(labels, xp.astype(farthest, labels.dtype), axis=1)  # (B, G)
    rows = xp.take_along_axis(
        augmented, xp.broadcast_to(farthest[:, :, None], (batch, groups, width)), axis=1
    )  # (B, G, N + 1): the farthest points, with their count of one
    # Their distances, computed directly: a point that sits on its center never moves.
    own = xp.take_along_axis(
        centers, xp.broadcast_to(source[:, :, None], (batch, groups, width - 1)), axis=1
    )
    offset = rows[..., :-1] - own
    # A mean of up to K identical points can miss them by K roundings: closer than that
    # counts as on the center.
    scale = xp.sum(rows[..., :-1] * rows[..., :-1], axis=-1) + xp.sum(own * own, axis=-1)
    tolerance = (labels.shape[1] * xp.finfo(totals.dtype).eps) ** 2 * scale
    away = xp.sum(offset * offset, axis=-1) > tolerance  # (B, G)
    rank = xp.astype(xp.arange(groups, device=where)[None, :], integer)
    moving = xp.astype((rank < empties) & away, totals.dtype)  # (B, G)
    cluster = xp.arange(groups, device=where)[None, :, None]
    into = xp.astype(xp.astype(target, labels.dtype)[:, None, :] == cluster, totals.dtype)
    out_of = xp.astype(source[:, None, :] == cluster, totals.dtype)
    return xp.matmul((into - out_of) * moving[:, None, :], rows)


def _sort_groups(labels: Any, groups: int, xp: Any) -> Any:
    """Relabel clusters by their smallest channel index; empty clusters go last."""
    where = device(labels)
    channels = labels.shape[-1]
    member = labels[:, :, None] == xp.arange(groups, device=where)[None, None, :]
    index = xp.arange(channels, device=where)[None, :, None]
    first = xp.min(xp.where(member, index, channels), axis=1)  # (B, G)
    rank = xp.argsort(xp.argsort(first, axis=-1, stable=True), axis=-1, stable=True)
    return xp.take_along_axis(rank, labels, axis=-1)
