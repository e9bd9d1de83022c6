"""How far half-precision models move Group-CAM maps from the float32 maps, per framework.

EfficientNet-Lite0 with its ImageNet weights on the four sample photos, every run
explaining the float32 model's top-1 classes:

* ``--framework keras`` (on ``KERAS_BACKEND``): the port of
  ``groupcam.zoo.lite0_keras`` built in float32, under the ``"mixed_bfloat16"`` policy
  and under ``"mixed_float16"`` (variables float32, layers computing in half
  precision; the gradient pass runs in the model's policy too);
* ``--framework jax``: the linen and NNX ports of ``groupcam.zoo.lite0_jax`` with their
  variables and the images in bfloat16 (and in float16), so that every layer
  computes in half precision;
* ``--framework torch``: ``precision_torch.py`` (autocast, bfloat16 and float16
  models).

For each run against float32: the largest and mean absolute difference of the
maps, the smallest per-photo Spearman rank correlation, whether the model's
top-1 classes agree with float32, and seconds per image (median of ``--runs``
runs after a warm-up).

Usage: ``python benchmarks/precision.py --framework keras|jax|torch [--runs 3]``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))


def photos() -> np.ndarray:
    """The four demo photos as ``(4, 224, 224, 3)`` float32, normalized for Lite0."""
    images = np.stack(list(load_sample_photos().values())).astype(np.float32)
    return (images / 255.0 - 0.5) / 0.5


def keras_cases(x: np.ndarray) -> tuple[dict[str, tuple[Any, Any]], Callable[[Any, Any], Any]]:
    """``{name: (explainer, batch)}`` and ``top1(explainer, batch)`` for Keras."""
    import keras

    from groupcam.zoo.lite0_keras import efficientnet_lite0
    from groupcam_keras import GroupCAM

    cases = {}
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            model = efficientnet_lite0()
        finally:
            keras.config.set_dtype_policy(previous)
        cases[f"Keras-{keras.backend.backend()}, {policy} policy"] = (GroupCAM(model), x)

    def top1(cam: Any, batch: Any) -> np.ndarray:
        outputs = keras.ops.convert_to_numpy(cam.model(batch, training=False))
        return np.asarray(outputs, dtype=np.float32).argmax(axis=1)

    return cases, top1


def jax_cases(x: np.ndarray) -> tuple[dict[str, tuple[Any, Any]], Callable[[Any, Any], Any]]:
    """``{name: (explainer, batch)}`` and ``top1(explainer, batch)`` for linen and NNX."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from groupcam.zoo.lite0_jax import efficientnet_lite0_linen, efficientnet_lite0_nnx
    from groupcam_jax import GroupCAM
    from groupcam_jax.fast import cast_floats

    module, variables = efficientnet_lite0_linen()
    nnx_model = efficientnet_lite0_nnx()
    graphdef, state = nnx.split(nnx_model)
    cases: dict[str, tuple[Any, Any]] = {
        "linen, float32": (GroupCAM.from_linen(module, variables), jnp.asarray(x)),
        "NNX, float32": (GroupCAM.from_nnx(nnx_model), jnp.asarray(x)),
    }
    for dtype in (jnp.bfloat16, jnp.float16):
        name = jnp.dtype(dtype).name
        cases[f"linen, {name} variables and images"] = (
            GroupCAM.from_linen(module, cast_floats(variables, dtype)),
            jnp.asarray(x, dtype),
        )
        half = nnx.merge(graphdef, cast_floats(state, dtype))
        cases[f"NNX, {name} variables and images"] = (
            GroupCAM.from_nnx(half),
            jnp.asarray(x, dtype),
        )

    def top1(cam: Any, batch: Any) -> np.ndarray:
        with cam.using_backend(batch) as backend:
            outputs = backend.forward(backend.prepare_input(batch))
        return np.asarray(jax.device_get(outputs), dtype=np.float32).argmax(axis=1)

    return cases, top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("keras", "jax", "torch"), required=True)
    parser.add_argument("--runs", type=int, default=3)
    args, rest = parser.parse_known_args()
    if args.framework == "torch":
        import precision_torch

        sys.argv = [sys.argv[0], "--runs", str(args.runs), *rest]
        precision_torch.main()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    x = photos()
    cases, top1 = keras_cases(x) if args.framework == "keras" else jax_cases(x)
    reference_cam, reference_x = next(iter(cases.values()))
    targets = reference_cam.explain(reference_x).targets
    reference_top1 = top1(reference_cam, reference_x)
    results = {}
    for name, (cam, batch) in cases.items():
        cam.explain(batch, targets)  # warm-up: compilation
        seconds, explanation = [], None
        for _ in range(args.runs):
            start = time.perf_counter()
            explanation = cam.explain(batch, targets)
            seconds.append(time.perf_counter() - start)
        same = bool((top1(cam, batch) == reference_top1).all())
        results[name] = (explanation, statistics.median(seconds) / len(x), same)
    exact = next(iter(results.values()))[0].saliency
    print(f"{args.framework}: EfficientNet-Lite0, 4 photos, G=32, medians of {args.runs}")
    print("| run | max abs diff | mean abs diff | min Spearman | same top-1 | s/image |")
    print("|---|---|---|---|---|---|")
    for name, (explanation, seconds, same) in results.items():
        maps = explanation.saliency
        assert maps.dtype == np.float32, name
        assert np.isfinite(maps).all(), name
        difference = np.abs(maps - exact)
        rho = min(
            spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(maps, exact, strict=True)
        )
        print(
            f"| {name} | {difference.max():.4f} | {difference.mean():.5f} | {rho:.4f} "
            f"| {'yes' if same else 'no'} | {seconds:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
