"""The vectorized core against the plain loop oracle, on fake numpy backends."""

from __future__ import annotations

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend
from _support.oracle import oracle_groupcam

from groupcam_core import ClassLogit, TargetError, explain_group_cam, make_config
from groupcam_core.protocol import GradientPass


def _images(batch: int, layout: str, seed: int = 1, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _b in range(batch):
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        noise = rng.normal(scale=0.3, size=(3, size, size))
        images.append(blob[None] * rng.normal(size=(3, 1, 1)) * 2 + noise)
    x = np.stack(images).astype(np.float64)
    return x if layout == "channels_first" else x.transpose(0, 2, 3, 1)


def _oracle_for(backend: FakeNumpyBackend, x: np.ndarray, groups: int, variant: str, targets=None):
    x_cf = x if backend.input_layout == "channels_first" else x.transpose(0, 3, 1, 2)
    activations = backend.features(x_cf)
    outputs = backend.head(activations)
    chosen = outputs.argmax(axis=1) if targets is None else np.asarray(targets)
    result = backend.gradient_pass(x, lambda _: chosen)
    gradients = result.gradients
    if backend.feature_layout == "channels_last":
        gradients = gradients.transpose(0, 3, 1, 2)
    oracle = oracle_groupcam(
        activations,
        gradients,
        x_cf,
        backend.predict_one,
        chosen,
        groups=groups,
        variant=variant,
        already_probabilities=backend.model_outputs == "probabilities",
    )
    return oracle, chosen


@pytest.mark.parametrize("variant", ["paper", "official-head"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    # float64 is the exact check of the algorithm (design goal: 1e-5). In float32
    # the masked inputs themselves are rounded to float32 before the model sees
    # them, and scores are small differences of probabilities, so the comparison
    # with a float64 oracle is looser by the input rounding alone.
    [(np.float64, 1e-5), (np.float32, 1e-4)],
)
def test_core_matches_oracle(variant: str, layout: str, dtype, tolerance: float) -> None:
    # K = 10 channels in G = 4 groups: sizes 3, 3, 2, 2 (not divisible).
    backend = FakeNumpyBackend(channels=10, layout=layout)
    x = _images(3, layout).astype(dtype)
    exp = explain_group_cam(backend, x, config=make_config(variant, groups=4))
    oracle, chosen = _oracle_for(backend, x.astype(np.float64), 4, variant)
    np.testing.assert_array_equal(exp.targets, chosen)
    assert exp.saliency.dtype == np.float32
    assert exp.saliency.shape == (3, 32, 32)
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=tolerance)
    np.testing.assert_allclose(exp.group_scores, oracle.group_scores, atol=tolerance)
    np.testing.assert_allclose(exp.baseline_scores, oracle.baseline, atol=tolerance / 10)
    np.testing.assert_array_equal(exp.skipped_groups, oracle.skipped)
    np.testing.assert_array_equal(exp.degenerate, oracle.degenerate)
    live = ~exp.degenerate
    assert live.sum() >= 2
    assert (exp.saliency[live].min(axis=(1, 2)) == 0.0).all()
    assert (exp.saliency[live].max(axis=(1, 2)) == 1.0).all()


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_constant_groups_are_skipped_or_zero_and_never_nan(variant: str) -> None:
    # Channels 6 and 7 form group 2 (of 4 groups over 10 channels) and are dead:
    # their weighted sum is 0 everywhere, so that group map is constant.
    backend = FakeNumpyBackend(channels=10, dead_channels=(6, 7))
    x = _images(2, "channels_first")
    exp = explain_group_cam(backend, x, config=make_config(variant, groups=4))
    oracle, _ = _oracle_for(backend, x, 4, variant)
    assert np.isfinite(exp.saliency).all()
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)
    assert (exp.group_scores[:, 2] == 0).all()
    if variant == "paper":
        assert exp.skipped_groups[:, 2].all()
        assert not exp.skipped_groups[:, [0, 1, 3]].any()
        # 2 blurred baselines + 2 images x 3 groups, not 2 x 4.
        assert sum(backend.chunk_rows) == 2 + 2 * 3
        # The gradient pass, the baseline and 3 groups.
        np.testing.assert_array_equal(exp.forward_passes, [5, 5])
    else:
        assert not exp.skipped_groups.any()
        assert sum(backend.chunk_rows) == 2 + 2 * 4


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_fully_degenerate_image_gives_zeros_and_flag(variant: str) -> None:
    # A constant image pools to a constant feature map: every group map is
    # constant, so the merged map is constant too.
    backend = FakeNumpyBackend(channels=8)
    x = _images(2, "channels_first")
    x[1] = 0.25
    exp = explain_group_cam(backend, x, config=make_config(variant, groups=4))
    oracle, _ = _oracle_for(backend, x, 4, variant)
    np.testing.assert_array_equal(exp.degenerate, [False, True])
    np.testing.assert_array_equal(oracle.degenerate, [False, True])
    assert (exp.saliency[1] == 0).all()
    assert np.isfinite(exp.saliency).all()
    np.testing.assert_allclose(exp.saliency[0], oracle.saliency[0], atol=1e-5)


def test_explicit_targets_match_oracle() -> None:
    backend = FakeNumpyBackend(channels=12, classes=6)
    x = _images(3, "channels_first", seed=5)
    targets = [4, 0, 2]
    exp = explain_group_cam(backend, x, targets=targets, config=make_config(groups=3))
    oracle, _ = _oracle_for(backend, x, 3, "paper", targets=targets)
    np.testing.assert_array_equal(exp.targets, targets)
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)


def test_probability_outputs_are_not_softmaxed_twice() -> None:
    backend = FakeNumpyBackend(channels=8, softmax_output=True)
    x = _images(2, "channels_first", seed=3)
    exp = explain_group_cam(backend, x, config=make_config(groups=4))
    oracle, _ = _oracle_for(backend, x, 4, "paper")
    np.testing.assert_allclose(exp.baseline_scores, oracle.baseline, atol=1e-6)
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)
    probabilities = backend.head(backend.features(x))
    np.testing.assert_allclose(
        exp.target_probabilities, probabilities[np.arange(2), exp.targets], rtol=1e-6
    )


@pytest.mark.parametrize("batch_size", [1, 3, 5, 64])
def test_chunk_size_does_not_change_the_result(batch_size: int) -> None:
    backend = FakeNumpyBackend(channels=10)
    x = _images(2, "channels_first")
    reference = explain_group_cam(backend, x, config=make_config(groups=5), batch_size=2)
    exp = explain_group_cam(backend, x, config=make_config(groups=5), batch_size=batch_size)
    np.testing.assert_allclose(exp.saliency, reference.saliency, atol=1e-12)


def test_fixed_batch_shape_pads_the_tail_to_a_power_of_two() -> None:
    fixed = FakeNumpyBackend(channels=10, fixed_batch_shape=True)
    free = FakeNumpyBackend(channels=10, fixed_batch_shape=False)
    x = _images(2, "channels_first")
    config = make_config(groups=5)
    explain_group_cam(free, x, config=config, batch_size=1000)
    rows = free.chunk_rows.pop()  # every input in one chunk
    assert rows >= 8
    free.chunk_rows.clear()
    padded = explain_group_cam(fixed, x, config=config, batch_size=rows - 3)
    plain = explain_group_cam(free, x, config=config, batch_size=rows - 3)
    assert free.chunk_rows == [rows - 3, 3]
    assert fixed.chunk_rows == [rows - 3, 4]
    np.testing.assert_allclose(padded.saliency, plain.saliency, atol=1e-12)
    # A tail of 1 is not padded; one above a power of two is padded to the next.
    fixed.chunk_rows.clear()
    explain_group_cam(fixed, x, config=config, batch_size=rows - 1)
    assert fixed.chunk_rows == [rows - 1, 1]
    fixed.chunk_rows.clear()
    explain_group_cam(fixed, x, config=config, batch_size=rows - 5)
    assert fixed.chunk_rows == [rows - 5, min(8, rows - 5)]


def test_same_call_twice_is_identical() -> None:
    backend = FakeNumpyBackend(channels=10)
    x = _images(2, "channels_first")
    first = explain_group_cam(backend, x, config=make_config(groups=4))
    second = explain_group_cam(backend, x, config=make_config(groups=4))
    np.testing.assert_array_equal(first.saliency, second.saliency)


def test_one_by_one_equals_batch() -> None:
    backend = FakeNumpyBackend(channels=10)
    x = _images(3, "channels_first")
    config = make_config(groups=4)
    whole = explain_group_cam(backend, x, config=config)
    for b in range(3):
        single = explain_group_cam(backend, x[b : b + 1], config=config)
        np.testing.assert_allclose(single.saliency[0], whole.saliency[b], atol=1e-12)


def test_fake_backend_satisfies_the_protocol() -> None:
    from groupcam_core import Backend

    assert isinstance(FakeNumpyBackend(), Backend)
    assert not isinstance(object(), Backend)


class _LogitOfClassTwo(FakeNumpyBackend):
    """Differentiates class 2's logit whatever the objective's targets (for ClassLogit(2))."""

    def gradient_pass(self, x, objective):
        result = super().gradient_pass(x, lambda outputs: np.full(len(outputs), 2))
        assert objective(result.outputs) is None  # a target function resolves to no classes
        return GradientPass(result.activations, result.gradients, result.outputs, None)


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_a_target_function_scores_masked_inputs_by_its_change_from_the_baseline(variant) -> None:
    backend = _LogitOfClassTwo(channels=10)
    x = _images(3, "channels_first")
    exp = explain_group_cam(
        backend, x, targets=ClassLogit(2), config=make_config(variant, groups=4)
    )
    activations = backend.features(x)
    gradients = backend.logit_gradient(activations, np.full(3, 2))
    oracle = oracle_groupcam(
        activations,
        gradients,
        x,
        backend.predict_one,
        np.full(3, 2),
        groups=4,
        variant=variant,
        score_of=lambda out, target: out[target],
    )
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)
    np.testing.assert_allclose(exp.group_scores, oracle.group_scores, atol=1e-5)
    np.testing.assert_allclose(exp.baseline_scores, oracle.baseline, atol=1e-6)
    np.testing.assert_array_equal(exp.targets, [-1, -1, -1])
    assert np.isnan(exp.target_probabilities).all()
    np.testing.assert_allclose(exp.target_scores, backend.head(activations)[:, 2], rtol=1e-6)
    assert exp.objective == "ClassLogit"


def test_a_target_function_must_give_one_finite_score_per_image() -> None:
    backend = _LogitOfClassTwo(channels=10)
    x = _images(2, "channels_first")
    with pytest.raises(TargetError, match=r"returned shape \(2, 5\); it must return one score"):
        explain_group_cam(backend, x, targets=lambda out: out, config=make_config(groups=4))
    with pytest.raises(TargetError, match="NaN or inf"):
        explain_group_cam(backend, x, targets=lambda out: out[:, 0] * np.inf)


def test_kmeans_grouping_equals_the_oracle_with_the_same_groups() -> None:
    from array_api_compat import array_namespace

    from groupcam_core.grouping import kmeans_group_matrices

    backend = FakeNumpyBackend(channels=12)
    x = _images(2, "channels_first")
    exp = explain_group_cam(backend, x, config=make_config(groups=4, grouping="kmeans"))
    activations = backend.features(x)
    outputs = backend.head(activations)
    chosen = outputs.argmax(axis=1)
    gradients = backend.logit_gradient(activations, chosen)
    alpha = gradients.mean(axis=(2, 3))
    weighted = (activations * alpha[:, :, None, None]).reshape(2, 12, -1)
    matrices = kmeans_group_matrices(weighted, 4, array_namespace(weighted))
    members = [[np.flatnonzero(row) for row in image] for image in matrices]
    assert any(len(group) != 3 for image in members for group in image)  # not contiguous
    oracle = oracle_groupcam(
        activations, gradients, x, backend.predict_one, chosen, groups=4, members=members
    )
    np.testing.assert_allclose(exp.saliency, oracle.saliency, atol=1e-5)
    np.testing.assert_allclose(exp.group_scores, oracle.group_scores, atol=1e-5)


class _CountingBackend(FakeNumpyBackend):
    """Records the number of images of each gradient pass."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gradient_rows: list[int] = []

    def gradient_pass(self, x, resolve_targets):
        self.gradient_rows.append(x.shape[0])
        return super().gradient_pass(x, resolve_targets)


@pytest.mark.parametrize("targets", [None, 2, [0, 1, 2, 3, 4], np.array([4, 3, 2, 1, 0])])
@pytest.mark.parametrize("outputs_probabilities", [False, True])
def test_gradient_pass_runs_in_chunks_of_batch_size(targets, outputs_probabilities) -> None:
    """A batch larger than batch_size: gradient passes of at most batch_size images, same maps."""
    x = _images(5, "channels_first")
    config = make_config(groups=4)
    chunked = _CountingBackend(channels=10, softmax_output=outputs_probabilities)
    whole = _CountingBackend(channels=10, softmax_output=outputs_probabilities)
    found = explain_group_cam(chunked, x, targets, config=config, batch_size=2)
    expected = explain_group_cam(whole, x, targets, config=config, batch_size=64)
    assert chunked.gradient_rows == [2, 2, 1]
    assert whole.gradient_rows == [5]
    np.testing.assert_array_equal(found.targets, expected.targets)
    np.testing.assert_allclose(found.target_scores, expected.target_scores, atol=1e-12)
    np.testing.assert_allclose(found.saliency, expected.saliency, atol=1e-12)


def test_chunked_gradient_pass_checks_the_targets_of_the_whole_batch() -> None:
    backend = _CountingBackend(channels=10)
    with pytest.raises(TargetError, match="got 4 targets for a batch of 5 images"):
        explain_group_cam(backend, _images(5, "channels_first"), [0, 1, 2, 3], batch_size=2)
    assert backend.gradient_rows == []
