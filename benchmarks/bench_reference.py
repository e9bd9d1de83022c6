"""groupcam_torch side by side with the public reference code of Group-CAM, in one run.

The reference (github.com/wofmanaf/Group-CAM, ``cam/groupcam.py``) explains one
image per call: a forward and ``.backward()`` for the gradient, kornia's
``gaussian_blur2d`` (kernel 51, sigma 50) computed twice, the blurred baseline's
pass and one pass of the G masked images. This script imports that code from a
checkout (``--reference PATH``; it needs ``kornia`` and ``scikit-learn``; the
checkout's imports of OpenCV, torchvision and importlib_resources serve only its
demo and are stood in for by empty modules; its ``.cuda()`` calls are made
no-ops so that it runs on the CPU) and times, interleaved in one process after
a warm-up, for each model and batch size B:

* the reference, called once per image of the batch;
* ``GroupCAM(model, target_layer=...)`` (exact passes, default ``batch_size``);
* ``GroupCAM(..., fast=True)``.

It prints seconds per image (medians of ``--runs``), the speed-ups over the
reference, and how far the map of ``variant="official-head"`` (the preset that
computes what the reference code computes; the timed runs use the default
paper preset, whose denoising costs one percentile per map) is from the
reference's on the first image, at the same layer: the parity the tests pin,
here on the benchmark's models.

EfficientNet-Lite0 calls its ``_swish`` module twice (after the stem and after
the head); the reference's module backward hook on such a shared module records
the gradient of the wrong call, so the reference and this comparison explain
the head's batch norm ``_bn1`` instead, which costs the same.

Usage::

    git clone https://github.com/wofmanaf/Group-CAM /tmp/Group-CAM
    pip install kornia scikit-learn
    python benchmarks/bench_reference.py --reference /tmp/Group-CAM
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from bench_torch import GROUPS, MODELS, SIZE, machine, timed

from groupcam_torch import GroupCAM

#: The layer both explain, per model: where the reference's hooks work as written.
REFERENCE_COMPARISON_LAYERS = {"ResNet-50 (random)": "layer4", "EfficientNet-Lite0": "_bn1"}

#: Modules the reference checkout imports for its demo only (pictures, ImageNet labels).
DEMO_ONLY_MODULES = (
    "cv2",
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.utils",
    "importlib_resources",
)


def load_reference(checkout: Path) -> type:
    """The reference's ``GroupCAM`` class, imported from a checkout of its repository."""
    if not (checkout / "cam" / "groupcam.py").is_file():
        raise SystemExit(f"{checkout} is not a checkout of wofmanaf/Group-CAM (no cam/groupcam.py)")
    for name in DEMO_ONLY_MODULES:
        if name not in sys.modules:
            stand_in = types.ModuleType(name)
            stand_in.path = None  # type: ignore[attr-defined]
            sys.modules[name] = stand_in
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]  # type: ignore[attr-defined]
    sys.path.insert(0, str(checkout))
    try:
        module = importlib.import_module("cam.groupcam")
    finally:
        sys.path.remove(str(checkout))
    return module.GroupCAM


class CudaCallsStayOnCpu:
    """While active, ``Tensor.cuda()`` returns the tensor itself (the reference calls it)."""

    def __enter__(self) -> None:
        self.cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        torch.Tensor.cuda = self.cuda  # type: ignore[method-assign]


def measure(name: str, batch: int, runs: int, reference_class: type) -> dict[str, object]:
    factory, _ = MODELS[name]
    layer = REFERENCE_COMPARISON_LAYERS[name]
    model = factory()
    torch.manual_seed(0)
    x = torch.randn(batch, 3, SIZE, SIZE)
    reference = reference_class(model, target_layer=layer, groups=GROUPS)
    ours = GroupCAM(model, target_layer=layer, groups=GROUPS)
    fast = GroupCAM(model, target_layer=layer, groups=GROUPS, fast=True)

    def run_reference() -> list[torch.Tensor]:
        return [reference(image) for image in x.split(1)]

    workloads: dict[str, Callable[[], object]] = {
        "reference": run_reference,
        "groupcam": lambda: ours(x),
        "fast": lambda: fast(x),
    }
    first_reference = run_reference()[0]  # warm-up, and the map to compare with
    ours(x)
    fast(x)
    same_preset = GroupCAM(model, target_layer=layer, groups=GROUPS, variant="official-head")
    first_ours = same_preset(x[:1])[0]
    seconds: dict[str, list[float]] = {key: [] for key in workloads}
    for _ in range(runs):
        for key, workload in workloads.items():
            seconds[key].append(timed(workload) / batch)
    median = {key: statistics.median(values) for key, values in seconds.items()}
    # The reference returns None for a constant map, and NaN where a group's map
    # is constant (its min-max normalization divides by zero).
    difference = (
        float("nan")
        if first_reference is None
        else (first_reference[0, 0].detach() - first_ours).abs().max().item()
    )
    return {
        "model": name,
        "layer": layer,
        "batch": batch,
        **{f"{key}_s": value for key, value in median.items()},
        "speed_up": median["reference"] / median["groupcam"],
        "fast_speed_up": median["reference"] / median["fast"],
        "fast_mode": str(fast.fast_mode),
        "max_difference": difference,
    }


def describe(difference: float) -> str:
    """The map difference for the table: NaN means the reference's own map had NaN."""
    if math.isnan(difference):
        return "NaN in the reference's map (a constant group divided by zero)"
    return f"{difference:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a Group-CAM checkout")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # The reference registers module backward hooks, which torch has deprecated.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
    reference_class = load_reference(args.reference)
    print(f"machine: {machine()}")
    print(f"G={GROUPS}, {SIZE}x{SIZE}, medians of {args.runs} runs, interleaved\n")
    print(
        "| model | layer | B | reference s/img | GroupCAM s/img | speed-up "
        "| fast s/img | fast speed-up | max abs difference to the reference's map |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    mode = ""
    with CudaCallsStayOnCpu():
        for name in args.models:
            for batch in args.batches:
                row = measure(name, batch, args.runs, reference_class)
                mode = str(row["fast_mode"])
                print(
                    f"| {name} | `{row['layer']}` | {batch} | {row['reference_s']:.3f} "
                    f"| {row['groupcam_s']:.3f} | {row['speed_up']:.2f}x | {row['fast_s']:.3f} "
                    f"| {row['fast_speed_up']:.2f}x | {describe(row['max_difference'])} |",
                    flush=True,
                )
    print(f"\nfast mode: {mode}")


if __name__ == "__main__":
    main()
