"""Group-CAM on 3-D volumes: speed against the model's own passes, and peak memory.

A small 3-D CNN (four Conv3d blocks, 1 -> 16 -> 32 -> 64 -> 64 channels, strides 2,
random weights) on 64 x 64 x 64 volumes, G = 32, paper constants (blur kernel 51,
sigma 50 on every axis). For each batch size B, interleaved in one process after
a warm-up, medians of ``--runs``:

* ``groupcam``: seconds per volume of ``GroupCAM(model, target_layer=...)(x)``;
* ``own``: the model's own passes for the same work: one forward+backward on the
  batch, then (G + 1) x B forward passes in chunks of the explainer's batch size;
* their ratio.

Peak resident memory (VmHWM) comes from fresh child processes, one per workload
and B, to show that it does not grow with the batch.

Usage: ``python benchmarks/bench_volumes.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import torch
from bench_torch import GROUPS, machine, own_passes, timed
from torch import nn

from groupcam_torch import DEFAULT_BATCH_SIZES, GroupCAM

SIDE = 64
LAYER = "features.3"


class VolumeNet(nn.Module):
    """A 3-D CNN of the size used on 64^3 CT or MRI crops."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        widths = [1, 16, 32, 64, 64]
        self.features = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv3d(widths[i], widths[i + 1], 3, stride=2, padding=1),
                    nn.BatchNorm3d(widths[i + 1]),
                    nn.ReLU(),
                )
                for i in range(4)
            ]
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def model() -> nn.Module:
    torch.manual_seed(0)
    return VolumeNet().eval()


def peak_child(batch: int, workload: str) -> float:
    """Peak resident memory (MiB) of a fresh process explaining (or passing) B volumes."""
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import bench_volumes as b\n"
        "torch.set_num_threads(2)\n"
        "net = b.model()\n"
        f"x = torch.randn({batch}, 1, b.SIDE, b.SIDE, b.SIDE)\n"
        f"if {workload!r} == 'groupcam':\n"
        "    b.GroupCAM(net, target_layer=b.LAYER, groups=b.GROUPS)(x)\n"
        "else:\n"
        "    b.own_passes(net, x, b.DEFAULT_BATCH_SIZES['cpu'])\n"
        "import bench_torch\n"
        "print(bench_torch.high_water_mark())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--memory-batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chunk = DEFAULT_BATCH_SIZES["cpu"]
    print(f"machine: {machine()}")
    print(f"G={GROUPS}, {SIDE}^3 volumes, medians of {args.runs} runs, chunks of {chunk}\n")
    print("| B | GroupCAM s/volume | own passes s/volume | ratio |")
    print("|---|---|---|---|")
    net = model()
    for batch in args.batches:
        torch.manual_seed(batch)
        x = torch.randn(batch, 1, SIDE, SIDE, SIDE)
        cam = GroupCAM(net, target_layer=LAYER, groups=GROUPS)
        cam(x)
        own_passes(net, x, chunk)
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(lambda cam=cam, x=x: cam(x)) / batch)
            theirs.append(timed(lambda x=x: own_passes(net, x, chunk)) / batch)
        mine, own = statistics.median(ours), statistics.median(theirs)
        print(f"| {batch} | {mine:.3f} | {own:.3f} | {mine / own:.2f} |", flush=True)
    print("\n| B | peak, GroupCAM (MiB) | peak, own passes (MiB) |")
    print("|---|---|---|")
    for batch in args.memory_batches:
        print(
            f"| {batch} | {peak_child(batch, 'groupcam'):.0f} | {peak_child(batch, 'own'):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
