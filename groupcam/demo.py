"""The ``groupcam demo`` job: EfficientNet-Lite0 explained on four offline photos, in any way."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from groupcam_core.visualization import save_grid, save_overlay

from .samples import imagenet_class_names, sample_batch
from .zoo.explainers import get_way, make_explainer

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and found."""

    overlays: list[Path]
    grid: Path
    predictions: dict[str, tuple[str, float]]


def run_demo(
    out_dir: str | Path,
    way: str = "torch",
    variant: str = "paper",
    groups: int = 32,
    batch_size: int | None = None,
) -> DemoResult:
    """Explain the sample photos with EfficientNet-Lite0 and write PNG pictures.

    Parameters
    ----------
    out_dir
        Folder for the pictures (created if missing).
    way
        One of :data:`groupcam.zoo.explainers.WAYS`: ``"torch"``, ``"keras-tensorflow"``,
        ``"jax-linen"``, ... (a Keras way needs Keras not yet running on another
        backend in this process).
    variant, groups, batch_size
        Passed to the way's ``GroupCAM``.

    Returns
    -------
    DemoResult
        Paths of one overlay per photo and of the grid, and each photo's
        predicted class name with its probability.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photos, batch = sample_batch(get_way(way).layout)
    cam = make_explainer(way, variant=variant, groups=groups, batch_size=batch_size)
    result = cam.explain(batch)
    names = imagenet_class_names()
    overlays, titles, predictions = [], [], {}
    for index, (photo_name, photo) in enumerate(photos.items()):
        label = names[int(result.targets[index])]
        probability = float(result.target_probabilities[index])
        predictions[photo_name] = (label, probability)
        title = f"{photo_name}: {label} ({probability:.0%})"
        titles.append(title)
        path = out / f"{photo_name}_groupcam.png"
        save_overlay(path, photo, result.saliency[index], title=title)
        overlays.append(path)
        logger.info("wrote %s", path)
    grid = save_grid(
        out / "groupcam_grid.png", list(photos.values()), list(result.saliency), titles
    )
    return DemoResult(overlays=overlays, grid=grid, predictions=predictions)
