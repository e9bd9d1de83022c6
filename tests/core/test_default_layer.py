"""The default target layer's rule, on recorded calls: one rule for every adapter."""

from __future__ import annotations

import pytest

from groupcam_core import TargetLayerError, tokens_to_grid
from groupcam_core.kit import DefaultLayerRule, LayerCall, is_spatial_feature_map
from groupcam_core.kit.layers import pick_last_feature_layer


def _calls(*specs: tuple[str, str, tuple[int, ...]], layout: str = "channels_first"):
    """LayerCalls in the order given: (name, kind, shape)."""
    return [
        LayerCall(name, order, is_spatial_feature_map(shape, True, layout), kind, shape)
        for order, (name, kind, shape) in enumerate(specs, start=1)
    ]


def _rule(**kwargs) -> DefaultLayerRule:
    kwargs.setdefault("layout", "channels_first")
    return DefaultLayerRule(rows=2, image_size=(32, 32), **kwargs)


def test_outputs_that_are_not_one_row_per_image_are_passed_over() -> None:
    # Swin's relative position bias: a parameter-shaped (1, heads, N, N) tensor.
    calls = _calls(
        ("patch", "convolution", (2, 16, 8, 8)),
        ("block", "other", (2, 16, 8, 8)),
        ("bias", "other", (1, 2, 16, 16)),
    )
    assert pick_last_feature_layer(calls) == "bias"  # without the rule: the old choice
    assert pick_last_feature_layer(calls, _rule()) == "block"


def test_maps_in_the_other_layout_and_class_maps_are_passed_over() -> None:
    calls = _calls(
        ("stage", "convolution", (2, 24, 8, 8)),
        ("norm", "other", (2, 8, 8, 24)),  # ConvNeXt's channels-last LayerNorm inside
        ("classifier", "convolution", (2, 4, 8, 8)),  # a segmentation model's logits
        ("up", "other", (2, 4, 32, 32)),
    )
    assert pick_last_feature_layer(calls, _rule()) == "up"
    assert pick_last_feature_layer(calls, _rule(output_channels=4)) == "stage"
    channels_last = _calls(
        ("stage", "convolution", (2, 8, 8, 24)),
        ("permuted", "other", (2, 24, 8, 8)),
        layout="channels_last",
    )
    assert pick_last_feature_layer(channels_last, _rule(layout="channels_last")) == "stage"


def test_with_a_reshape_transform_the_last_accepted_output_wins() -> None:
    calls = _calls(
        ("patch", "convolution", (2, 16, 4, 4)),
        ("tokens", "other", (2, 17, 16)),
        ("block", "container", (2, 17, 16)),
        ("norm", "other", (2, 17, 16)),
        ("head", "other", (2, 3)),
    )
    grid = tokens_to_grid()
    assert pick_last_feature_layer(calls, _rule(accepts=grid.accepts)) == "norm"
    assert pick_last_feature_layer(calls[:3], _rule(accepts=grid.accepts)) == "block"
    no_class_token = tokens_to_grid(skip_tokens=0)  # 17 tokens are not a square grid
    with pytest.raises(TargetLayerError, match=r"no layer's output is accepted.*'norm' \(2, 17"):
        pick_last_feature_layer(calls, _rule(accepts=no_class_token.accepts))
    assert tokens_to_grid(grid=(4, 4)).accepts((2, 17, 16))
    assert not tokens_to_grid(grid=(4, 5)).accepts((2, 17, 16))
    assert not grid.accepts((2, 16, 4, 4))
