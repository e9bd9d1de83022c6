from __future__ import annotations

import pytest
import torch
from _support.torch_models import trained_blob_net


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def blob_net() -> torch.nn.Module:
    return trained_blob_net()
