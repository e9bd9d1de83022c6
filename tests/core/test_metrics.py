"""groupcam_core.metrics against plain loop oracles, on the fake numpy backend."""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend
from _support.oracle import gaussian_blur_image

from groupcam_core import (
    BackendError,
    CausalCurves,
    ConfigError,
    InputError,
    TargetError,
    average_drop_and_increase,
    curve_auc,
    deletion,
    energy_pointing_game,
    explain_group_cam,
    insertion,
    make_config,
    pointing_game,
    rank_correlations,
    sanity_check,
)
from groupcam_core.kit import ExplainerBase, as_backend

SIZE = 16  # the fake model pools by 4


def _batch(batch: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    x = rng.normal(scale=0.5, size=(batch, 3, SIZE, SIZE))
    for b in range(batch):
        cy, cx = rng.uniform(3, SIZE - 3, size=2)
        x[b] += 2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0) * rng.normal(size=(3, 1, 1))
    return x


def _maps(batch: int = 3, seed: int = 1) -> np.ndarray:
    # Quantized to a few levels so that many pixels tie: checks the tie order too.
    return np.round(np.random.default_rng(seed).uniform(size=(batch, SIZE, SIZE)) * 5) / 5


# -- oracles: one image, one step, one pixel at a time ----------------------------


def _probability(output: np.ndarray, target: int, already: bool) -> float:
    values = [float(v) for v in output]
    if already:
        return values[target]
    top = max(values)
    return math.exp(values[target] - top) / sum(math.exp(v - top) for v in values)


def _pixel_order(saliency: np.ndarray) -> list[int]:
    height, width = saliency.shape
    values = [float(saliency[p // width, p % width]) for p in range(height * width)]
    return sorted(range(height * width), key=lambda p: -values[p])  # Python's sort is stable


def _oracle_causal(backend, x_cf, saliency, kind, step, targets=None):
    batch, channels, height, width = x_cf.shape
    steps = math.ceil(height * width / step)
    curves, aucs, chosen = [], [], []
    for b in range(batch):
        image = x_cf[b]
        clean = backend.predict_one(image)
        target = int(np.argmax(clean)) if targets is None else int(targets[b])
        order = _pixel_order(saliency[b])
        start = image.copy() if kind == "deletion" else gaussian_blur_image(image)
        curve = []
        for i in range(steps + 1):
            current = start.copy()
            for p in order[: i * step]:
                row, col = divmod(p, width)
                for c in range(channels):
                    current[c, row, col] = 0.0 if kind == "deletion" else image[c, row, col]
            output = backend.predict_one(current)
            curve.append(_probability(output, target, backend.model_outputs == "probabilities"))
        area = 0.0
        for i in range(steps):
            area += (curve[i] + curve[i + 1]) / 2.0 / steps
        curves.append(curve)
        aucs.append(area)
        chosen.append(target)
    return np.array(curves), np.array(aucs), np.array(chosen)


class FakeExplainer(ExplainerBase):
    """A groupcam explainer around a fake backend that records its explanation context."""

    def __init__(self, backend: FakeNumpyBackend) -> None:
        super().__init__(backend, 4, "paper", None, {})
        self.backend = backend
        self.events: list[str] = []
        self.targets_seen: list[object] = []

    def _backend_for(self, x):
        return self.backend

    @contextmanager
    def _explaining(self):
        self.events.append("enter")
        try:
            yield
        finally:
            self.events.append("exit")

    def explain(self, x, targets=None):
        self.targets_seen.append(targets)
        return super().explain(x, targets)


# -- deletion and insertion ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
@pytest.mark.parametrize("targets", [None, [1, 4, 0]])
@pytest.mark.parametrize("softmax_output", [False, True])
def test_causal_curves_match_oracle(kind, targets, softmax_output) -> None:
    backend = FakeNumpyBackend(softmax_output=softmax_output)
    x, saliency = _batch(), _maps()
    metric = deletion if kind == "deletion" else insertion
    result = metric(backend, x, saliency, targets, step=10)
    curves, aucs, chosen = _oracle_causal(backend, x, saliency, kind, 10, targets)
    assert isinstance(result, CausalCurves)
    assert result.kind == kind
    assert result.step == 10
    assert result.steps == 26  # ceil(256 / 10)
    assert result.curves.shape == (3, 27)
    np.testing.assert_array_equal(result.targets, chosen)
    np.testing.assert_allclose(result.curves, curves, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.auc, aucs, rtol=1e-9, atol=1e-12)
    assert result.mean_auc == pytest.approx(aucs.mean())
    # The curves move: a wrong ordering or a no-op step would not match the oracle.
    assert np.ptp(result.curves, axis=1).min() > 1e-3


def test_predicted_targets_are_the_clean_argmax_and_given_targets_are_used() -> None:
    backend = FakeNumpyBackend()
    x, saliency = _batch(), _maps()
    predicted = backend.head(backend.features(x)).argmax(axis=1)
    free = deletion(backend, x, saliency, step=32)
    np.testing.assert_array_equal(free.targets, predicted)
    other = (predicted + 1) % 5
    forced = deletion(backend, x, saliency, other, step=32)
    np.testing.assert_array_equal(forced.targets, other)
    assert not np.allclose(forced.curves, free.curves)
    single = deletion(backend, x, saliency, 2, step=32)
    np.testing.assert_array_equal(single.targets, [2, 2, 2])


def test_deletion_ends_on_zeros_and_insertion_starts_on_the_blur() -> None:
    backend = FakeNumpyBackend()
    x, saliency = _batch(), _maps()
    zeros = backend.head(backend.features(np.zeros_like(x)))
    blurred = np.stack([gaussian_blur_image(image) for image in x])
    blur_out = backend.head(backend.features(blurred))
    clean = backend.head(backend.features(x))
    gone = deletion(backend, x, saliency, step=7)
    back = insertion(backend, x, saliency, step=7)
    for b in range(3):
        target = int(gone.targets[b])
        assert gone.curves[b, 0] == pytest.approx(_probability(clean[b], target, False))
        assert gone.curves[b, -1] == pytest.approx(_probability(zeros[b], target, False))
        assert back.curves[b, 0] == pytest.approx(_probability(blur_out[b], target, False))
        assert back.curves[b, -1] == pytest.approx(_probability(clean[b], target, False))


def test_default_step_gives_112_steps_of_h_w_over_112_pixels() -> None:
    backend = FakeNumpyBackend()
    x, saliency = _batch(2), _maps(2)
    result = deletion(backend, x, saliency)
    assert result.step == 2  # 256 // 112
    assert result.curves.shape == (2, 129)
    explicit = deletion(backend, x, saliency, step=2)
    np.testing.assert_array_equal(result.curves, explicit.curves)


def test_a_step_larger_than_the_image_gives_two_points() -> None:
    backend = FakeNumpyBackend()
    result = deletion(backend, _batch(), _maps(), step=10_000)
    curves, aucs, _ = _oracle_causal(backend, _batch(), _maps(), "deletion", 10_000)
    assert result.curves.shape == (3, 2)
    np.testing.assert_allclose(result.curves, curves, rtol=1e-12)
    np.testing.assert_allclose(result.auc, aucs, rtol=1e-12)


@pytest.mark.parametrize("metric", [deletion, insertion])
def test_chunk_size_does_not_change_the_curves(metric) -> None:
    x, saliency = _batch(), _maps()
    results = []
    for batch_size in (1, 5, 1000):
        backend = FakeNumpyBackend()
        results.append(metric(backend, x, saliency, step=20, batch_size=batch_size))
        rows = 3 * 13 + 3  # 13 steps computed per image, plus the clean pass
        assert sum(backend.chunk_rows) == rows
        assert max(backend.chunk_rows) == min(batch_size, 39)
    for other in results[1:]:
        np.testing.assert_allclose(other.curves, results[0].curves, rtol=1e-12, atol=1e-15)


def test_default_batch_size_is_the_backends() -> None:
    backend = FakeNumpyBackend(default_batch_size=6)
    deletion(backend, _batch(), _maps(), step=20)
    assert max(backend.chunk_rows) == 6


@pytest.mark.parametrize("metric", [deletion, insertion])
def test_fixed_batch_shape_pads_the_last_chunk(metric) -> None:
    x, saliency = _batch(), _maps()
    free = metric(FakeNumpyBackend(), x, saliency, step=20, batch_size=8)
    fixed_backend = FakeNumpyBackend(fixed_batch_shape=True)
    fixed = metric(fixed_backend, x, saliency, step=20, batch_size=8)
    # Clean pass: 3 rows -> padded to 4; steps: 39 rows -> 4 x 8 + 7 -> padded to 8.
    assert fixed_backend.chunk_rows == [4, 8, 8, 8, 8, 8]
    np.testing.assert_allclose(fixed.curves, free.curves, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("metric", [deletion, insertion])
def test_channels_last_layout_gives_the_same_curves(metric) -> None:
    x, saliency = _batch(), _maps()
    first = metric(FakeNumpyBackend(), x, saliency, step=20)
    last = metric(
        FakeNumpyBackend(layout="channels_last"), x.transpose(0, 2, 3, 1), saliency, step=20
    )
    np.testing.assert_allclose(last.curves, first.curves, rtol=1e-12, atol=1e-15)


def test_insertion_blur_settings_are_used() -> None:
    backend = FakeNumpyBackend()
    x, saliency = _batch(), _maps()
    default = insertion(backend, x, saliency, step=20)
    sharp = insertion(backend, x, saliency, step=20, blur_kernel_size=5, blur_sigma=1.0)
    blurred = np.stack([gaussian_blur_image(image, 5, 1.0) for image in x])
    start = backend.head(backend.features(blurred))
    for b in range(3):
        expected = _probability(start[b], int(sharp.targets[b]), False)
        assert sharp.curves[b, 0] == pytest.approx(expected, rel=1e-9)
    assert not np.allclose(sharp.curves[:, 0], default.curves[:, 0])


def test_an_explainer_is_accepted_and_its_context_entered_and_left() -> None:
    backend = FakeNumpyBackend()
    explainer = FakeExplainer(backend)
    x, saliency = _batch(), _maps()
    through_explainer = insertion(explainer, x, saliency, step=20, batch_size=4)
    assert explainer.events == ["enter", "exit"]
    direct = insertion(backend, x, saliency, step=20, batch_size=4)
    np.testing.assert_array_equal(through_explainer.curves, direct.curves)


def test_the_explainer_context_is_left_on_errors() -> None:
    explainer = FakeExplainer(FakeNumpyBackend())
    with pytest.raises(InputError):
        deletion(explainer, _batch(), _maps()[:, :8], step=20)
    assert explainer.events == ["enter", "exit"]


def test_as_backend_rejects_other_objects() -> None:
    with pytest.raises(BackendError, match="groupcam explainer"), as_backend(object(), None):
        pass  # pragma: no cover


def test_curve_auc_known_values() -> None:
    np.testing.assert_allclose(
        curve_auc([[1.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.0]]), [1.0, 0.5, 0.5]
    )
    assert curve_auc([0.2, 0.6]) == pytest.approx(0.4)
    with pytest.raises(InputError, match="at least 2 points"):
        curve_auc([1.0])


@pytest.mark.parametrize("metric", [deletion, insertion])
def test_causal_input_errors(metric) -> None:
    backend = FakeNumpyBackend()
    x, saliency = _batch(), _maps()
    with pytest.raises(InputError, match=r"\(B, H, W\) = \(3, 16, 16\)"):
        metric(backend, x, saliency[:2])
    with pytest.raises(InputError, match="shape"):
        metric(backend, x, saliency[0])
    bad = saliency.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        metric(backend, x, bad)
    nan_x = x.copy()
    nan_x[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        metric(backend, nan_x, saliency)
    with pytest.raises(InputError, match="1 to 3 spatial axes"):
        metric(backend, x[0, 0], saliency)
    for step in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="step"):
            metric(backend, x, saliency, step=step)
    for batch_size in (0, 1.5):
        with pytest.raises(ConfigError, match="batch_size"):
            metric(backend, x, saliency, batch_size=batch_size)
    with pytest.raises(TargetError, match="out of range"):
        metric(backend, x, saliency, [0, 1, 9], step=20)
    with pytest.raises(TargetError, match="2 targets"):
        metric(backend, x, saliency, [0, 1], step=20)


def test_insertion_blur_errors() -> None:
    backend = FakeNumpyBackend()
    with pytest.raises(ConfigError, match="odd"):
        insertion(backend, _batch(), _maps(), blur_kernel_size=4)
    with pytest.raises(ConfigError, match="blur_sigma"):
        insertion(backend, _batch(), _maps(), blur_sigma=0.0)


# -- average drop and increase in confidence ------------------------------------------


def _oracle_confidence(backend, x_cf, saliency, targets=None):
    batch, channels, height, width = x_cf.shape
    original, masked, drops, increased = [], [], [], []
    for b in range(batch):
        clean = backend.predict_one(x_cf[b])
        target = int(np.argmax(clean)) if targets is None else int(targets[b])
        image = np.empty_like(x_cf[b])
        for c in range(channels):
            for i in range(height):
                for j in range(width):
                    image[c, i, j] = x_cf[b, c, i, j] * saliency[b, i, j]
        y = _probability(clean, target, backend.model_outputs == "probabilities")
        o = _probability(
            backend.predict_one(image), target, backend.model_outputs == "probabilities"
        )
        original.append(y)
        masked.append(o)
        drops.append(max(0.0, y - o) / y * 100.0)
        increased.append(o > y)
    return np.array(original), np.array(masked), np.array(drops), np.array(increased)


@pytest.mark.parametrize("targets", [None, [3, 3, 1]])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_average_drop_and_increase_match_oracle(targets, layout) -> None:
    backend = FakeNumpyBackend(layout=layout, seed=3)
    x = _batch(6, seed=4)
    saliency = np.random.default_rng(5).uniform(size=(6, SIZE, SIZE))
    saliency[0] = 1.0  # unmasked: no change at all
    given = None if targets is None else targets * 2
    x_in = x if layout == "channels_first" else x.transpose(0, 2, 3, 1)
    result = average_drop_and_increase(backend, x_in, saliency, given, batch_size=4)
    original, masked, drops, increased = _oracle_confidence(backend, x, saliency, given)
    np.testing.assert_allclose(result.original, original, rtol=1e-12)
    np.testing.assert_allclose(result.masked, masked, rtol=1e-12)
    np.testing.assert_allclose(result.drops, drops, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(result.increased, increased)
    assert result.drops[0] == 0.0
    assert not result.increased[0]
    assert result.average_drop == pytest.approx(drops.mean())
    assert result.increase_in_confidence == pytest.approx(increased.mean() * 100)
    # Both outcomes occur, so a sign error or a swapped Y/O would be caught.
    assert 0 < result.increased.sum() < 6
    assert (result.drops > 0).sum() >= 1


def test_average_drop_rejects_maps_outside_unit_range() -> None:
    backend = FakeNumpyBackend()
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        average_drop_and_increase(backend, _batch(), _maps() * 2)
    with pytest.raises(InputError, match="shape"):
        average_drop_and_increase(backend, _batch(), _maps()[:, :, :4])


# -- pointing games ---------------------------------------------------------------------


def _oracle_pointing(saliency, masks, tolerance):
    hits = []
    for b in range(saliency.shape[0]):
        best, point = -math.inf, None
        for i in range(saliency.shape[1]):
            for j in range(saliency.shape[2]):
                if saliency[b, i, j] > best:
                    best, point = saliency[b, i, j], (i, j)
        nearest = math.inf
        for i in range(masks.shape[1]):
            for j in range(masks.shape[2]):
                if masks[b, i, j]:
                    nearest = min(nearest, math.hypot(i - point[0], j - point[1]))
        hits.append(nearest <= tolerance)
    return np.array(hits)


def _boxes(batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((batch, 40, 50), dtype=bool)
    for b in range(batch):
        top, left = rng.integers(0, 30), rng.integers(0, 40)
        masks[b, top : top + rng.integers(2, 10), left : left + rng.integers(2, 10)] = True
    return masks


@pytest.mark.parametrize("tolerance", [0, 4, 15])
def test_pointing_game_matches_oracle(tolerance) -> None:
    saliency = np.random.default_rng(0).uniform(size=(40, 40, 50))
    masks = _boxes(40, 1)
    result = pointing_game(saliency, masks, tolerance=tolerance)
    expected = _oracle_pointing(saliency, masks, tolerance)
    np.testing.assert_array_equal(result.hits, expected)
    assert result.accuracy == pytest.approx(expected.mean())
    if tolerance == 4:  # both outcomes occur
        assert 0 < result.hits.sum() < 40


def test_pointing_game_takes_the_first_maximum_and_measures_distance() -> None:
    saliency = np.zeros((1, 10, 10))
    saliency[0, 2, 7] = 1.0
    saliency[0, 8, 1] = 1.0  # a tie later in row-major order
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 8:, :3] = True
    result = pointing_game(saliency, masks, tolerance=5)
    np.testing.assert_array_equal(result.points, [[2, 7]])
    assert result.distances[0] == pytest.approx(math.hypot(2 - 8, 7 - 2))
    assert not result.hits[0]
    assert pointing_game(saliency, masks, tolerance=8).hits[0]
    assert pointing_game(saliency, masks.astype(np.uint8), tolerance=8).hits[0]


def test_pointing_game_errors() -> None:
    saliency = np.ones((2, 8, 8))
    masks = np.ones((2, 8, 8), dtype=bool)
    with pytest.raises(InputError, match="masks must have shape"):
        pointing_game(saliency, masks[:, :4])
    with pytest.raises(InputError, match="empty"):
        pointing_game(saliency, np.zeros_like(masks))
    with pytest.raises(InputError, match="boolean"):
        pointing_game(saliency, masks * 2)
    with pytest.raises(InputError, match=r"\(B, L\), \(B, H, W\) or \(B, D, H, W\)"):
        pointing_game(saliency[0, 0], masks[0, 0])
    with pytest.raises(ConfigError, match="tolerance"):
        pointing_game(saliency, masks, tolerance=-1)
    nan = saliency.copy()
    nan[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pointing_game(nan, masks)


def test_energy_pointing_game_matches_oracle() -> None:
    saliency = np.random.default_rng(2).uniform(size=(6, 40, 50)) ** 3
    saliency[5] = 0.0
    masks = _boxes(6, 3)
    result = energy_pointing_game(saliency, masks)
    expected = []
    for b in range(6):
        inside = total = 0.0
        for i in range(40):
            for j in range(50):
                total += saliency[b, i, j]
                if masks[b, i, j]:
                    inside += saliency[b, i, j]
        expected.append(inside / total if total > 0 else 0.0)
    np.testing.assert_allclose(result.proportions, expected, rtol=1e-12)
    assert result.proportions[5] == 0.0
    assert result.proportions[:5].min() > 0
    assert result.mean == pytest.approx(np.mean(expected))


def test_energy_pointing_game_errors() -> None:
    masks = np.ones((2, 8, 8), dtype=bool)
    with pytest.raises(InputError, match="non-negative"):
        energy_pointing_game(-np.ones((2, 8, 8)), masks)
    with pytest.raises(InputError, match="masks must have shape"):
        energy_pointing_game(np.ones((2, 8, 8)), masks[:1])


# -- rank correlations and the sanity check ------------------------------------------------


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _oracle_spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks([float(v) for v in a.ravel()]), _ranks([float(v) for v in b.ravel()])
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return 0.0
    return cov / math.sqrt(va * vb)


def test_rank_correlations_match_oracle() -> None:
    rng = np.random.default_rng(0)
    original = np.round(rng.uniform(size=(4, 9, 11)) * 6)  # ties
    noisy = original + rng.normal(scale=2.0, size=original.shape)
    constant = noisy.copy()
    constant[2] = 0.5
    steps = [("identical", original), ("noisy", noisy), ("reversed", -original), ("flat", constant)]
    result = rank_correlations(original, iter(steps))
    assert result.names == ("identical", "noisy", "reversed", "flat")
    assert result.correlations.shape == (4, 4)
    expected = np.array([[_oracle_spearman(original[b], m[b]) for b in range(4)] for _, m in steps])
    np.testing.assert_allclose(result.correlations, expected, atol=1e-12)
    np.testing.assert_allclose(result.correlations[0], 1.0)
    np.testing.assert_allclose(result.correlations[2], -1.0)
    assert result.correlations[3, 2] == 0.0
    assert 0.2 < result.correlations[1].mean() < 0.99
    np.testing.assert_allclose(result.mean, expected.mean(axis=1), atol=1e-12)


def test_rank_correlations_errors_and_empty_steps() -> None:
    original = np.ones((2, 4, 4))
    empty = rank_correlations(original, [])
    assert empty.correlations.shape == (0, 2)
    with pytest.raises(InputError, match=r"randomized \(a\) maps must have shape"):
        rank_correlations(original, [("a", np.ones((2, 4, 5)))])
    with pytest.raises(InputError, match=r"original maps must have shape \(B, L\)"):
        rank_correlations(np.ones(4), [])
    volumes = rank_correlations(
        np.arange(16.0).reshape(1, 2, 2, 4), [("a", -np.ones((1, 2, 2, 4)))]
    )
    assert volumes.correlations.shape == (1, 1)


def test_rank_correlations_need_no_scipy_and_equal_scipys(monkeypatch) -> None:
    """One Spearman for the library (groupcam_core.agreement), checked against scipy's."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    original = np.round(rng.uniform(size=(3, 8, 8)) * 4)  # ties
    noisy = original + rng.normal(scale=1.5, size=original.shape)
    pairs = zip(original, noisy, strict=True)
    expected = [stats.spearmanr(a.ravel(), b.ravel())[0] for a, b in pairs]
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    monkeypatch.setitem(sys.modules, "scipy", None)
    result = rank_correlations(original, [("noisy", noisy)])
    np.testing.assert_allclose(result.correlations[0], expected, atol=1e-12)


def test_sanity_check_explains_randomized_models_for_the_original_targets() -> None:
    x = _batch(4, seed=7)
    made: list[FakeExplainer] = []

    def make_explainer(backend):
        made.append(FakeExplainer(backend))
        return made[-1]

    trained = FakeNumpyBackend(seed=0)
    models = [("same", trained), ("other", FakeNumpyBackend(seed=11))]
    result = sanity_check(make_explainer, trained, iter(models), x)
    config = make_config(groups=4)
    reference = explain_group_cam(trained, x, config=config)
    other = explain_group_cam(
        FakeNumpyBackend(seed=11), x, targets=reference.targets, config=config
    )
    expected = rank_correlations(
        reference.saliency, [("same", reference.saliency), ("other", other.saliency)]
    )
    assert result.names == ("same", "other")
    np.testing.assert_array_equal(result.correlations, expected.correlations)
    np.testing.assert_allclose(result.correlations[0], 1.0)
    assert result.mean[1] < 0.99
    # The randomized models were asked for the trained model's classes.
    assert made[0].targets_seen == [None]
    for explainer in made[1:]:
        np.testing.assert_array_equal(explainer.targets_seen[0], reference.targets)


def _scaled_first_channel(calls: list):
    """``make_explainer`` for :func:`sanity_check`: a plain callable per "model" (a scale)."""

    def make_explainer(scale):
        def method(images, targets):
            calls.append(targets)
            return images[:, 0] * scale

        return method

    return make_explainer


def test_sanity_check_accepts_plain_callables() -> None:
    x = _batch(2)
    calls: list = []
    make_explainer = _scaled_first_channel(calls)
    result = sanity_check(make_explainer, 1.0, [("flipped", -1.0)], x, targets=[0, 1])
    np.testing.assert_allclose(result.correlations, [[-1.0, -1.0]])
    assert calls == [[0, 1], [0, 1]]
    with pytest.raises(BackendError, match="make_explainer"):
        sanity_check(lambda m: 3, None, [], x, targets=0)


def test_sanity_check_with_a_plain_callable_needs_targets() -> None:
    # Without targets each randomized model would explain its own top class, and
    # the correlations would compare explanations of different classes.
    x = _batch(2)
    calls: list = []
    make_explainer = _scaled_first_channel(calls)
    with pytest.raises(ConfigError, match="plain callable explainer needs targets"):
        sanity_check(make_explainer, 1.0, [("flipped", -1.0)], x)
    assert calls == []  # refused before anything ran


def test_a_constant_map_points_nowhere() -> None:
    from groupcam_core.metrics import pointing_game as play

    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[:, 0:3, 0:3] = True  # the object sits where argmax of a constant map would point
    maps = np.zeros((2, 10, 10))
    maps[1, 1, 1] = 1.0
    np.testing.assert_array_equal(play(maps, masks, tolerance=2).hits, [False, True])
