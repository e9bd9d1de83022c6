"""groupcam.zoo.lite0_weights: EfficientNet-Lite0's table, without any framework."""

from __future__ import annotations

import itertools
import sys

import pytest

from groupcam.zoo import lite0_weights as lite0


def test_block_table() -> None:
    blocks = lite0.BLOCKS
    assert [block.index for block in blocks] == list(range(16))
    assert blocks[0].input_filters == lite0.STEM_FILTERS
    assert blocks[-1].output_filters == 320
    for before, after in itertools.pairwise(blocks):
        assert after.input_filters == before.output_filters
    assert [b.index for b in blocks if b.has_skip] == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    assert [b.index for b in blocks if b.stride == 2] == [1, 3, 5, 11]
    assert [b.input_size for b in blocks if b.stride == 2] == [112, 56, 28, 14]
    assert [b.padding[0] for b in blocks if b.stride == 2] == [(0, 1), (1, 2), (0, 1), (1, 2)]
    assert {b.padding[0] for b in blocks if b.stride == 1} == {(1, 1), (2, 2)}
    assert lite0.STEM_PADDING == ((0, 1), (0, 1))


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding"),
    [(224, 3, 2, (0, 1)), (225, 3, 2, (1, 1)), (56, 5, 2, (1, 2)), (7, 5, 1, (2, 2))],
)
def test_torch_same_padding(size, kernel, stride, padding) -> None:
    assert lite0.torch_same_padding(size, kernel, stride) == padding


def test_weights_without_torch_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"groupcam\[demo\]"):
        lite0.efficientnet_lite0_weights()
