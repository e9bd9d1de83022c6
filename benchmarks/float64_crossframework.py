"""Where the cross-framework map differences come from: float32 rounding, checked in float64.

EfficientNet-Lite0 with its ImageNet weights on the four sample photos, explained
with Group-CAM in torch (``groupcam_torch``) and in Flax linen
(``groupcam.zoo.lite0_jax``), each in float32 and in float64 (the torch model with
``.double()``, JAX with ``jax_enable_x64`` and the variables cast). Every run
explains the float32 torch model's top-1 classes. Prints, for pairs of runs, the
largest and mean absolute map difference and the largest difference of the group
scores (maps and scores are stored in float32), and the largest difference of the
two float64 models' logits:

- torch float32 against linen float32 is the difference ``groupcam compare`` reports;
- each framework's float32 maps against its own float64 maps is the float32
  rounding error of that framework alone;
- torch float64 against linen float64 is what is left of the difference when
  rounding is about 1e-16: if it is tiny, the two ports compute the same
  function and the float32 difference is rounding only.

Usage: ``python benchmarks/float64_crossframework.py [--groups 32] [--variant paper]``.
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # before any JAX array exists

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from groupcam.samples import load_sample_photos  # noqa: E402
from groupcam.zoo import lite0_jax as zoo  # noqa: E402
from groupcam.zoo.lite0_torch import efficientnet_lite0, photos_to_batch  # noqa: E402
from groupcam_jax import GroupCAM as JaxGroupCAM  # noqa: E402
from groupcam_torch import GroupCAM as TorchGroupCAM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--batch-size", type=int, default=34)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    settings = {"groups": args.groups, "variant": args.variant, "batch_size": args.batch_size}
    x = photos_to_batch(list(load_sample_photos().values()))  # (4, 3, 224, 224) float32
    model = efficientnet_lite0()
    with torch.no_grad():
        targets = model(x).argmax(dim=1).numpy()
    module, variables = zoo.efficientnet_lite0_linen()
    images = np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))
    runs = {}
    for bits, dtype in ((32, torch.float32), (64, torch.float64)):
        net = model.to(dtype)
        cam = TorchGroupCAM(net, "_swish", **settings)
        runs[f"torch float{bits}"] = cam.explain(x.to(dtype), targets)
        floats = jnp.float32 if bits == 32 else jnp.float64
        cast = jax.tree.map(lambda a, floats=floats: jnp.asarray(a, dtype=floats), variables)
        cam = JaxGroupCAM.from_linen(module, cast, target_layer="head_activation", **settings)
        runs[f"linen float{bits}"] = cam.explain(
            images.astype(np.float64 if bits == 64 else np.float32), targets
        )
        print(f"float{bits} done", flush=True)
    with torch.no_grad():
        torch_logits = model.to(torch.float64)(x.to(torch.float64)).numpy()
    cast = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.float64), variables)
    linen_logits = np.asarray(module.apply(cast, jnp.asarray(images, dtype=jnp.float64)))
    logits_difference = np.abs(torch_logits - linen_logits).max()
    print(f"float64 logits, torch vs linen: max abs diff {logits_difference:.1e}")
    pairs = (
        ("torch float32", "linen float32"),
        ("torch float32", "torch float64"),
        ("linen float32", "linen float64"),
        ("torch float64", "linen float64"),
    )
    print(f"\n{args.variant}, {args.groups} groups, 4 photos at 224 x 224\n")
    print("| maps | max abs diff | mean abs diff | max group-score diff |")
    print("|---|---|---|---|")
    for first, second in pairs:
        a, b = runs[first], runs[second]
        difference = np.abs(a.saliency.astype(np.float64) - b.saliency.astype(np.float64))
        scores = np.abs(a.group_scores.astype(np.float64) - b.group_scores.astype(np.float64))
        print(
            f"| {first} vs {second} | {difference.max():.1e} | {difference.mean():.1e} "
            f"| {scores.max():.1e} |"
        )


if __name__ == "__main__":
    main()
