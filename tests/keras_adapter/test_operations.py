"""Non-layer operations of functional graphs and layer inputs (``"<layer>:input"``) as targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
from _support.keras_models import SubclassedResidualCNN, residual_cnn

from groupcam_core import LayerNotFoundError, TargetLayerError
from groupcam_core.targets import ClassObjective
from groupcam_keras import GroupCAM
from groupcam_keras.layers import all_layers


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal(scale=0.5, size=(2, 32, 32, 3)).astype(np.float32)
    x[:, 4:12, 18:26, :] += 1.5
    return x


def _no_patches(model: keras.Model) -> bool:
    return all("call" not in operation.__dict__ for _, operation in all_layers(model))


def _sum_operation(model: keras.Model, pooling: str = "head_gap") -> keras.Operation:
    """The operation that makes the tensor the head's pooling layer receives."""
    node = model.get_layer(pooling)._inbound_nodes[0]
    return node.input_tensors[0]._keras_history.operation


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def reference_gradient(
    tail: Callable[[Any], Any], features: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """d(sum of each row's target score of ``tail(features)``)/d(features), by the backend."""
    backend = keras.backend.backend()
    picked = keras.ops.convert_to_tensor(np.eye(5, dtype=np.float32)[targets])
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.constant(features)
        with tf.GradientTape() as tape:
            tape.watch(variable)
            score = tf.reduce_sum(tail(variable) * picked)
        return tape.gradient(score, variable).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda f: (tail(f) * picked).sum())(features))
    import torch

    leaf = torch.from_numpy(features).to(picked.device).requires_grad_(True)
    (gradient,) = torch.autograd.grad((tail(leaf) * picked).sum(), leaf)
    return gradient.detach().cpu().numpy()


def _gradient_pass(cam: GroupCAM, images: np.ndarray, targets: list[int]) -> Any:
    with cam.using_backend(images) as backend:
        objective = ClassObjective(targets, len(images), model_outputs="probabilities")
        return backend.gradient_pass(backend.prepare_input(images), objective)


def test_graph_operations_are_walked_and_resolved() -> None:
    model = residual_cnn()
    add = _sum_operation(model)
    assert not isinstance(add, keras.Layer)
    paths = dict(all_layers(model))
    assert paths[add.name] is add
    by_name = GroupCAM(model, target_layer=add.name, groups=4)
    by_object = GroupCAM(model, target_layer=add, groups=4)
    by_input = GroupCAM(model, target_layer="head_gap:input", groups=4)
    assert by_name.target_layer_name == by_object.target_layer_name == add.name
    assert by_input.target_layer_name == "head_gap:input"
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'head_gp'.*'head_gap'"):
        GroupCAM(model, target_layer="head_gp:input")
    with pytest.raises(LayerNotFoundError, match="not part of the model"):
        GroupCAM(model, target_layer=_sum_operation(residual_cnn()))


def test_default_is_the_residual_sum_and_its_gradient_is_the_tail_gradient(images) -> None:
    model = residual_cnn()
    add = _sum_operation(model)
    cam = GroupCAM(model, groups=4)
    explanation = cam.explain(images)
    assert cam.target_layer_name == add.name
    assert explanation.saliency.shape == (2, 32, 32)
    assert np.isfinite(explanation.saliency).all()
    assert _no_patches(model)

    # The same tensor by its stable spelling: the same maps.
    at_input = GroupCAM(model, "head_gap:input", groups=4).explain(images)
    np.testing.assert_allclose(at_input.saliency, explanation.saliency, atol=1e-6)
    np.testing.assert_allclose(at_input.group_scores, explanation.group_scores, atol=1e-6)

    # Activations and gradient at the operation, against the graph cut there.
    features_tensor = add._inbound_nodes[0].outputs[0]
    features = _to_numpy(keras.Model(model.inputs[0], features_tensor)(images))
    tail = keras.Model(features_tensor, model.outputs[0])
    targets = [1, 3]
    expected = reference_gradient(tail, features, np.asarray(targets))
    assert np.abs(expected).max() > 1e-4
    for target in (add.name, "head_gap:input"):
        found = _gradient_pass(GroupCAM(model, target, groups=4), images, targets)
        np.testing.assert_allclose(_to_numpy(found.activations), features, atol=1e-5)
        np.testing.assert_allclose(_to_numpy(found.gradients), expected, rtol=1e-4, atol=1e-6)
    assert _no_patches(model)


def test_subclassed_sum_is_reached_as_the_pooling_input(images) -> None:
    model = SubclassedResidualCNN()
    model(images[:1])
    cam = GroupCAM(model, groups=4)
    explanation = cam.explain(images)
    assert cam.target_layer_name == "head_gap:input"
    assert np.isfinite(explanation.saliency).all()

    h = model.stem(images)
    features = _to_numpy(h + model.pointwise(model.depthwise(h)))
    targets = [0, 4]
    expected = reference_gradient(model.tail, features, np.asarray(targets))
    found = _gradient_pass(cam, images, targets)
    np.testing.assert_allclose(_to_numpy(found.activations), features, atol=1e-5)
    np.testing.assert_allclose(_to_numpy(found.gradients), expected, rtol=1e-4, atol=1e-6)
    assert _no_patches(model)


def test_operation_inside_a_nested_model(images) -> None:
    base = residual_cnn()
    add = _sum_operation(base)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, name="outer_head")(base(inputs))
    model = keras.Model(inputs, outputs, name="outer")
    cam = GroupCAM(model, groups=4)
    explanation = cam.explain(images)
    assert cam.target_layer_name == f"residual_cnn/{add.name}"
    by_object = GroupCAM(model, target_layer=add, groups=4)
    by_input = GroupCAM(model, target_layer="residual_cnn/head_gap:input", groups=4)
    assert by_object.target_layer_name == cam.target_layer_name
    np.testing.assert_allclose(by_input(images), explanation.saliency, atol=1e-6)
    assert _no_patches(model)


def test_an_input_that_is_not_one_tensor_is_refused(images) -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(inputs)
    merged = keras.layers.Add(name="merge")([a, b])
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(merged))
    model = keras.Model(inputs, outputs)
    with pytest.raises(TargetLayerError, match=r"'merge:input'.*receives a list"):
        GroupCAM(model, "merge:input", groups=2)(images)
    assert _no_patches(model)
    # The merge layer's output works.
    assert GroupCAM(model, "merge", groups=2)(images).shape == (2, 32, 32)
