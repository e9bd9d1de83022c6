from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def blob_net():
    import torch
    from _support.torch_models import trained_blob_net

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return trained_blob_net()
