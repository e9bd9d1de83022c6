"""Fixtures every test folder shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support.explain_inputs import write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image folder of the ``groupcam explain`` tests (see ``_support.explain_inputs``)."""
    return write_image_folder(tmp_path_factory.mktemp("explain") / "images")
