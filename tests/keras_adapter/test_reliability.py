"""What a Keras user gets wrong first: the layout, the channel count, several outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support.keras_models import SubclassedCNN, multi_output_cnns

from groupcam_core import InputError, ModelOutputError
from groupcam_keras import GroupCAM
from groupcam_keras.layers import all_layers


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.normal(scale=0.5, size=(2, 32, 32, 3)).astype(np.float32)
    x[:, 20:28, 4:12, :] += 2.0
    return x


def _no_patches(model: keras.Model) -> bool:
    return all("call" not in operation.__dict__ for _, operation in all_layers(model))


@pytest.mark.parametrize("target_layer", [None, "conv2"], ids=["default-layer", "named-layer"])
@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            (2, 3, 32, 32),
            r"shape \(2, 3, 32, 32\) \(channels_last; the batch looks channels-first: "
            r"transpose it to \(B, H, W, C\)\)",
        ),
        ((2, 32, 32, 4), r"takes 3 channels\) failed on a batch of shape \(2, 32, 32, 4\)"),
    ],
    ids=["NCHW", "4-channels"],
)
def test_subclassed_model_on_a_wrong_batch_names_shape_and_layout(
    images, target_layer, shape, message
) -> None:
    model = SubclassedCNN()
    model(images[:1])  # built for (B, 32, 32, 3); it declares no input shape
    wrong = np.full(shape, 0.1, dtype=np.float32)
    # The model's own error keeps its type; a note (PEP 678) names the batch and layout.
    with pytest.raises(Exception, match=message) as raised:
        GroupCAM(model, target_layer, groups=4)(wrong)
    assert not isinstance(raised.value, InputError)
    assert any(note.startswith("groupcam: ") for note in raised.value.__notes__)
    assert _no_patches(model)


class _AtMostFourRows(SubclassedCNN):
    """Fails on chunks of more than four rows: only the masked forward passes see those."""

    def call(self, x, training=None):
        if x.shape[0] is not None and x.shape[0] > 4:
            raise ValueError("at most 4 rows at a time")
        return super().call(x, training=training)


def test_a_failure_in_the_masked_forward_passes_keeps_its_type(images) -> None:
    model = _AtMostFourRows()
    model(images[:1])
    with pytest.raises(
        ValueError, match=r"(?s)at most 4.*failed on a batch of shape \(8, 32, 32, 3\)"
    ) as raised:
        GroupCAM(model, "conv2", groups=4, batch_size=8)(images)
    assert not isinstance(raised.value, InputError)
    assert _no_patches(model)


def test_output_selector_picks_the_class_scores(images) -> None:
    models = multi_output_cnns()
    reference = GroupCAM(models["tensor"], "conv2", groups=4).explain(images)
    for model, output in [
        (models["dict"], "scores"),
        (models["list"], 1),
        (models["dict"], lambda outputs: outputs["scores"]),
    ]:
        found = GroupCAM(model, "conv2", groups=4, output=output).explain(images)
        np.testing.assert_array_equal(found.targets, reference.targets)
        np.testing.assert_allclose(found.group_scores, reference.group_scores, atol=1e-6)
        np.testing.assert_allclose(found.saliency, reference.saliency, atol=1e-6)
    default = GroupCAM(models["dict"], groups=4, output="scores")
    np.testing.assert_allclose(default(images), reference.saliency, atol=1e-6)
    assert default.target_layer_name == "conv2"


def test_several_outputs_without_a_selector_are_refused(images) -> None:
    models = multi_output_cnns()
    with pytest.raises(ModelOutputError, match=r"keys \['embedding', 'scores'\].*output="):
        GroupCAM(models["dict"], "conv2", groups=4)(images)
    with pytest.raises(ModelOutputError, match=r"output='logits'.*no such key"):
        GroupCAM(models["dict"], groups=4, output="logits")(images)
    assert _no_patches(models["dict"])
