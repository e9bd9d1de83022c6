"""groupcam.compare with PyTorch explainers: layouts, tensors in, agreement."""

from __future__ import annotations

import numpy as np
import torch
from _support.photos import photos_with_blobs

from groupcam.compare import compare
from groupcam_torch import GroupCAM


def test_input_layout_is_channels_first(blob_net) -> None:
    assert GroupCAM(blob_net, "6").input_layout == "channels_first"


def test_compare_two_presets_on_channels_last_tensors(blob_net) -> None:
    photos = torch.from_numpy(photos_with_blobs())  # (4, 64, 64, 3): converted for torch
    cams = {
        "paper": GroupCAM(blob_net, "6", groups=8),
        "again": GroupCAM(blob_net, "6", groups=8),
        "official-head": GroupCAM(blob_net, "6", groups=8, variant="official-head"),
    }
    result = compare(cams, photos, layout="channels_last")
    assert result.runs["paper"].layout == "channels_first"
    expected = cams["paper"].explain(photos.permute(0, 3, 1, 2).contiguous())
    np.testing.assert_array_equal(result.maps["paper"], expected.saliency)
    same = result.agreement("again")
    assert same.max_abs_difference.max() == 0.0
    assert same.spearman.min() == 1.0
    other = result.agreement("official-head")
    assert other.same_target.all()
    assert other.max_abs_difference.max() > 0.0
    assert "| official-head | channels_first |" in result.to_markdown()
