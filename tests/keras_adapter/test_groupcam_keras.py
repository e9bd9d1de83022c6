"""groupcam_keras on every model kind, on whichever Keras backend is active."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support.keras_models import (
    SubclassedCNN,
    functional_cnn,
    nested_cnn,
    sequential_cnn,
    weights_of,
)

from groupcam_core import (
    BackendError,
    InputError,
    LayerNotFoundError,
    ModelOutputError,
    TargetLayerError,
)
from groupcam_keras import GroupCAM


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.5, size=(3, 32, 32, 3)).astype(np.float32)
    x[:, 8:16, 10:18, :] += 2.0
    return x


def _no_patches(model: keras.Model) -> bool:
    from groupcam_keras.layers import all_layers

    return all("call" not in layer.__dict__ for _, layer in all_layers(model))


@pytest.mark.parametrize(
    ("factory", "expected_layer"),
    [
        (functional_cnn, "features"),
        (sequential_cnn, "conv2"),
        (SubclassedCNN, "conv2"),
        (nested_cnn, "base/conv2"),
    ],
)
def test_model_kinds_and_automatic_layer(factory, expected_layer, images) -> None:
    model = factory()
    model(images[:1])  # builds a subclassed model's weights
    before = weights_of(model)
    cam = GroupCAM(model, groups=4)
    exp = cam.explain(images)
    assert cam.target_layer_name == expected_layer
    assert exp.saliency.shape == (3, 32, 32)
    assert exp.saliency.dtype == np.float32
    assert np.isfinite(exp.saliency).all()
    assert ((exp.saliency >= 0) & (exp.saliency <= 1)).all()
    for old, new in zip(before, weights_of(model), strict=True):
        np.testing.assert_array_equal(old, new)
    assert _no_patches(model)


def test_layer_inside_a_nested_model(images) -> None:
    model = nested_cnn()
    by_path = GroupCAM(model, target_layer="base/conv2", groups=4)
    by_name = GroupCAM(model, target_layer="conv2", groups=4)
    by_object = GroupCAM(model, target_layer=model.get_layer("base").get_layer("conv2"), groups=4)
    assert by_path.target_layer_name == by_name.target_layer_name == "base/conv2"
    reference = by_path(images)
    np.testing.assert_array_equal(by_name(images), reference)
    np.testing.assert_array_equal(by_object(images), reference)
    # The base's output is conv2's output: the same map.
    np.testing.assert_allclose(GroupCAM(model, "base", groups=4)(images), reference, atol=1e-6)


def test_softmax_is_switched_off_not_applied_twice(images) -> None:
    with_softmax = functional_cnn(softmax=True)
    logits_model = functional_cnn(softmax=False)
    logits_model.set_weights(with_softmax.get_weights())
    exp = GroupCAM(with_softmax, "features", groups=4).explain(images)
    reference = GroupCAM(logits_model, "features", groups=4).explain(images)
    np.testing.assert_allclose(exp.saliency, reference.saliency, atol=1e-6)
    np.testing.assert_allclose(exp.baseline_scores, reference.baseline_scores, atol=1e-6)
    probabilities = keras.ops.convert_to_numpy(with_softmax(images))
    np.testing.assert_allclose(
        exp.target_probabilities, probabilities[np.arange(3), exp.targets], rtol=1e-5
    )
    assert with_softmax.get_layer("head").activation is keras.activations.softmax
    # Declared probabilities: used as they are, never softmaxed again.
    declared = GroupCAM(with_softmax, "features", groups=4, model_outputs="probabilities")
    np.testing.assert_allclose(
        declared.explain(images).target_probabilities, exp.target_probabilities, rtol=1e-5
    )


@pytest.mark.parametrize("classes", [1, 3], ids=["binary", "multi-label"])
def test_a_final_sigmoid_is_switched_off_and_scored_once(images, classes) -> None:
    with_sigmoid = functional_cnn(classes, activation="sigmoid")
    logits_model = functional_cnn(classes)
    logits_model.set_weights(with_sigmoid.get_weights())
    found = GroupCAM(with_sigmoid, "features", groups=4).explain(images)
    reference = GroupCAM(logits_model, "features", groups=4, model_outputs="sigmoid")
    expected = reference.explain(images)
    np.testing.assert_allclose(found.saliency, expected.saliency, atol=1e-6)
    np.testing.assert_allclose(found.group_scores, expected.group_scores, atol=1e-6)
    sigmoid = keras.ops.convert_to_numpy(with_sigmoid(images))  # the model's own sigmoid
    np.testing.assert_allclose(
        found.target_probabilities, sigmoid[np.arange(3), found.targets], rtol=1e-5
    )
    assert with_sigmoid.get_layer("head").activation is keras.activations.sigmoid
    if classes == 1:  # the logit model, told nothing, is refused rather than all-zero
        with pytest.raises(ModelOutputError, match="model_outputs='sigmoid'"):
            GroupCAM(logits_model, "features", groups=4).explain(images)


def test_backend_tensors_are_accepted(images) -> None:
    model = functional_cnn()
    cam = GroupCAM(model, "features", groups=4)
    np.testing.assert_allclose(cam(keras.ops.convert_to_tensor(images)), cam(images), atol=1e-6)


def test_compiled_forward_is_not_retraced(images) -> None:
    cam = GroupCAM(functional_cnn(), "features", groups=4, batch_size=5)

    def traces() -> int:
        compiled = cam._backend._compiled
        if keras.backend.backend() == "tensorflow":
            return compiled.experimental_get_tracing_count()
        return compiled._cache_size()

    cam(images)  # 3 baselines + up to 12 masks: full chunks of 5 and a padded tail
    if keras.backend.backend() == "torch":  # eager: nothing to trace, nothing padded
        assert cam._backend.fixed_batch_shape is False
        return
    first = traces()
    assert 1 <= first <= 2
    cam(images)
    cam(images, targets=[1, 2, 3])
    cam(images[:2])
    # Shapes come from {5, 4, 2, 1}: never more traces than that, whatever the calls.
    assert traces() <= 4
    before = traces()
    cam(images)
    cam(images[:2])
    assert traces() == before


class _Failing(keras.layers.Layer):
    def call(self, x):
        raise RuntimeError("boom inside the model")


def test_model_unchanged_after_an_exception(images) -> None:
    model = functional_cnn(softmax=True)
    before = weights_of(model)
    cam = GroupCAM(model, "features", groups=4)
    head = model.get_layer("head")
    original_call = head.call

    def explode(*args, **kwargs):
        raise RuntimeError("boom inside the model")

    head.call = explode
    # The model failed on the user's batch: its own error, with a note naming the batch.
    with pytest.raises(RuntimeError, match="boom inside the model") as raised:
        cam(images)
    assert type(raised.value) is RuntimeError
    assert any("failed on a batch of shape" in note for note in raised.value.__notes__)
    del head.call
    assert head.call == original_call
    assert head.activation is keras.activations.softmax
    assert "call" not in model.get_layer("features").__dict__
    for old, new in zip(before, weights_of(model), strict=True):
        np.testing.assert_array_equal(old, new)


def test_unknown_layer_lists_close_matches() -> None:
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'featurs'.*'features'"):
        GroupCAM(functional_cnn(), target_layer="featurs")
    with pytest.raises(LayerNotFoundError, match="not part of the model"):
        GroupCAM(functional_cnn(), target_layer=keras.layers.Dense(3))
    with pytest.raises(BackendError, match="target_layer must be"):
        GroupCAM(functional_cnn(), target_layer=3)
    with pytest.raises(BackendError, match=r"needs a keras\.Model"):
        GroupCAM(object())


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.zeros((2, 32, 32, 4), np.float32), InputError, "takes 3 channels"),
        (np.zeros((2, 3, 32, 32), np.float32), InputError, "looks channels-first"),
    ],
)
def test_bad_input(x, error, message) -> None:
    with pytest.raises(error, match=message):
        GroupCAM(functional_cnn(), "features", groups=4)(x)


def test_a_pooled_layer_is_refused(images) -> None:
    with pytest.raises(TargetLayerError, match="4-D feature map"):
        GroupCAM(functional_cnn(), "pool", groups=2)(images)


def _shared_conv_model(shared: bool) -> keras.Model:
    """conv, then one 6->6 convolution applied twice (shared) or two copies of it."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c0")(inputs)
    first = keras.layers.Conv2D(6, 3, padding="same", name="first")
    second = first if shared else keras.layers.Conv2D(6, 3, padding="same", name="second")
    h = second(keras.layers.ReLU()(first(h)))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(h))
    if not shared:
        second.set_weights(first.get_weights())
    return model


def test_layer_called_twice_is_explained_at_its_last_call(images) -> None:
    shared = _shared_conv_model(shared=True)
    unshared = _shared_conv_model(shared=False)
    unshared.set_weights(shared.get_weights()[:4] + shared.get_weights()[2:])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(shared(images)),
        keras.ops.convert_to_numpy(unshared(images)),
        atol=1e-5,
    )
    at_shared = GroupCAM(shared, "first", groups=3).explain(images)
    at_second = GroupCAM(unshared, "second", groups=3).explain(images)
    np.testing.assert_allclose(at_shared.group_scores, at_second.group_scores, atol=1e-6)
    np.testing.assert_allclose(at_shared.saliency, at_second.saliency, atol=1e-5)


def test_inside_torch_no_grad_and_inference_mode(images) -> None:
    if keras.backend.backend() != "torch":
        assert keras.backend.backend() in ("tensorflow", "jax")
        return
    import torch

    cam = GroupCAM(functional_cnn(), "features", groups=4)
    reference = cam(images)
    with torch.no_grad():
        np.testing.assert_allclose(cam(images), reference, atol=1e-6)
    with torch.inference_mode():
        np.testing.assert_allclose(cam(images), reference, atol=1e-6)
    assert torch.is_grad_enabled()
