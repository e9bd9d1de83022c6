"""The GPU check: groupcam's speed, memory and device residency on one GPU, per framework.

For each framework whose GPU is available (torch on CUDA; JAX on a GPU; Keras
on its jax and torch backends, each in a child process), on a ResNet-50 with
random weights at 224 x 224, B images, G = 32, default chunk size:

* **exact s/img** and **fast s/img**: ``GroupCAM(...)`` and ``GroupCAM(...,
  fast=True)``, medians of ``--runs`` interleaved runs after a warm-up;
* **own s/img** and **ratio**: the model's own cost for the same work (one
  forward+backward on the batch, then (G+1) x B forwards in chunks of 64) and
  exact / own;
* **reference s/img** and **speed-up** (torch): the reference script's loop,
  one image at a time (``bench_torch.reference_style``), and reference / exact;
* **fast vs exact**: the speed-up and the smallest per-image Spearman rank
  correlation between fast and exact maps (random weights: a check that fast
  maps are sane, not the closeness claim of docs/benchmarks.md);
* **peak MiB**: peak device memory of one exact explanation above what was
  allocated before it, and (torch) for B = 1, 8 and 64 to show it flat in B;
* **on device**: asserts that nothing larger than the B x G group flags (the
  data-dependent choice of which groups get a pass) is copied to the host before
  the last masked forward pass; the maps, masks and scores leave the device
  only as the final result.

Without a GPU it says so for each framework and exits 0. ``--cpu`` runs the same
measurements on the CPU with a tiny network (what the tests do).

Usage: ``python benchmarks/gpu_check.py [--batch 8] [--runs 3] [--json out.json]``
or ``nox -s gpu-check``. It should take under five minutes on one GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

GROUPS = 32


@dataclass
class Row:
    """One framework's measurements."""

    framework: str
    device: str
    model: str
    batch: int
    exact_s: float = float("nan")
    fast_s: float = float("nan")
    own_s: float = float("nan")
    reference_s: float = float("nan")
    fast_spearman: float = float("nan")
    fast_mode: str = ""
    peak_mib: float = float("nan")
    peak_by_batch: dict[int, float] = field(default_factory=dict)
    control_transfers: int = 0
    largest_early_transfer: int = 0
    on_device: bool = False
    note: str = ""


# -- host transfers -----------------------------------------------------------------


class Transfers:
    """Host copies seen during an explanation, in order with its masked forward passes."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def transfer(self, size: int) -> None:
        self.events.append(("transfer", int(size)))

    def forward(self) -> None:
        self.events.append(("forward", 0))

    def verdict(self, limit: int) -> tuple[bool, int, int]:
        """``(ok, control transfers, largest transfer)`` before the last forward pass."""
        forwards = [i for i, (kind, _) in enumerate(self.events) if kind == "forward"]
        if not forwards:
            return False, 0, 0
        early = [size for kind, size in self.events[: forwards[-1]] if kind == "transfer"]
        largest = max(early, default=0)
        return largest <= limit, len(early), largest


@contextlib.contextmanager
def counting_forwards(transfers: Transfers) -> Iterator[None]:
    """Record each masked chunk the engine runs (whatever the framework)."""
    from groupcam_core import engine

    original = engine.forward_in_chunks

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for item in original(*args, **kwargs):
            transfers.forward()
            yield item

    engine.forward_in_chunks = counted
    try:
        yield
    finally:
        engine.forward_in_chunks = original


@contextlib.contextmanager
def torch_transfers(transfers: Transfers) -> Iterator[None]:
    """Record every copy of a torch tensor's values to Python or numpy."""
    import torch
    from torch.overrides import TorchFunctionMode

    # Conversions to numpy or Python values copy whatever the tensor's device; .cpu() and
    # .to("cpu") copy only from another device (on a CPU they return the tensor).
    values = {
        torch.Tensor.numpy,
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.__bool__,
        torch.Tensor.__int__,
        torch.Tensor.__float__,
        torch.Tensor.__index__,
    }

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            tensor = args[0] if args and torch.is_tensor(args[0]) else None
            if tensor is not None and func in values:
                transfers.transfer(tensor.numel())
            elif tensor is not None and tensor.device.type != "cpu":
                target = [a for a in (*args[1:], kwargs.get("device")) if a is not None]
                if func is torch.Tensor.cpu or (
                    func is torch.Tensor.to and any(str(a).startswith("cpu") for a in target)
                ):
                    transfers.transfer(tensor.numel())
            return func(*args, **kwargs)

    with Mode():
        yield


@contextlib.contextmanager
def jax_transfers(transfers: Transfers) -> Iterator[None]:
    """Record every copy of a JAX array's values to numpy or Python."""
    from jax._src import array

    cls = array.ArrayImpl
    originals = {name: cls.__dict__[name] for name in ("__array__", "_value")}

    def array_(self: Any, *args: Any, **kwargs: Any) -> Any:
        transfers.transfer(self.size)
        return originals["__array__"](self, *args, **kwargs)

    def value(self: Any) -> Any:
        transfers.transfer(self.size)
        return originals["_value"].fget(self)

    cls.__array__ = array_
    cls._value = property(value)
    try:
        yield
    finally:
        cls.__array__ = originals["__array__"]
        cls._value = originals["_value"]


# -- timing -----------------------------------------------------------------------------


def interleaved(workloads: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median seconds of each workload over ``runs`` interleaved rounds (after a warm-up)."""
    for work in workloads.values():
        work()
    seconds: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(runs):
        for name, work in workloads.items():
            start = time.perf_counter()
            work()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def min_spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(min(spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)))


# -- torch ------------------------------------------------------------------------------


def torch_tiny() -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()


def check_torch(batch: int, runs: int, cpu: bool) -> Row:
    import torch

    if not (cpu or torch.cuda.is_available()):
        return Row("torch", "none", "", batch, note="no CUDA device: not measured")
    import bench_torch

    from groupcam_torch import GroupCAM

    device = torch.device("cpu" if cpu else "cuda")
    torch.manual_seed(0)
    if cpu:
        model, layer, size, name = torch_tiny(), "3", 32, "tiny CNN"
    else:
        model, layer, size, name = bench_torch.ResNet50().eval(), "layer4", 224, "ResNet-50"
    model = model.to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    exact_cam = GroupCAM(model, target_layer=layer, groups=GROUPS if not cpu else 8)
    fast_cam = GroupCAM(model, target_layer=layer, groups=GROUPS if not cpu else 8, fast=True)
    bench_torch.GROUPS = exact_cam.config.groups

    def synced(work: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            result = work()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return result

        return run

    seconds = interleaved(
        {
            "exact": synced(lambda: exact_cam(x)),
            "fast": synced(lambda: fast_cam(x)),
            "own": synced(lambda: bench_torch.own_passes(model, x, 64)),
            "reference": synced(lambda: bench_torch.reference_style(model, x, layer)),
        },
        runs,
    )
    exact = exact_cam.explain(x)
    fast = fast_cam.explain(x, exact.targets)
    row = Row(
        "torch",
        torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        name,
        batch,
        exact_s=seconds["exact"] / batch,
        fast_s=seconds["fast"] / batch,
        own_s=seconds["own"] / batch,
        reference_s=seconds["reference"] / batch,
        fast_spearman=min_spearman(fast.saliency, exact.saliency),
        fast_mode=str(fast_cam.fast_mode.dtype or "exact"),
    )
    transfers = Transfers()
    with counting_forwards(transfers), torch_transfers(transfers):
        exact_cam.explain(x)
    limit = batch * exact_cam.config.groups
    row.on_device, row.control_transfers, row.largest_early_transfer = transfers.verdict(limit)
    if device.type == "cuda":
        for count in (1, 8, 64):
            images = torch.randn(count, 3, size, size, device=device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            exact_cam(images)
            peak = torch.cuda.max_memory_allocated(device) - before
            row.peak_by_batch[count] = peak / 2**20
            if count == batch:
                row.peak_mib = peak / 2**20
        if batch not in row.peak_by_batch:
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            exact_cam(x)
            row.peak_mib = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return row


# -- JAX --------------------------------------------------------------------------------


def check_jax(batch: int, runs: int, cpu: bool) -> Row:
    import jax

    if not (cpu or jax.default_backend() == "gpu"):
        return Row("jax", "none", "", batch, note=f"JAX runs on {jax.default_backend()}: skipped")
    import bench_jax
    import jax.numpy as jnp
    from flax import linen

    from groupcam_jax import GroupCAM

    if cpu:

        class Tiny(linen.Module):
            @linen.compact
            def __call__(self, x: Any) -> Any:
                x = linen.relu(linen.Conv(16, (3, 3), name="c0")(x))
                x = linen.relu(linen.Conv(64, (3, 3), strides=2, name="c1")(x))
                return linen.Dense(10, name="fc")(jnp.mean(x, axis=(1, 2)))

        module, layer, size, name = Tiny(), "c1", 32, "tiny CNN (linen)"
    else:
        module, layer, size, name = bench_jax.ResNet50(), "stage4", 224, "ResNet-50 (linen)"
    variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, size, size, 3)))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 3)), jnp.float32)
    groups = GROUPS if not cpu else 8
    exact_cam = GroupCAM.from_linen(module, variables, layer, groups=groups)
    fast_cam = GroupCAM.from_linen(module, variables, layer, groups=groups, fast=True)
    apply = jax.jit(module.apply)
    bench_jax.GROUPS = groups
    seconds = interleaved(
        {
            "exact": lambda: exact_cam(x),
            "fast": lambda: fast_cam(x),
            "own": lambda: bench_jax.own_passes(apply, variables, x, 64),
        },
        runs,
    )
    exact = exact_cam.explain(x)
    fast = fast_cam.explain(x, exact.targets)
    device = jax.devices()[0]
    row = Row(
        "jax",
        str(getattr(device, "device_kind", device.platform)),
        name,
        batch,
        exact_s=seconds["exact"] / batch,
        fast_s=seconds["fast"] / batch,
        own_s=seconds["own"] / batch,
        fast_spearman=min_spearman(fast.saliency, exact.saliency),
        fast_mode=str(fast_cam.fast_mode.dtype or "exact"),
    )
    transfers = Transfers()
    with counting_forwards(transfers), jax_transfers(transfers):
        exact_cam.explain(x)
    row.on_device, row.control_transfers, row.largest_early_transfer = transfers.verdict(
        batch * groups
    )
    stats = getattr(device, "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        row.peak_mib = stats["peak_bytes_in_use"] / 2**20
        row.note = "peak MiB: the process's peak device memory (JAX cannot reset it)"
    return row


# -- Keras (in a child process per backend) ----------------------------------------------


def check_keras(batch: int, runs: int, cpu: bool) -> Row:
    import keras

    from groupcam_keras import GroupCAM

    backend = keras.backend.backend()
    accelerated = False
    if backend == "torch":
        import torch

        accelerated = torch.cuda.is_available()
    elif backend == "jax":
        import jax

        accelerated = jax.default_backend() == "gpu"
    if not (cpu or accelerated):
        return Row(f"keras-{backend}", "none", "", batch, note="no GPU for this backend: skipped")
    keras.utils.set_random_seed(0)
    if cpu:
        inputs = keras.Input((32, 32, 3))
        h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
        h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="last")(h)
        outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
        model, layer, size, name, groups = keras.Model(inputs, outputs), "last", 32, "tiny CNN", 8
    else:
        model = keras.applications.ResNet50(weights=None)
        layer, size, name, groups = "conv5_block3_out", 224, "ResNet50", GROUPS
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    exact_cam = GroupCAM(model, target_layer=layer, groups=groups)
    fast_cam = GroupCAM(model, target_layer=layer, groups=groups, fast=True)
    chunk = keras.ops.convert_to_tensor(np.repeat(x[:1], 64, axis=0))

    def own() -> None:
        # Forward passes only (Keras has no backend-neutral backward): (G+1) x B rows.
        for _ in range(0, (groups + 1) * batch, 64):
            keras.ops.convert_to_numpy(model(chunk, training=False))

    seconds = interleaved(
        {"exact": lambda: exact_cam(x), "fast": lambda: fast_cam(x), "own": own}, runs
    )
    exact = exact_cam.explain(x)
    fast = fast_cam.explain(x, exact.targets)
    row = Row(
        f"keras-{backend}",
        "cpu" if cpu else "gpu",
        name,
        batch,
        exact_s=seconds["exact"] / batch,
        fast_s=seconds["fast"] / batch,
        own_s=seconds["own"] / batch,
        fast_spearman=min_spearman(fast.saliency, exact.saliency),
        fast_mode=str(fast_cam.fast_mode.dtype or "exact"),
        note="own: forward passes only, eager",
    )
    transfers = Transfers()
    watch = torch_transfers if backend == "torch" else jax_transfers
    with counting_forwards(transfers), watch(transfers):
        exact_cam.explain(x)
    row.on_device, row.control_transfers, row.largest_early_transfer = transfers.verdict(
        batch * groups
    )
    return row


def keras_in_child(backend: str, batch: int, runs: int, cpu: bool) -> Row:
    """:func:`check_keras` on ``backend``, in a child process (one Keras backend each)."""
    command = [
        sys.executable,
        __file__,
        "--keras-child",
        "--batch",
        str(batch),
        "--runs",
        str(runs),
    ]
    if cpu:
        command.append("--cpu")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return Row(f"keras-{backend}", "none", "", batch, note="failed: " + " | ".join(tail))
    values = json.loads(lines[-1])
    values["peak_by_batch"] = {int(k): v for k, v in values["peak_by_batch"].items()}
    return Row(**values)


# -- report -----------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [
        "| framework | device | model | B | exact s/img | own s/img | ratio | reference s/img "
        "| speed-up over reference | fast s/img | fast vs exact | fast mode | fast min Spearman "
        "| peak MiB | on device |",
        "|" + "---|" * 15,
    ]
    for row in rows:
        if row.device == "none":
            lines.append(f"| {row.framework} | none | | | | | | | | | | | | | {row.note} |")
            continue
        lines.append(
            f"| {row.framework} | {row.device} | {row.model} | {row.batch} | {row.exact_s:.4f} "
            f"| {row.own_s:.4f} | {row.exact_s / row.own_s:.2f} | {row.reference_s:.4f} "
            f"| {row.reference_s / row.exact_s:.2f}x | {row.fast_s:.4f} "
            f"| {row.exact_s / row.fast_s:.2f}x | {row.fast_mode} | {row.fast_spearman:.4f} "
            f"| {row.peak_mib:.0f} | {'yes' if row.on_device else 'NO'} "
            f"({row.control_transfers} control copies, largest {row.largest_early_transfer}) |"
        )
    for row in rows:
        if row.peak_by_batch:
            flat = ", ".join(f"B={b}: {mib:.0f} MiB" for b, mib in row.peak_by_batch.items())
            lines.append(f"\n{row.framework} peak memory above the model, by batch: {flat}")
        if row.note and row.device != "none":
            lines.append(f"\n{row.framework}: {row.note}")
    return "\n".join(lines).replace("nanx", "n/a").replace("| nan", "| n/a")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU, tiny networks")
    parser.add_argument(
        "--frameworks", nargs="+", default=["torch", "jax", "keras-jax", "keras-torch"]
    )
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--keras-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keras_child:
        print(json.dumps(asdict(check_keras(args.batch, args.runs, args.cpu))))
        return 0
    rows: list[Row] = []
    started = time.perf_counter()
    for framework in args.frameworks:
        try:
            if framework == "torch":
                rows.append(check_torch(args.batch, args.runs, args.cpu))
            elif framework == "jax":
                rows.append(check_jax(args.batch, args.runs, args.cpu))
            elif framework.startswith("keras-"):
                backend = framework.removeprefix("keras-")
                rows.append(keras_in_child(backend, args.batch, args.runs, args.cpu))
        except ImportError as error:
            rows.append(Row(framework, "none", "", args.batch, note=f"not installed ({error})"))
        print(f"{framework}: done after {time.perf_counter() - started:.0f} s", flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(row) for row in rows], indent=2))
    measured = [row for row in rows if row.device != "none"]
    return 1 if any(not row.on_device for row in measured) else 0


if __name__ == "__main__":
    sys.exit(main())
