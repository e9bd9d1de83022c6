"""The ``groupcam demo`` job with PyTorch: EfficientNet-Lite0 explained on four offline photos.

:func:`groupcam_core.demo.run_demo` runs it in any way in (``way="keras-jax"``, ...).
"""

from __future__ import annotations

from pathlib import Path

from groupcam_core.demo import DemoResult
from groupcam_core.demo import run_demo as _run_demo

__all__ = ["DemoResult", "run_demo"]


def run_demo(
    out_dir: str | Path,
    variant: str = "paper",
    groups: int = 32,
    batch_size: int | None = None,
) -> DemoResult:
    """Explain the sample photos with EfficientNet-Lite0 and write PNG pictures.

    Parameters
    ----------
    out_dir
        Folder for the pictures (created if missing).
    variant, groups, batch_size
        Passed to :class:`groupcam_torch.GroupCAM`.

    Returns
    -------
    DemoResult
        Paths of one overlay per photo and of the grid, and each photo's
        predicted class name with its probability.
    """
    return _run_demo(out_dir, "torch", variant=variant, groups=groups, batch_size=batch_size)
