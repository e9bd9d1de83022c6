"""Speed and memory of groupcam_torch against the model's own cost for the same passes.

For each model and batch size B this measures, in one process and interleaved:

* ``groupcam``: seconds per image of ``GroupCAM(model)(x)`` (paper preset, G=32,
  default batch_size), and of ``GroupCAM(model, fast=True)(x)``;
* ``own``: seconds per image the model itself needs for the same work: one
  forward+backward on the batch, plus (G+1)*B forward passes under
  ``torch.inference_mode`` at the fastest chunk size found by a scan;
* their ratio; and the reference script's loop (``reference_style``). Medians
  over ``--runs`` runs after a warm-up.

Peak memory (max RSS) is measured in fresh child processes, once running
GroupCAM and once running the model's own passes, for B = 1, 8 and 64.

Usage: ``python benchmarks/bench_torch.py [--runs 5] [--quick]`` or ``nox -s bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from groupcam.zoo.lite0_torch import efficientnet_lite0
from groupcam_torch import DEFAULT_BATCH_SIZES, GroupCAM

GROUPS = 32
SIZE = 224
CHUNK_SIZES = (4, 8, 16, 33, 66)


# -- a ResNet-50-sized model (random weights; torchvision is not needed) ------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, inplanes = [], 64
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for index in range(blocks):
                stage.append(Bottleneck(inplanes, planes, stride if index == 0 else 1))
                inplanes = planes * 4
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "ResNet-50 (random)": (lambda: ResNet50().eval(), "layer4"),
    "EfficientNet-Lite0": (efficientnet_lite0, "_swish"),
}


# -- the two workloads --------------------------------------------------------------


def own_passes(model: nn.Module, x: torch.Tensor, chunk: int) -> None:
    """The model's own cost: forward+backward, then (G+1)*B forwards in chunks."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    model.zero_grad(set_to_none=True)
    total = (GROUPS + 1) * x.shape[0]
    with torch.inference_mode():
        inputs = x.detach()[:1].expand(chunk, *x.shape[1:]).contiguous()
        for start in range(0, total, chunk):
            model(inputs[: min(chunk, total - start)])


def reference_style(model: nn.Module, x: torch.Tensor, layer_name: str | None = None) -> None:
    """The cost profile of the public reference script, re-created for timing only.

    One image at a time: forward, ``.backward()``, a direct 51 x 51 Gaussian
    convolution for the blur (computed twice, as there), and the G masked
    inputs in one forward pass of G rows.
    """
    line = torch.exp(-((torch.arange(51, device=x.device) - 25.0) ** 2) / (2 * 50.0**2))
    kernel = torch.outer(line, line)
    kernel = (kernel / kernel.sum()).expand(3, 1, 51, 51).contiguous()

    def blur(images: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(images, (25, 25, 25, 25), mode="reflect")
        return nn.functional.conv2d(padded, kernel, groups=3)

    captured = {}
    layer = dict(model.named_modules())[layer_name or REFERENCE_LAYERS[type(model).__name__]]
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    try:
        for image in x.split(1):
            logits = model(image)
            captured["a"].retain_grad()
            logits[0, logits.argmax()].backward()
            activations, gradients = captured["a"].detach(), captured["a"].grad
            model.zero_grad(set_to_none=True)
            weighted = activations * gradients.mean(dim=(2, 3), keepdim=True)
            maps = torch.cat(weighted.chunk(GROUPS, 1)).sum(1, keepdim=True).relu()
            maps = nn.functional.interpolate(maps, size=x.shape[2:], mode="bilinear")
            flat = maps.flatten(1)
            low, high = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
            masks = ((flat - low) / (high - low)).view_as(maps)
            with torch.no_grad():
                model(blur(image))
                model(image * masks + blur(image) * (1 - masks))
    finally:
        handle.remove()


REFERENCE_LAYERS = {"ResNet50": "layer4", "EfficientNet": "_swish"}


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def best_chunk(model: nn.Module, x: torch.Tensor) -> int:
    timings = {
        c: min(timed(lambda c=c: own_passes(model, x, c)) for _ in range(2)) for c in CHUNK_SIZES
    }
    return min(timings, key=timings.get)


def measure_speed(name: str, batch: int, runs: int) -> dict[str, object]:
    factory, layer = MODELS[name]
    model = factory()
    torch.manual_seed(0)
    x = torch.randn(batch, 3, SIZE, SIZE)
    cam = GroupCAM(model, target_layer=layer, groups=GROUPS)
    fast_cam = GroupCAM(model, target_layer=layer, groups=GROUPS, fast=True)
    chunk = best_chunk(model, x)
    cam(x)  # warm-up
    fast_cam(x)
    own_passes(model, x, chunk)
    reference_style(model, x[:1])
    ours, fast, theirs, reference = [], [], [], []
    for _ in range(runs):
        ours.append(timed(lambda: cam(x)) / batch)
        fast.append(timed(lambda: fast_cam(x)) / batch)
        theirs.append(timed(lambda: own_passes(model, x, chunk)) / batch)
        reference.append(timed(lambda: reference_style(model, x)) / batch)
    return {
        "model": name,
        "batch": batch,
        "groupcam_s": statistics.median(ours),
        "fast_s": statistics.median(fast),
        "fast_mode": str(fast_cam.fast_mode),
        "own_s": statistics.median(theirs),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "reference_s": statistics.median(reference),
        "own_chunk": chunk,
        "groupcam_chunk": DEFAULT_BATCH_SIZES["cpu"],
        "runs": runs,
    }


# -- memory, in child processes --------------------------------------------------------


def peak_rss_child(name: str, batch: int, workload: str) -> tuple[float, float]:
    """Peak resident memory (VmHWM, MiB) of a fresh process running one workload.

    Returns the peak after loading the model and the peak after the workload.
    """
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import bench_torch as b\n"
        "torch.set_num_threads(2)\n"
        f"factory, layer = b.MODELS[{name!r}]\n"
        "model = factory()\n"
        f"x = torch.randn({batch}, 3, b.SIZE, b.SIZE)\n"
        "before = b.high_water_mark()\n"
        f"if {workload!r} == 'groupcam':\n"
        "    cam = b.GroupCAM(model, target_layer=layer, groups=b.GROUPS)\n"
        "    cam(x[:1])  # a GroupCAM used before: it knows how often its layer runs\n"
        "    cam(x)\n"
        "else:\n"
        "    b.own_passes(model, x, b.DEFAULT_BATCH_SIZES['cpu'])\n"
        "print(before, b.high_water_mark())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(float, done.stdout.split()[-2:])
    return before, after


def high_water_mark() -> float:
    """This process's peak resident set size in MiB (Linux /proc; reset by exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmHWM not found in /proc/self/status")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one model, B=1, 2 runs")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument(
        "--memory-models", nargs="+", choices=list(MODELS), default=["EfficientNet-Lite0"]
    )
    parser.add_argument("--memory-batches", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cases = [(name, batch) for name in args.models for batch in args.batches]
    if args.quick:
        cases, args.runs = [("EfficientNet-Lite0", 1)], 2
    if args.memory_only:
        cases = []
    print(f"machine: {machine()}")
    print(f"G={GROUPS}, {SIZE}x{SIZE}, medians of {args.runs} runs\n")
    header = (
        f"| {'model':<20} | B | GroupCAM s/img | own passes s/img | ratio | own best chunk "
        "| reference-style s/img | speed-up | fast s/img | fast speed-up |"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    rows = []
    for name, batch in cases:
        row = measure_speed(name, batch, args.runs)
        rows.append(row)
        print(
            f"| {name:<20} | {batch} | {row['groupcam_s']:>14.3f} | {row['own_s']:>16.3f} "
            f"| {row['ratio']:>5.2f} | {row['own_chunk']:>14} | {row['reference_s']:>21.3f} "
            f"| {row['reference_s'] / row['groupcam_s']:>7.2f}x | {row['fast_s']:>10.3f} "
            f"| {row['reference_s'] / row['fast_s']:>12.2f}x |",
            flush=True,
        )
    if rows:
        print(f"\nfast mode: {rows[0]['fast_mode']}")
    if not args.no_memory and not args.quick:
        print(
            "\n| model | B | model loaded (MiB) | peak, GroupCAM (MiB) | peak, own passes (MiB) "
            "| GroupCAM - own (MiB) |"
        )
        print("|---|---|---|---|---|---|")
        for name in args.memory_models:
            for batch in args.memory_batches:
                loaded, ours = peak_rss_child(name, batch, "groupcam")
                _, theirs = peak_rss_child(name, batch, "own")
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "rss_loaded": loaded,
                        "rss_groupcam": ours,
                        "rss_own": theirs,
                    }
                )
                print(
                    f"| {name} | {batch} | {loaded:.0f} | {ours:.0f} | {theirs:.0f} "
                    f"| {ours - theirs:+.0f} |",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine(), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
