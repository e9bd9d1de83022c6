"""How close ``fast=True`` maps stay to the exact maps, and how much faster they come.

EfficientNet-Lite0 with its ImageNet weights (torch, or its Keras / Flax ports),
every map explaining the exact run's classes:

* on the four demo photos (``groupcam.samples``): the smallest per-photo
  Spearman rank correlation between fast and exact maps, the largest absolute
  difference, and whether the clean pass picked the same classes;
* on the 15 evaluation photos (``evaluation/photos.py``): mean insertion and
  deletion AUC of the exact and of the fast maps (the metrics themselves run the
  exact model), and the largest per-photo AUC difference;
* seconds per image of exact and fast explanations of the demo photos, medians
  of ``--runs`` interleaved runs.

Usage: ``python benchmarks/fast_maps.py --framework torch [--runs 3] [--no-auc]``
(``keras`` runs on ``KERAS_BACKEND``; ``jax`` uses the Flax linen port).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from groupcam.samples import load_sample_photos
from groupcam_core import metrics

ROOT = Path(__file__).resolve().parent.parent


def normalized(photos: list[np.ndarray]) -> np.ndarray:
    """``(B, 224, 224, 3)`` float32, as EfficientNet-Lite expects: (pixel / 255 - 0.5) / 0.5."""
    return (np.stack(photos).astype(np.float32) / 255.0 - 0.5) / 0.5


def build(framework: str, threads: int) -> tuple[Any, Any, Callable[[np.ndarray], Any], str]:
    """``(exact explainer, fast explainer, to_input, description)`` for one framework."""
    if framework == "torch":
        import torch

        from groupcam.zoo.lite0_torch import efficientnet_lite0
        from groupcam_torch import GroupCAM

        torch.set_num_threads(threads)
        model = efficientnet_lite0()

        def to_input(images: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

        return GroupCAM(model), GroupCAM(model, fast=True), to_input, f"torch {torch.__version__}"
    if framework == "keras":
        import keras

        from groupcam.zoo.lite0_keras import efficientnet_lite0
        from groupcam_keras import GroupCAM

        model = efficientnet_lite0()
        description = f"keras {keras.__version__} on {keras.backend.backend()}"
        return GroupCAM(model), GroupCAM(model, fast=True), np.asarray, description
    if framework == "jax":
        import jax

        from groupcam.zoo.lite0_jax import efficientnet_lite0_linen
        from groupcam_jax import GroupCAM

        module, variables = efficientnet_lite0_linen()
        exact = GroupCAM.from_linen(module, variables)
        fast = GroupCAM.from_linen(module, variables, fast=True)
        return exact, fast, np.asarray, f"jax {jax.__version__} ({jax.default_backend()})"
    raise SystemExit(f"unknown framework {framework!r}")


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("torch", "keras", "jax"), default="torch")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-auc", action="store_true", help="skip the evaluation photos")
    args = parser.parse_args()
    exact_cam, fast_cam, to_input, description = build(args.framework, args.threads)
    print(f"{description}; fast mode: {fast_cam.fast_mode}")

    x = to_input(normalized(list(load_sample_photos().values())))
    exact = exact_cam.explain(x)
    fast_cam.explain(x, exact.targets)  # warm-up (compilation)
    fast_targets = fast_cam.explain(x).targets
    seconds: dict[str, list[float]] = {"exact": [], "fast": []}
    fast = exact
    for _ in range(args.runs):
        _, spent = timed(lambda: exact_cam.explain(x, exact.targets))
        seconds["exact"].append(spent / len(exact.targets))
        fast, spent = timed(lambda: fast_cam.explain(x, exact.targets))
        seconds["fast"].append(spent / len(exact.targets))
    rho = [
        spearmanr(a.ravel(), b.ravel()).statistic
        for a, b in zip(fast.saliency, exact.saliency, strict=True)
    ]
    exact_s, fast_s = statistics.median(seconds["exact"]), statistics.median(seconds["fast"])
    print(
        "\n| demo photos | min Spearman | max abs diff | same classes | exact s/img | fast s/img "
        "| speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| 4 | {min(rho):.4f} | {np.abs(fast.saliency - exact.saliency).max():.3f} "
        f"| {bool((fast_targets == exact.targets).all())} | {exact_s:.3f} | {fast_s:.3f} "
        f"| {exact_s / fast_s:.2f}x |",
        flush=True,
    )
    if args.no_auc:
        return
    sys.path.insert(0, str(ROOT / "evaluation"))
    from photos import load_photos

    x = to_input(normalized(list(load_photos().values())))
    exact = exact_cam.explain(x)
    fast = fast_cam.explain(x, exact.targets)
    rho = [
        spearmanr(a.ravel(), b.ravel()).statistic
        for a, b in zip(fast.saliency, exact.saliency, strict=True)
    ]
    rows = {}
    for name, maps in (("exact", exact.saliency), ("fast", fast.saliency)):
        rows[name] = (
            metrics.insertion(exact_cam, x, maps, exact.targets, step=448).auc,
            metrics.deletion(exact_cam, x, maps, exact.targets, step=448).auc,
        )
    print("\n| 15 evaluation photos | insertion AUC | deletion AUC | min Spearman |")
    print("|---|---|---|---|")
    for name, (insertion, deletion) in rows.items():
        spearman = "1" if name == "exact" else f"{min(rho):.4f}"
        print(f"| {name} | {insertion.mean():.4f} | {deletion.mean():.4f} | {spearman} |")
    insertion_gap = np.abs(rows["fast"][0] - rows["exact"][0])
    deletion_gap = np.abs(rows["fast"][1] - rows["exact"][1])
    print(
        f"| fast - exact | {rows['fast'][0].mean() - rows['exact'][0].mean():+.4f} "
        f"(per photo at most {insertion_gap.max():.4f}) "
        f"| {rows['fast'][1].mean() - rows['exact'][1].mean():+.4f} "
        f"(per photo at most {deletion_gap.max():.4f}) | |"
    )


if __name__ == "__main__":
    main()
