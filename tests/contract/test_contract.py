"""What every way into groupcam promises, checked on each (torch; Keras on three backends;
linen, NNX and plain JAX functions), on the same trained network and photos.

Each nox session runs the ways its environment has; together they run all seven.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _support.fast import force_fast_mode

from groupcam_core import (
    BackendError,
    ConfigError,
    GroupCAMError,
    GroupCAMWarning,
    InputError,
    LayerNotFoundError,
    TargetError,
)
from groupcam_core.errors import PROBABILITIES_WARNING
from groupcam_core.fast import EXACT, FastMode
from groupcam_torch import GroupCAM as TorchGroupCAM


def _explain(cam, images, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupCAMWarning)  # no warning on a logits model
        return cam.explain(images, targets)


@pytest.mark.parametrize("variant", ["paper", "official-head"])
def test_maps_equal_the_torch_maps(way, blob_net, photos, variant) -> None:
    torch_images = torch.from_numpy(np.ascontiguousarray(photos.transpose(0, 3, 1, 2)))
    expected = TorchGroupCAM(blob_net, "6", groups=8, variant=variant).explain(torch_images)
    found = _explain(way.make(variant=variant), way.images(photos))
    np.testing.assert_array_equal(found.targets, expected.targets)
    np.testing.assert_array_equal(found.skipped_groups, expected.skipped_groups)
    np.testing.assert_allclose(found.target_probabilities, expected.target_probabilities, atol=1e-5)
    np.testing.assert_allclose(found.group_scores, expected.group_scores, atol=1e-5)
    np.testing.assert_allclose(found.saliency, expected.saliency, atol=1e-4)
    assert not found.degenerate.any()


def test_the_same_call_twice_gives_identical_maps(way, photos) -> None:
    cam = way.make()
    first = _explain(cam, way.images(photos))
    second = _explain(cam, way.images(photos))
    np.testing.assert_array_equal(first.saliency, second.saliency)
    np.testing.assert_array_equal(first.group_scores, second.group_scores)
    assert first.saliency.dtype == np.float32
    assert first.saliency.shape == (4, 64, 64)
    assert first.saliency.min() == 0.0
    assert first.saliency.max() == 1.0


def test_one_by_one_equals_batched(way, photos) -> None:
    images = way.images(photos)
    cam = way.make(batch_size=5)
    batched = _explain(cam, images)
    for index in range(len(images)):
        single = _explain(cam, images[index : index + 1])
        np.testing.assert_allclose(single.saliency[0], batched.saliency[index], atol=1e-5)
        np.testing.assert_allclose(single.group_scores[0], batched.group_scores[index], atol=1e-6)


def test_targets_of_every_accepted_kind(way, photos) -> None:
    images = way.images(photos)
    cam = way.make()
    per_image = _explain(cam, images, [3, 2, 1, 0])
    np.testing.assert_array_equal(per_image.targets, [3, 2, 1, 0])
    as_array = _explain(cam, images, np.array([3, 2, 1, 0], dtype=np.int64))
    np.testing.assert_array_equal(as_array.saliency, per_image.saliency)
    one = _explain(cam, images, np.int64(2))
    np.testing.assert_array_equal(one.targets, [2, 2, 2, 2])


@pytest.mark.parametrize("kind", ["blob", "training"])
def test_the_model_is_left_exactly_as_it_was(way, photos, kind) -> None:
    model = way.model(kind)
    before = way.snapshot(model)
    cam = way.make(model)
    _explain(cam, way.images(photos))
    assert way.same(before, way.snapshot(model))
    with pytest.raises(TargetError):
        cam.explain(way.images(photos), targets=9)
    assert way.same(before, way.snapshot(model))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        # One image without its batch axis reads as a batch of signals: the model's own
        # error (or groupcam's), which says to add the batch axis.
        (lambda x: x[0], Exception, r"add a batch axis|add one \(x\[None\]\)"),
        (lambda x: x[0, 0], InputError, r"1 to 3 spatial axes"),
        (lambda x: x[:0], InputError, "empty"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), InputError, "NaN"),
        (lambda x: x.astype(np.int32), InputError, "floating-point"),
    ],
    ids=["3-D", "2-D", "empty", "NaN", "integers"],
)
def test_bad_input_is_refused_with_a_clear_error(way, photos, change, error, message) -> None:
    with pytest.raises(error, match=message):
        way.make().explain(change(way.images(photos)))


def test_wrong_layout_names_the_batch_and_the_layout(way, photos) -> None:
    images = way.images(photos)
    wrong = (
        images.transpose(0, 3, 1, 2)
        if way.layout == "channels_last"
        else images.transpose(0, 2, 3, 1)
    )
    other = "channels-first" if way.layout == "channels_last" else "channels-last"
    pattern = rf"(?s)shape \({', '.join(map(str, wrong.shape))}\).*{other}"
    with pytest.raises(Exception, match=pattern) as raised:
        way.make().explain(np.ascontiguousarray(wrong))
    if isinstance(raised.value, GroupCAMError):
        # A model that declares its input shape (Keras functional) is checked before it runs.
        assert isinstance(raised.value, InputError), type(raised.value)
    else:  # the model's own error, of its own type, with groupcam's note
        assert any(note.startswith("groupcam: ") for note in raised.value.__notes__)


def test_bad_targets_and_settings(way, photos) -> None:
    images = way.images(photos)
    with pytest.raises(TargetError, match="out of range"):
        way.make().explain(images, targets=4)
    with pytest.raises(TargetError, match="got 2 targets for a batch of 4"):
        way.make().explain(images, targets=[0, 1])
    with pytest.raises(ConfigError, match="groups=33 is more than the 32 channels"):
        way.make(groups=33).explain(images)
    with pytest.raises(ConfigError, match="groups must be"):
        way.make(groups=0)
    with pytest.raises(ConfigError, match="batch_size"):
        way.make(batch_size=0)


def test_an_unknown_layer_is_refused_at_construction(way) -> None:
    if way.name == "jax-functions":
        with pytest.raises(BackendError, match="explains the output of features_fn"):
            way.make(target_layer="relu_6")
        return
    layer = "relu_6" if way.name != "torch" else "66"
    with pytest.raises(LayerNotFoundError, match="no layer named"):
        way.make(target_layer=layer)


def test_probabilities_are_detected_with_one_rule_and_one_message(way, photos) -> None:
    images = way.images(photos)
    with pytest.warns(GroupCAMWarning) as caught:
        way.make(way.model("softmax")).explain(images)
    assert [str(w.message) for w in caught] == [PROBABILITIES_WARNING]
    assert caught[0].filename == __file__  # attributed to the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupCAMWarning)
        told = way.make(way.model("softmax"), model_outputs="probabilities").explain(images)
    logits = _explain(way.make(), images)
    np.testing.assert_array_equal(told.targets, logits.targets)


@pytest.mark.parametrize("explainers", ["one explainer", "two explainers"])
def test_threads_on_one_model_get_the_sequential_maps(way, photos, explainers) -> None:
    images = way.images(photos)
    model = way.model("training")
    before = way.snapshot(model)
    cams = (
        [way.make(model)] * 2
        if explainers == "one explainer"
        else [way.make(model), way.make(model)]
    )
    expected = [_explain(cam, images).saliency for cam in cams]
    start = threading.Barrier(4, timeout=120)

    def work(index: int) -> np.ndarray:
        start.wait()
        return cams[index % 2].explain(images).saliency

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(8), timeout=600))
    for index, maps in enumerate(results):
        np.testing.assert_allclose(maps, expected[index % 2], atol=1e-6)
    assert way.same(before, way.snapshot(model))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ranks_b = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def test_fast_reports_its_mode_and_defaults_to_exact(way) -> None:
    assert way.make().fast is False
    assert way.make().fast_mode == EXACT
    mode = way.make(fast=True).fast_mode
    assert isinstance(mode, FastMode)
    assert mode.reason
    with pytest.raises(ConfigError, match="fast must be True or False"):
        way.make(fast="yes")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_fast_passes_in_half_precision_rank_pixels_as_the_exact_ones(way, photos, dtype) -> None:
    """Forced into ``dtype`` (whatever this machine's own fast mode is), the masked passes
    give float32 maps close to the exact maps, and the model is left as it was."""
    model = way.model("blob")
    before = way.snapshot(model)
    images = way.images(photos)
    exact = _explain(way.make(model), images)
    cam = way.make(model, fast=True)
    forced = FastMode(dtype, way.layout == "channels_first", True, "forced by the test")
    force_fast_mode(cam, forced)  # the device's own mode may be exact
    fast = _explain(cam, images, exact.targets)
    assert fast.saliency.dtype == np.float32
    assert np.isfinite(fast.saliency).all()
    assert fast.group_scores.dtype == np.float32
    for found, expected in zip(fast.saliency, exact.saliency, strict=True):
        assert _spearman(found, expected) >= 0.98
    np.testing.assert_allclose(fast.target_probabilities, exact.target_probabilities, atol=1e-6)
    assert way.same(before, way.snapshot(model))
    # Metrics run through the explainer get the exact passes.
    with cam.using_backend(images) as backend:
        assert getattr(backend, "fast", EXACT) == EXACT
