"""Speed of groupcam_jax against the Flax model's own cost for the same passes.

A ResNet-50 written in flax.linen (bottlenecks 3-4-6-3, BatchNorm; random
weights, so nothing is downloaded) at 224 x 224, paper preset, G = 32,
B = 1 and 8, through ``GroupCAM.from_linen(module, variables, "stage4")``:

* ``compile``: seconds of the first call beyond a compiled call (tracing and
  XLA compilation of the gradient pass and of each chunk shape);
* ``groupcam``: seconds per image of a call after compilation;
* ``own``: seconds per image the model itself needs for the same work, compiled
  beforehand: one forward+backward (``jax.vjp`` of the jitted apply, with respect
  to the input) plus (G+1)*B forward passes of the jitted apply at the fastest
  fixed chunk size found by a scan;
* their ratio. Medians of ``--runs`` interleaved runs.

A second table scans GroupCAM's own chunk size (``batch_size``) at B = 1.

Usage: ``python benchmarks/bench_jax.py [--runs 5]`` or ``nox -s bench``.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from groupcam_jax import DEFAULT_BATCH_SIZES, GroupCAM

GROUPS = 32
SIZE = 224
CHUNK_SIZES = (4, 8, 16, 33)
LAYER = "stage4"


class Bottleneck(linen.Module):
    planes: int
    stride: int = 1

    @linen.compact
    def __call__(self, x):
        norm = functools.partial(linen.BatchNorm, use_running_average=True)
        out = linen.relu(norm()(linen.Conv(self.planes, (1, 1), use_bias=False)(x)))
        out = linen.Conv(self.planes, (3, 3), self.stride, padding=1, use_bias=False)(out)
        out = linen.relu(norm()(out))
        out = norm()(linen.Conv(self.planes * 4, (1, 1), use_bias=False)(out))
        if self.stride != 1 or x.shape[-1] != self.planes * 4:
            x = linen.Conv(self.planes * 4, (1, 1), self.stride, use_bias=False)(x)
            x = norm()(x)
        return linen.relu(out + x)


class Stage(linen.Module):
    planes: int
    blocks: int
    stride: int

    @linen.compact
    def __call__(self, x):
        for index in range(self.blocks):
            x = Bottleneck(self.planes, self.stride if index == 0 else 1)(x)
        return x


class ResNet50(linen.Module):
    classes: int = 1000

    @linen.compact
    def __call__(self, x):
        x = linen.Conv(64, (7, 7), 2, padding=3, use_bias=False)(x)
        x = linen.relu(linen.BatchNorm(use_running_average=True)(x))
        x = linen.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for name, planes, blocks, stride in (
            ("stage1", 64, 3, 1),
            ("stage2", 128, 4, 2),
            ("stage3", 256, 6, 2),
            ("stage4", 512, 3, 2),
        ):
            x = Stage(planes, blocks, stride, name=name)(x)
        return linen.Dense(self.classes)(jnp.mean(x, axis=(1, 2)))


def own_passes(apply: Callable, variables: dict, x: jax.Array, chunk: int) -> None:
    """The model's own cost: forward+backward, then (G+1)*B forwards in chunks."""
    logits, pullback = jax.vjp(lambda batch: apply(variables, batch), x)
    pullback(jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1]))[0].block_until_ready()
    inputs = jnp.repeat(x[:1], chunk, axis=0)
    for _ in range(0, (GROUPS + 1) * x.shape[0], chunk):
        apply(variables, inputs).block_until_ready()


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(
    module: ResNet50, variables: dict, apply: Callable, batch: int, runs: int
) -> dict[str, float]:
    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, SIZE, SIZE, 3)), jnp.float32)
    scan = {}
    for chunk in CHUNK_SIZES:
        own_passes(apply, variables, x, chunk)  # compiles this chunk shape
        scan[chunk] = timed(lambda c=chunk: own_passes(apply, variables, x, c))
    chunk = min(scan, key=scan.get)
    cam = GroupCAM.from_linen(module, variables, LAYER, groups=GROUPS)
    first = timed(lambda: cam(x))
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(timed(lambda: cam(x)))
        theirs.append(timed(lambda: own_passes(apply, variables, x, chunk)))
    steady = statistics.median(ours)
    return {
        "compile": first - steady,
        "groupcam": steady / batch,
        "own": statistics.median(theirs) / batch,
        "chunk": chunk,
    }


def chunk_scan(module: ResNet50, variables: dict, runs: int) -> dict[int, float]:
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, SIZE, SIZE, 3)), jnp.float32)
    cams = {
        c: GroupCAM.from_linen(module, variables, LAYER, GROUPS, batch_size=c)
        for c in (4, 8, 16, 32)
    }
    for cam in cams.values():
        cam(x)
    timings: dict[int, list[float]] = {c: [] for c in cams}
    for _ in range(runs):
        for chunk, cam in cams.items():
            timings[chunk].append(timed(lambda cam=cam: cam(x)))
    return {c: statistics.median(t) for c, t in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--no-scan", action="store_true", help="skip the chunk-size scan")
    args = parser.parse_args()

    module = ResNet50()
    variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
    apply = jax.jit(module.apply)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()}), flax {flax.__version__}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"ResNet-50 (flax.linen, random weights), G={GROUPS}, {SIZE}x{SIZE}, "
        f"medians of {args.runs} runs\n"
    )
    print("| model | B | compile s | GroupCAM s/img | own passes s/img | ratio | own best chunk |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batches:
        row = measure(module, variables, apply, batch, args.runs)
        print(
            f"| ResNet-50 (Flax linen) | {batch} | {row['compile']:.1f} | {row['groupcam']:.3f} "
            f"| {row['own']:.3f} | {row['groupcam'] / row['own']:.2f} | {row['chunk']} |",
            flush=True,
        )
    print(f"\nGroupCAM chunk size: {DEFAULT_BATCH_SIZES['cpu']} (JAX CPU default)")
    if not args.no_scan:
        print("\n| GroupCAM batch_size | 4 | 8 | 16 | 32 |\n|---|---|---|---|---|")
        scan = chunk_scan(module, variables, args.runs)
        print("| s/img, B=1 | " + " | ".join(f"{scan[c]:.3f}" for c in (4, 8, 16, 32)) + " |")


if __name__ == "__main__":
    main()
