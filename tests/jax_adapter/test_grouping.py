"""The k-means channel grouping (groupcam_core.grouping) in numpy, torch and jax.numpy.

Checked against scikit-learn's KMeans (what the reference Group-CAM code calls)
given the same initial centers, on synthetic patterns and on EfficientNet-Lite0's
gradient-weighted head activations.
"""

from __future__ import annotations

import array_api_compat.numpy as xnp
import array_api_compat.torch as xtorch
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sklearn import cluster

from groupcam_core import ConfigError
from groupcam_core.grouping import (
    kmeans_group_matrices,
    kmeans_grouping,
    kmeans_plus_plus,
    lloyd,
    take_centers,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NAMESPACES = {
    "numpy": (xnp, lambda a: np.asarray(a)),
    "torch": (xtorch, lambda a: torch.from_numpy(np.array(a))),
    "jax": (jnp, lambda a: jnp.asarray(a)),
}


def planted(
    seed: int, batch: int, channels: int, groups: int, features: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Patterns around ``groups`` random centers per image, and the planted labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(batch, groups, features))
    labels = np.stack([rng.permutation(np.arange(channels) % groups) for _ in range(batch)])
    points = np.take_along_axis(centers, labels[:, :, None], axis=1)
    points = points + rng.normal(scale=noise, size=points.shape)
    return points, labels


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel each row's clusters in order of first appearance (smallest channel first)."""
    out = np.empty_like(labels)
    for b, row in enumerate(labels):
        _, first = np.unique(row, return_index=True)
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        out[b] = rank[np.searchsorted(np.unique(row), row)]
    return out


def as_numpy(array) -> np.ndarray:
    return np.asarray(array.cpu()) if hasattr(array, "cpu") else np.asarray(array)


def check_partition(matrices: np.ndarray) -> None:
    """0/1 matrices, each channel in exactly one group, groups by smallest channel, empties last."""
    assert set(np.unique(matrices)) <= {0.0, 1.0}
    np.testing.assert_array_equal(matrices.sum(axis=1), 1.0)
    for matrix in matrices:
        sizes = matrix.sum(axis=1)
        nonempty = sizes > 0
        count = int(nonempty.sum())
        assert nonempty[:count].all()
        assert not nonempty[count:].any()
        first = np.argmax(matrix[:count] > 0, axis=1)
        assert first[0] == 0
        assert (np.diff(first) > 0).all()


# (a) planted clusters are recovered.
@pytest.mark.parametrize("name", list(NAMESPACES))
def test_recovers_planted_clusters(name: str) -> None:
    xp, convert = NAMESPACES[name]
    points, labels = planted(0, batch=3, channels=200, groups=8, features=49, noise=0.5)
    result = kmeans_grouping(convert(points.astype(np.float32)), 8, xp, seed=0, iterations=20)
    np.testing.assert_array_equal(as_numpy(result.labels), canonical(labels))
    assert as_numpy(result.converged).all()
    expected = (canonical(labels)[:, None, :] == np.arange(8)[None, :, None]).astype(np.float32)
    np.testing.assert_array_equal(as_numpy(result.matrices), expected)


# (b) the same grouping in numpy, torch and jax.numpy (float32) for the same seed.
@pytest.mark.parametrize(
    "data",
    [
        planted(1, batch=4, channels=512, groups=32, features=49, noise=6.0)[0],
        np.random.default_rng(2).normal(size=(2, 300, 49)),
        np.maximum(np.random.default_rng(3).normal(size=(2, 1280, 49)), 0.0)
        * np.random.default_rng(4).normal(size=(2, 1280, 1)),
    ],
    ids=["noisy-planted", "gaussian", "relu-times-alpha"],
)
def test_same_result_in_every_namespace(data: np.ndarray) -> None:
    data = data.astype(np.float32)
    results = {}
    for name, (xp, convert) in NAMESPACES.items():
        matrices = kmeans_group_matrices(convert(data), 32, xp, seed=7, iterations=100)
        assert str(matrices.dtype).endswith("float32")
        results[name] = as_numpy(matrices)
        check_partition(results[name])
    np.testing.assert_array_equal(results["torch"], results["numpy"])
    np.testing.assert_array_equal(results["jax"], results["numpy"])


# (c) deterministic across calls, and independent of the rest of the batch.
def test_deterministic_and_batch_invariant() -> None:
    data = np.random.default_rng(5).normal(size=(3, 256, 49)).astype(np.float32)
    first = kmeans_group_matrices(data, 16, xnp, seed=3)
    np.testing.assert_array_equal(kmeans_group_matrices(data, 16, xnp, seed=3), first)
    alone = kmeans_group_matrices(data[1:2], 16, xnp, seed=3)
    np.testing.assert_array_equal(alone[0], first[1])
    reversed_batch = kmeans_group_matrices(data[::-1].copy(), 16, xnp, seed=3)
    np.testing.assert_array_equal(reversed_batch[::-1], first)


# (d) the same assignments as scikit-learn's KMeans from the same initial centers.
@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_matches_sklearn_kmeans(algorithm: str) -> None:
    data = np.random.default_rng(6).normal(size=(3, 400, 49))
    chosen = kmeans_plus_plus(data, 32, xnp, seed=0)
    centers = take_centers(data, chosen, xnp)
    labels, final, converged = lloyd(data, centers, xnp, iterations=60)
    assert converged.all()
    grouping = kmeans_grouping(data, 32, xnp, seed=0, iterations=60)
    for b in range(data.shape[0]):
        reference = cluster.KMeans(
            n_clusters=32, init=centers[b], n_init=1, max_iter=300, tol=0.0, algorithm=algorithm
        ).fit(data[b])
        np.testing.assert_array_equal(labels[b], reference.labels_)
        np.testing.assert_allclose(final[b], reference.cluster_centers_, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(grouping.labels[b], canonical(reference.labels_[None])[0])


def test_matches_sklearn_when_a_cluster_empties() -> None:
    """A center far from every point loses all of them; both relocate it to the farthest point."""
    data = np.random.default_rng(8).normal(size=(2, 150, 10))
    centers = take_centers(data, kmeans_plus_plus(data, 6, xnp, seed=1), xnp).copy()
    centers[:, 2, :] = 1e3  # nobody's nearest center
    labels, _, converged = lloyd(data, centers, xnp, iterations=60)
    assert converged.all()
    for b in range(2):
        reference = cluster.KMeans(
            n_clusters=6, init=centers[b], n_init=1, max_iter=300, tol=0.0, algorithm="lloyd"
        ).fit(data[b])
        np.testing.assert_array_equal(labels[b], reference.labels_)
        assert np.bincount(labels[b], minlength=6).min() > 0


# (e) fewer distinct patterns than groups: clusters stay empty, as zero rows at the end.
@pytest.mark.parametrize("name", list(NAMESPACES))
def test_empty_groups_when_patterns_repeat(name: str) -> None:
    xp, convert = NAMESPACES[name]
    distinct = np.random.default_rng(9).normal(size=(3, 12)).astype(np.float32)
    which = np.array([2, 0, 0, 1, 2, 2, 0, 1, 1, 0])
    data = np.stack([distinct[which], np.zeros((10, 12), np.float32)])  # image 2: all equal
    matrices = as_numpy(kmeans_group_matrices(convert(data), 5, xp, seed=0))
    check_partition(matrices)
    np.testing.assert_array_equal(
        matrices[0, :3], canonical(which[None])[0] == np.arange(3)[:, None]
    )
    np.testing.assert_array_equal(matrices[0, 3:], 0.0)
    np.testing.assert_array_equal(matrices[1, 0], 1.0)
    np.testing.assert_array_equal(matrices[1, 1:], 0.0)
    maps = np.matmul(matrices, data)  # empty groups give all-zero (constant) maps
    np.testing.assert_array_equal(maps[:, 3:], 0.0)


# (f) each channel in exactly one group, with the sums of Group-CAM preserved.
# Jax compiles each eager operation once per shape (seconds each): two shapes for jax only.
@pytest.mark.parametrize(
    ("name", "channels", "groups"),
    [
        (name, channels, groups)
        for channels, groups in [(64, 32), (100, 7), (33, 33), (50, 1)]
        for name in NAMESPACES
        if name != "jax" or channels in (100, 33)
    ],
)
def test_every_channel_in_one_group(name: str, channels: int, groups: int) -> None:
    xp, convert = NAMESPACES[name]
    data = np.random.default_rng(channels).normal(size=(2, channels, 9)).astype(np.float32)
    matrices = as_numpy(kmeans_group_matrices(convert(data), groups, xp, seed=0))
    assert matrices.shape == (2, groups, channels)
    check_partition(matrices)
    if channels == groups:  # every channel is its own group, in channel order
        np.testing.assert_array_equal(matrices, np.broadcast_to(np.eye(groups), matrices.shape))
    maps = np.matmul(matrices, data)
    np.testing.assert_allclose(maps.sum(axis=1), data.sum(axis=1), rtol=1e-5, atol=1e-4)


def test_dtype_and_errors() -> None:
    half = torch.randn(1, 40, 9, dtype=torch.float16)
    assert kmeans_group_matrices(half, 4, xtorch).dtype == torch.float16
    assert kmeans_group_matrices(np.ones((1, 5, 3), np.int64), 2, xnp).dtype == np.float32
    assert kmeans_group_matrices(np.zeros((1, 5, 3)), 2, xnp).dtype == np.float64
    with pytest.raises(ConfigError, match="between 1 and the 5 channels"):
        kmeans_group_matrices(np.zeros((1, 5, 3)), 6, xnp)
    with pytest.raises(ConfigError, match="between 1 and"):
        kmeans_group_matrices(np.zeros((1, 5, 3)), 0, xnp)
    with pytest.raises(ConfigError, match="must be"):
        kmeans_group_matrices(np.zeros((5, 3)), 2, xnp)
    with pytest.raises(ConfigError, match="iterations"):
        kmeans_group_matrices(np.zeros((1, 5, 3)), 2, xnp, iterations=-1)


def test_traces_under_jax_jit() -> None:
    data = planted(10, batch=2, channels=64, groups=4, features=9, noise=0.5)[0]
    data = jnp.asarray(data.astype(np.float32))
    compiled = jax.jit(lambda p: kmeans_group_matrices(p, 4, jnp, seed=0, iterations=10))
    np.testing.assert_array_equal(
        np.asarray(compiled(data)), np.asarray(kmeans_group_matrices(data, 4, jnp, iterations=10))
    )


def _lite0_weighted() -> np.ndarray:
    """EfficientNet-Lite0's ``alpha_k * A_k`` at its head activation for the sample photos."""
    from groupcam.samples import load_sample_photos
    from groupcam.zoo.lite0_torch import efficientnet_lite0, photos_to_batch
    from groupcam_core.targets import ClassObjective
    from groupcam_torch import TorchBackend

    model = efficientnet_lite0()
    x = photos_to_batch(list(load_sample_photos().values()))
    result = TorchBackend(model, model._swish, "_swish").gradient_pass(
        x, ClassObjective(None, len(x), "logits")
    )
    activations = result.activations.double().numpy()
    alpha = result.gradients.double().numpy().mean(axis=(2, 3))
    return (activations * alpha[:, :, None, None]).reshape(len(x), activations.shape[1], -1)


@pytest.mark.slow
def test_real_activations_match_sklearn_and_torch() -> None:
    data = _lite0_weighted()
    assert (np.abs(data).max(axis=-1) == 0).sum() > 100  # many dead channels: duplicates
    centers = take_centers(data, kmeans_plus_plus(data, 32, xnp, seed=0), xnp)
    labels, _, converged = lloyd(data, centers, xnp, iterations=100)
    assert converged.all()
    for b in range(data.shape[0]):
        reference = cluster.KMeans(
            n_clusters=32, init=centers[b], n_init=1, max_iter=300, tol=0.0, algorithm="lloyd"
        ).fit(data[b])
        np.testing.assert_array_equal(labels[b], reference.labels_)
    grouping = kmeans_grouping(data, 32, xnp, seed=0)
    assert grouping.converged.all()
    check_partition(grouping.matrices)
    in_torch = kmeans_group_matrices(torch.from_numpy(data), 32, xtorch, seed=0)
    np.testing.assert_array_equal(in_torch.numpy(), grouping.matrices)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_early_stop_gives_the_fixed_count_result(name: str) -> None:
    xp, convert = NAMESPACES[name]
    data = convert(np.random.default_rng(11).normal(size=(3, 300, 49)).astype(np.float32))
    full = kmeans_grouping(data, 32, xp, seed=2, iterations=150)
    assert as_numpy(full.converged).all()
    for check_every in (1, 4):
        early = kmeans_grouping(data, 32, xp, seed=2, iterations=150, check_every=check_every)
        np.testing.assert_array_equal(as_numpy(early.matrices), as_numpy(full.matrices))
        assert as_numpy(early.converged).all()
    with pytest.raises(ConfigError, match="check_every"):
        kmeans_grouping(data, 32, xp, check_every=0)
