"""``groupcam demo``: EfficientNet-Lite0 explained on four offline photos, in any framework."""

from __future__ import annotations

import argparse
import os
import sys

from groupcam_core import VARIANTS

from ..frameworks import FRAMEWORKS, KERAS_BACKENDS
from ..zoo import explainers
from .arguments import UsageError, positive_int

__all__ = ["DESCRIPTION", "HELP", "NAME", "add_arguments", "run"]

NAME = "demo"
HELP = "explain four offline photos with EfficientNet-Lite0 and write PNGs"
DESCRIPTION = "Explain four offline photos with EfficientNet-Lite0 and write PNGs."


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The options of ``groupcam demo``."""
    demo.add_argument("--out", default="groupcam-demo", help="output folder (default: %(default)s)")
    demo.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default="torch",
        help="groupcam_torch, groupcam_keras or groupcam_jax (linen) (default: %(default)s)",
    )
    demo.add_argument(
        "--backend",
        choices=KERAS_BACKENDS,
        default=None,
        help="the Keras backend, with --framework keras (default: KERAS_BACKEND or tensorflow)",
    )
    demo.add_argument("--variant", choices=sorted(VARIANTS), default="paper")
    demo.add_argument("--groups", type=positive_int, default=32)
    demo.add_argument("--batch-size", type=positive_int, default=None)


def _demo_way(args: argparse.Namespace) -> str:
    if args.framework == "keras":
        return f"keras-{args.backend or os.environ.get('KERAS_BACKEND', 'tensorflow')}"
    if args.backend is not None:
        raise UsageError("--backend chooses the Keras backend: use it with --framework keras")
    return "torch" if args.framework == "torch" else "jax-linen"


def run(args: argparse.Namespace) -> int:
    """Run ``groupcam demo``; return the exit status."""
    way = _demo_way(args)
    missing = explainers.missing_modules_of(way)
    if missing:
        print(
            f"groupcam demo --framework {args.framework} needs {', '.join(missing)}, which "
            f"cannot be imported; install with: {explainers.get_way(way).install_command(missing)}",
            file=sys.stderr,
        )
        return 2
    from ..demo import run_demo

    print(f"Explaining 4 photos with EfficientNet-Lite0 in {way} (Group-CAM, {args.variant}) ...")
    try:
        result = run_demo(
            args.out, way, variant=args.variant, groups=args.groups, batch_size=args.batch_size
        )
    except ImportError as error:
        print(
            f"groupcam demo --framework {args.framework} failed to import a module: {error}; "
            f"install with: {explainers.get_way(way).install_command()}",
            file=sys.stderr,
        )
        return 2
    rows = zip(result.predictions.items(), result.overlays, strict=True)
    for (photo, (label, probability)), path in rows:
        print(f"  {photo:<10} {label} ({probability:.1%})  -> {path}")
    print(f"  grid       -> {result.grid}")
    print(f"Wrote {len(result.overlays) + 1} PNG files to {result.grid.parent.resolve()}")
    return 0
