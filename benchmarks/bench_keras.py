"""Speed of groupcam_keras against the Keras model's own cost for the same passes.

keras.applications.ResNet50(weights=None) at 224 x 224 on the Keras backend in
use (TensorFlow by default), paper preset, G = 32, B = 1 and 8:

* ``groupcam``: seconds per image of ``GroupCAM(model, "conv5_block3_out")(x)``;
* ``own``: seconds per image of one forward+backward (``tf.GradientTape`` with
  respect to the trainable weights) plus (G+1)*B forward passes through a
  ``tf.function`` at the fastest fixed chunk size found by a scan;
* their ratio. Medians of ``--runs`` interleaved runs after a warm-up.

Usage: ``KERAS_BACKEND=tensorflow python benchmarks/bench_keras.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from groupcam_keras import DEFAULT_BATCH_SIZES, GroupCAM

GROUPS = 32
SIZE = 224
CHUNK_SIZES = (4, 8, 16, 33)
LAYER = "conv5_block3_out"


def own_passes_tensorflow(model: keras.Model, x: np.ndarray, chunk: int, forward: Callable) -> None:
    import tensorflow as tf

    batch = tf.constant(x)
    with tf.GradientTape() as tape:
        logits = model(batch, training=False)
        score = tf.reduce_sum(tf.reduce_max(logits, axis=1))
    tape.gradient(score, model.trainable_variables)
    total = (GROUPS + 1) * x.shape[0]
    inputs = tf.constant(np.repeat(x[:1], chunk, axis=0))
    for _ in range(0, total, chunk):
        forward(inputs).numpy()


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(
    model: keras.Model, forward: Callable, batch: int, runs: int
) -> tuple[float, float, int]:
    """Median seconds per image of GroupCAM and of the own passes, and the best chunk."""
    x = np.random.default_rng(0).normal(size=(batch, SIZE, SIZE, 3)).astype(np.float32)
    timings = {}
    for chunk in CHUNK_SIZES:
        own_passes_tensorflow(model, x, chunk, forward)  # traces this shape
        timings[chunk] = timed(lambda c=chunk: own_passes_tensorflow(model, x, c, forward))
    best = min(timings, key=timings.get)
    cam = GroupCAM(model, target_layer=LAYER, groups=GROUPS)
    cam(x)  # warm-up: traces the chunk shape once
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(timed(lambda: cam(x)) / batch)
        theirs.append(timed(lambda: own_passes_tensorflow(model, x, best, forward)) / batch)
    return statistics.median(ours), statistics.median(theirs), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("this benchmark measures the TensorFlow backend: KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None)
    forward = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"keras {keras.__version__}, tensorflow {tf.__version__}, "
        f"Python {platform.python_version()}"
    )
    print(f"ResNet50(weights=None), G={GROUPS}, {SIZE}x{SIZE}, medians of {args.runs} runs\n")
    print("| model | B | GroupCAM s/img | own passes s/img | ratio | own best chunk |")
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        ours, theirs, best = measure(model, forward, batch, args.runs)
        print(
            f"| ResNet50 (Keras, TF) | {batch} | {ours:.3f} | {theirs:.3f} "
            f"| {ours / theirs:.2f} | {best} |",
            flush=True,
        )
    print(f"\nGroupCAM chunk size: {DEFAULT_BATCH_SIZES['cpu']} (TensorFlow CPU default)")


if __name__ == "__main__":
    main()
