"""How far low-precision torch runs move Group-CAM maps from the float32 maps.

EfficientNet-Lite0 with its ImageNet weights on the four sample photos, explained
in float32, inside ``torch.autocast("cpu", dtype=torch.bfloat16)``, and with the
model converted to bfloat16 and to float16. For each, against the float32 maps:
the largest and mean absolute difference, the smallest per-photo Spearman rank
correlation, whether the top-1 classes agree with float32, and seconds per image
(median of ``--runs`` runs). Every run explains the float32 model's top-1
classes, so that the maps compare like with like.

Usage: ``python benchmarks/precision_torch.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from scipy.stats import spearmanr

from groupcam.samples import load_sample_photos
from groupcam.zoo.lite0_torch import efficientnet_lite0, photos_to_batch
from groupcam_torch import GroupCAM


def _timed(run: Callable[[], object], runs: int) -> tuple[object, float]:
    seconds, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = efficientnet_lite0()
    x = photos_to_batch(list(load_sample_photos().values()))
    cases = {
        "float32": (model, nullcontext),
        "autocast bfloat16": (model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "bfloat16 model": (copy.deepcopy(model).to(torch.bfloat16), nullcontext),
        "float16 model": (copy.deepcopy(model).to(torch.float16), nullcontext),
    }
    with torch.no_grad():
        targets = model(x).argmax(dim=1).numpy()
    results, top1 = {}, {}
    for name, (net, context) in cases.items():
        cam = GroupCAM(net)
        with torch.no_grad(), context():
            top1[name] = bool(
                (net(x.to(next(net.parameters()).dtype)).argmax(dim=1).numpy() == targets).all()
            )

        def run(cam: GroupCAM = cam, context: Callable = context) -> object:
            with context():
                return cam.explain(x, targets)  # the float32 model's classes, for all runs

        results[name] = _timed(run, args.runs)
    exact = results["float32"][0].saliency
    print(f"torch {torch.__version__}, EfficientNet-Lite0, 4 photos, G=32, medians of {args.runs}")
    print("| run | max abs diff | mean abs diff | min Spearman | same top-1 | s/image |")
    print("|---|---|---|---|---|---|")
    for name, (explanation, seconds) in results.items():
        maps = explanation.saliency
        difference = np.abs(maps - exact)
        rho = min(
            spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(maps, exact, strict=True)
        )
        same = top1[name]
        print(
            f"| {name} | {difference.max():.4f} | {difference.mean():.5f} | {rho:.4f} | "
            f"{same} | {seconds / len(x):.3f} |"
        )


if __name__ == "__main__":
    main()
