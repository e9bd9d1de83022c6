"""The contract suite runs once per way in that this environment has (see _support.ways)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.photos import photos_with_blobs
from _support.ways import Way, available_ways, build_way


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "way" in metafunc.fixturenames:
        metafunc.parametrize("way", available_ways(), indirect=True, scope="module")


@pytest.fixture(scope="module")
def way(request: pytest.FixtureRequest, blob_net) -> Way:
    return build_way(request.param, blob_net)


@pytest.fixture(scope="session")
def blob_net():
    import torch
    from _support.torch_models import trained_blob_net

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return trained_blob_net()


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """The four sample photos with one colored blob each, ``(4, 64, 64, 3)`` float32."""
    return photos_with_blobs()
