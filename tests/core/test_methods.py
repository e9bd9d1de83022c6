"""Grad-CAM, Score-CAM and RISE on the backend protocol, against plain loop oracles."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from _support.fake_backend import FakeNumpyBackend
from _support.oracle import softmax, upsample_bilinear

from groupcam_core import (
    METHODS,
    BackendError,
    ConfigError,
    InputError,
    MethodResult,
    TargetError,
    explain_group_cam,
    explain_with,
    grad_cam,
    make_config,
    rise,
    rise_masks,
    run_method,
    score_cam,
)
from groupcam_core.kit import ExplainerBase
from groupcam_core.protocol import GradientPass


def _images(batch: int, seed: int = 1, size: int = 32, layout: str = "channels_first"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(batch):
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        images.append(blob[None] * rng.normal(size=(3, 1, 1)) * 2 + rng.normal(0, 0.3, (3, 32, 32)))
    x = np.stack(images)
    return x if layout == "channels_first" else x.transpose(0, 2, 3, 1)


def _normalize(cam: np.ndarray) -> np.ndarray:
    low, high = cam.min(), cam.max()
    return np.zeros_like(cam) if high <= low else (cam - low) / (high - low)


# -- oracles: one image, one channel, one mask at a time ------------------------


def _oracle_grad_cam(backend: FakeNumpyBackend, x_cf: np.ndarray, targets) -> np.ndarray:
    maps = []
    for b in range(x_cf.shape[0]):
        activations = backend.features(x_cf[b : b + 1])
        target = int(np.argmax(backend.head(activations)[0])) if targets is None else targets[b]
        gradient = backend.logit_gradient(activations, np.array([target]))
        cam = np.zeros(activations.shape[2:])
        for k in range(activations.shape[1]):
            cam += gradient[0, k].mean() * activations[0, k]
        cam = np.maximum(cam, 0.0)
        maps.append(_normalize(upsample_bilinear(cam, *x_cf.shape[2:])))
    return np.stack(maps)


def _oracle_score_cam(
    backend: FakeNumpyBackend, x_cf: np.ndarray, targets
) -> tuple[np.ndarray, list]:
    maps, passes = [], []
    height, width = x_cf.shape[2:]
    for b in range(x_cf.shape[0]):
        activations = backend.features(x_cf[b : b + 1])[0]
        target = int(np.argmax(backend.predict_one(x_cf[b]))) if targets is None else targets[b]
        cam = np.zeros((height, width))
        used = 0
        for k in range(activations.shape[0]):
            upsampled = upsample_bilinear(activations[k], height, width)
            if upsampled.max() == upsampled.min():
                continue
            mask = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
            score = softmax(backend.predict_one(x_cf[b] * mask[None]))[target]
            cam += score * upsampled
            used += 1
        maps.append(_normalize(np.maximum(cam, 0.0)))
        passes.append(used + 1)
    return np.stack(maps), passes


# -- a model whose class 0 looks only at one square of the image ---------------

SQUARE = (slice(8, 16), slice(16, 24))


class SquareBackend:
    """Logit of class 0 = gain * (mean of the image inside SQUARE - 0.5); class 1: 0.

    The "target layer" has one channel per cell of an 8 x 8 grid, each an
    indicator of its cell (4 x 4 pixels): Score-CAM's masks are then bumps around
    each cell, and only those over the square raise the class-0 probability.
    """

    input_layout = "channels_first"
    feature_layout = "channels_first"
    model_outputs = "logits"
    layer_name = "cells"

    def __init__(self, gain: float = 10.0, fixed_batch_shape: bool = False) -> None:
        self.gain = gain
        self.fixed_batch_shape = fixed_batch_shape
        self.default_batch_size = 64
        self.chunk_rows: list[int] = []

    def _logits(self, x: np.ndarray) -> np.ndarray:
        inside = x[:, :, SQUARE[0], SQUARE[1]].mean(axis=(1, 2, 3))
        return np.stack([self.gain * (inside - 0.5), np.zeros_like(inside)], axis=1)

    def prepare_input(self, x):
        return np.asarray(x)

    def gradient_pass(self, x, resolve_targets):
        outputs = self._logits(x)
        targets = resolve_targets(outputs)
        activations = np.zeros((x.shape[0], 64, 8, 8))
        for k in range(64):
            activations[:, k, k // 8, k % 8] = 1.0
        return GradientPass(activations, np.zeros_like(activations), outputs, targets)

    def forward(self, x):
        self.chunk_rows.append(x.shape[0])
        return self._logits(x)

    def to_numpy(self, array):
        return np.asarray(array)


def _inside(maps: np.ndarray) -> np.ndarray:
    inside = np.zeros(maps.shape[-2:], dtype=bool)
    inside[SQUARE] = True
    return inside


# -- Grad-CAM -------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("targets", [None, [0, 3, 4]])
def test_grad_cam_matches_the_loop_oracle(layout: str, targets) -> None:
    backend = FakeNumpyBackend(channels=10, layout=layout)
    x = _images(3, layout=layout)
    x_cf = x if layout == "channels_first" else x.transpose(0, 3, 1, 2)
    maps = grad_cam(backend, x, targets)
    assert maps.dtype == np.float32
    assert maps.shape == (3, 32, 32)
    oracle = _oracle_grad_cam(backend, x_cf, targets)
    np.testing.assert_array_equal(oracle.max(axis=(1, 2)), 1.0)  # no degenerate map
    np.testing.assert_allclose(maps, oracle, atol=1e-5)
    assert backend.chunk_rows == []  # one gradient pass, no forward chunks


def test_grad_cam_counts_one_pass_and_reports_targets() -> None:
    backend = FakeNumpyBackend()
    x = _images(4)
    result = run_method("grad-cam", backend, x, targets=2)
    assert isinstance(result, MethodResult)
    assert result.forward_passes.tolist() == [1, 1, 1, 1]
    assert result.total_forward_passes == 4
    assert result.targets.tolist() == [2, 2, 2, 2]
    assert len(result) == 4


# -- Score-CAM ------------------------------------------------------------------


@pytest.mark.parametrize("targets", [None, [0, 3, 1]])
def test_score_cam_matches_the_loop_oracle_and_skips_constant_channels(targets) -> None:
    backend = FakeNumpyBackend(channels=9, dead_channels=(2, 5), seed=3)
    x = _images(3, seed=4)
    result = run_method("score-cam", backend, x, targets, batch_size=5)
    oracle, passes = _oracle_score_cam(backend, x, targets)
    # Each oracle map has a positive part (ReLU keeps something): a real check.
    np.testing.assert_array_equal(oracle.max(axis=(1, 2)), 1.0)
    assert not result.degenerate.any()
    np.testing.assert_allclose(result.saliency, oracle, atol=1e-5)
    # Two dead channels (constant maps) get no pass: 1 + 7 per image.
    assert passes == [8, 8, 8]
    assert result.forward_passes.tolist() == passes
    assert sum(backend.chunk_rows) == 3 * 7
    assert max(backend.chunk_rows) == 5


def test_score_cam_peaks_where_the_model_looks() -> None:
    backend = SquareBackend()
    x = np.ones((2, 3, 32, 32))
    maps = score_cam(backend, x, targets=0)
    inside = _inside(maps)
    for saliency in maps:
        peak = np.unravel_index(np.argmax(saliency), saliency.shape)
        assert inside[peak]
        assert saliency[inside].mean() > saliency[~inside].mean() + 0.4


def test_score_cam_probability_outputs_are_not_softmaxed_again() -> None:
    logits_model = FakeNumpyBackend(seed=3)
    probability_model = FakeNumpyBackend(seed=3, softmax_output=True)
    x = _images(2, seed=6)
    np.testing.assert_allclose(
        score_cam(probability_model, x), score_cam(logits_model, x), atol=1e-6
    )


# -- RISE -----------------------------------------------------------------------


def test_rise_masks_are_the_reference_masks() -> None:
    """Grid, bilinear upsampling with mirrored border and shifted crop, as eclique/RISE."""
    transform = pytest.importorskip("skimage.transform")
    count, cell, height, width = 6, 7, 30, 27
    masks = rise_masks(count, height, width, cell=cell, keep=0.4, seed=3)
    rng = np.random.default_rng(3)  # the draws, in the documented order
    grids = (rng.random((count, cell, cell)) < 0.4).astype(np.float64)
    cell_h, cell_w = -(-height // cell), -(-width // cell)
    shift_r = rng.integers(0, cell_h, size=count)
    shift_c = rng.integers(0, cell_w, size=count)
    for i in range(count):
        upsampled = transform.resize(
            grids[i], ((cell + 1) * cell_h, (cell + 1) * cell_w), order=1, mode="reflect",
            anti_aliasing=False,
        )  # fmt: skip
        crop = upsampled[shift_r[i] : shift_r[i] + height, shift_c[i] : shift_c[i] + width]
        np.testing.assert_allclose(masks[i], crop, atol=1e-12)
    assert masks.min() >= 0.0
    assert masks.max() <= 1.0


@pytest.mark.parametrize("targets", [None, [1, 4]])
def test_rise_matches_the_loop_oracle_on_its_masks(targets) -> None:
    backend = FakeNumpyBackend(seed=2)
    x = _images(2, seed=8)
    maps = rise(backend, x, targets, masks=40, cell=5, keep=0.3, seed=11)
    masks = rise_masks(40, 32, 32, cell=5, keep=0.3, seed=11)
    for b in range(2):
        target = int(np.argmax(backend.predict_one(x[b]))) if targets is None else targets[b]
        saliency = np.zeros((32, 32))
        for mask in masks:
            saliency += softmax(backend.predict_one(x[b] * mask[None]))[target] * mask
        np.testing.assert_allclose(maps[b], _normalize(saliency / (40 * 0.3)), atol=1e-5)


def test_rise_finds_the_square_the_model_looks_at() -> None:
    backend = SquareBackend()
    x = np.ones((2, 3, 32, 32))
    result = run_method("rise", backend, x, targets=0, masks=600, seed=0)
    inside = _inside(result.saliency)
    for saliency in result.saliency:
        assert saliency[inside].mean() > saliency[~inside].mean() + 0.3
        assert saliency[inside].min() > np.median(saliency[~inside])
    assert result.forward_passes.tolist() == [601, 601]
    assert sum(backend.chunk_rows) == 2 + 2 * 600


def test_rise_is_deterministic_for_a_seed() -> None:
    backend = FakeNumpyBackend()
    x = _images(2)
    first = rise(backend, x, masks=50, seed=5)
    np.testing.assert_array_equal(first, rise(backend, x, masks=50, seed=5))
    assert not np.allclose(first, rise(backend, x, masks=50, seed=6))


def test_rise_with_every_cell_kept_is_degenerate_not_nan() -> None:
    result = run_method("rise", FakeNumpyBackend(), _images(2), masks=5, keep=1.0)
    assert result.degenerate.tolist() == [True, True]
    np.testing.assert_array_equal(result.saliency, 0.0)


# -- chunking, layouts, fixed batch shapes ------------------------------------


@pytest.mark.parametrize(
    ("method", "options"), [("score-cam", {}), ("rise", {"masks": 30, "cell": 4})]
)
def test_maps_do_not_depend_on_the_chunk_size(method: str, options: dict) -> None:
    x = _images(3, seed=2)
    reference = explain_with(method, FakeNumpyBackend(), x, batch_size=1000, **options)
    for size in (1, 7, 16):
        backend = FakeNumpyBackend()
        maps = explain_with(method, backend, x, batch_size=size, **options)
        np.testing.assert_allclose(maps, reference, atol=1e-6)
        assert max(backend.chunk_rows) == size


@pytest.mark.parametrize(
    ("method", "options"),
    [("grad-cam", {}), ("score-cam", {}), ("rise", {"masks": 20})],
)
def test_channels_last_gives_the_channels_first_maps(method: str, options: dict) -> None:
    x = _images(2, seed=3)
    first = explain_with(method, FakeNumpyBackend(layout="channels_first"), x, **options)
    last = explain_with(
        method, FakeNumpyBackend(layout="channels_last"), x.transpose(0, 2, 3, 1), **options
    )
    np.testing.assert_allclose(last, first, atol=1e-6)


@pytest.mark.parametrize(
    ("method", "options", "rows"),
    # Score-CAM: 2 images x 10 channels = 20 rows; RISE: 2 clean rows, then 2 x 21.
    [("score-cam", {}, [8, 8, 4]), ("rise", {"masks": 21}, [2, 8, 8, 8, 8, 8, 2])],
)
def test_fixed_batch_shape_pads_the_last_chunk(method: str, options: dict, rows: list) -> None:
    x = _images(2, seed=5)
    fixed = FakeNumpyBackend(fixed_batch_shape=True)
    padded = explain_with(method, fixed, x, batch_size=8, **options)
    assert fixed.chunk_rows == rows
    assert all(r == 8 or r & (r - 1) == 0 for r in fixed.chunk_rows)
    free = FakeNumpyBackend()
    np.testing.assert_allclose(padded, explain_with(method, free, x, batch_size=8, **options))


def test_rise_pads_an_odd_chunk_to_a_power_of_two() -> None:
    fixed = FakeNumpyBackend(fixed_batch_shape=True)
    rise(fixed, _images(1), masks=13, batch_size=8)
    assert fixed.chunk_rows == [1, 8, 8]  # 1 clean row; 13 masked rows: 8 + 5 padded to 8


# -- dispatch, explainers and Group-CAM -----------------------------------------


class _FakeExplainer(ExplainerBase):
    def __init__(self, backend: FakeNumpyBackend, batch_size: int | None) -> None:
        super().__init__(backend, 4, "paper", batch_size, {})
        self.backend = backend
        self.entered = 0
        self.exited = 0

    def _backend_for(self, x):
        return self.backend

    @contextmanager
    def _explaining(self):
        self.entered += 1
        try:
            yield
        finally:
            self.exited += 1


def test_every_method_runs_through_an_explainer_with_its_settings() -> None:
    x = _images(2, seed=9)
    for method in METHODS:
        backend = FakeNumpyBackend()
        explainer = _FakeExplainer(backend, batch_size=3)
        options = {"masks": 10} if method == "rise" else {}
        result = run_method(method, explainer, x, **options)
        assert result.method == method
        assert result.saliency.shape == (2, 32, 32)
        assert result.saliency.dtype == np.float32
        assert result.saliency.min() >= 0.0
        assert result.saliency.max() <= 1.0
        assert (explainer.entered, explainer.exited) == (1, 1)
        if method != "grad-cam":
            assert max(backend.chunk_rows) == 3  # the explainer's batch_size


def test_group_cam_through_the_dispatcher_is_the_engine_result() -> None:
    x = _images(3, seed=10)
    backend = FakeNumpyBackend()
    result = run_method("group-cam", _FakeExplainer(backend, batch_size=None), x)
    expected = explain_group_cam(FakeNumpyBackend(), x, config=make_config("paper", groups=4))
    np.testing.assert_array_equal(result.saliency, expected.saliency)
    np.testing.assert_array_equal(result.targets, expected.targets)
    np.testing.assert_array_equal(result.forward_passes, expected.forward_passes)
    # A backend and an explicit configuration.
    official = run_method("group-cam", FakeNumpyBackend(channels=40), x, config="official-head")
    expected = explain_group_cam(
        FakeNumpyBackend(channels=40), x, config=make_config("official-head")
    )
    np.testing.assert_array_equal(official.saliency, expected.saliency)


def test_explain_with_returns_the_public_functions_maps() -> None:
    x = _images(2, seed=12)
    np.testing.assert_array_equal(
        explain_with("Grad_CAM", FakeNumpyBackend(), x), grad_cam(FakeNumpyBackend(), x)
    )
    np.testing.assert_array_equal(
        explain_with("score-cam", FakeNumpyBackend(), x, targets=1),
        score_cam(FakeNumpyBackend(), x, targets=1),
    )
    np.testing.assert_array_equal(
        explain_with("rise", FakeNumpyBackend(), x, masks=15, seed=2),
        rise(FakeNumpyBackend(), x, masks=15, seed=2),
    )


# -- errors -------------------------------------------------------------------------


def test_unknown_method_lists_the_known_ones() -> None:
    expected = "unknown method 'lime'; choose one of group-cam, grad-cam, score-cam, rise"
    with pytest.raises(ConfigError, match=expected):
        explain_with("lime", FakeNumpyBackend(), _images(1))


def test_unknown_option_names_the_accepted_ones() -> None:
    expected = "score-cam has no option 'masks'; its options are: batch_size"
    with pytest.raises(ConfigError, match=expected):
        explain_with("score-cam", FakeNumpyBackend(), _images(1), masks=3)
    with pytest.raises(ConfigError, match="grad-cam has no option 'batch_size'"):
        explain_with("grad-cam", FakeNumpyBackend(), _images(1), batch_size=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"masks": 0}, "masks must be a positive int"),
        ({"masks": 2.5}, "masks must be a positive int"),
        ({"keep": 0.0}, r"keep must be a finite number above 0 and at most 1"),
        ({"keep": 1.5}, r"keep must be a finite number above 0 and at most 1"),
        ({"keep": float("nan")}, r"keep must be a finite number"),
        ({"cell": 0}, "cell must be a positive int"),
        ({"seed": -1}, "seed must be an int of at least 0"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
    ],
)
def test_bad_rise_options_are_refused_before_any_pass(options: dict, message: str) -> None:
    backend = FakeNumpyBackend()
    with pytest.raises(ConfigError, match=message):
        rise(backend, _images(1), **{"masks": 5, **options})
    assert backend.chunk_rows == []


def test_bad_inputs_targets_and_models_get_the_library_errors() -> None:
    x = _images(2)
    broken = x.copy()
    broken[1, 2, 3, 4] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        grad_cam(FakeNumpyBackend(), broken)
    with pytest.raises(InputError, match="1 to 3 spatial axes"):
        score_cam(FakeNumpyBackend(), x[0, 0])
    with pytest.raises(TargetError, match="out of range"):
        rise(FakeNumpyBackend(), x, targets=7, masks=3)
    with pytest.raises(TargetError, match="got 3 targets for a batch of 2"):
        score_cam(FakeNumpyBackend(), x, targets=[0, 1, 2])
    with pytest.raises(BackendError, match="groupcam explainer"):
        grad_cam(object(), x)
    with pytest.raises(ConfigError, match="batch_size"):
        score_cam(FakeNumpyBackend(), x, batch_size=-2)
