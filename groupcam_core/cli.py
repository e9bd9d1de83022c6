"""The ``groupcam`` command line: ``groupcam demo`` and ``groupcam compare``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .config import VARIANTS
from .errors import GroupCAMError
from .jobs.command import add_explain_command, run_explain

__all__ = ["main"]

FRAMEWORKS = ("torch", "keras", "jax")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _names(choices: Sequence[str], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from "
                + ", ".join(choices)
            )
        return list(dict.fromkeys(names))

    return parse


def _parser() -> argparse.ArgumentParser:
    from .ways import WAYS

    parser = argparse.ArgumentParser(
        prog="groupcam", description="Group-CAM visual explanations for image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"groupcam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="explain four offline photos with EfficientNet-Lite0 and write PNGs",
        description="Explain four offline photos with EfficientNet-Lite0 and write PNGs.",
    )
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
    demo.add_argument("--groups", type=_positive_int, default=32)
    demo.add_argument("--batch-size", type=_positive_int, default=None)

    compare = commands.add_parser(
        "compare",
        help="Group-CAM maps of EfficientNet-Lite0 in every framework, compared with torch",
        description=(
            "Explain the sample photos with EfficientNet-Lite0 in every way asked (each in its "
            "own process), compare the maps with the reference way's and write "
            "DIR/comparison.md and one PNG figure per preset."
        ),
    )
    compare.add_argument(
        "--ways",
        type=_names(WAYS, "ways"),
        default=list(WAYS),
        help="comma-separated (default: every way; those whose framework is missing are "
        "reported as skipped): " + ",".join(WAYS),
    )
    compare.add_argument(
        "--out", default="groupcam-compare", help="output folder (default: %(default)s)"
    )
    compare.add_argument(
        "--variants",
        type=_names(sorted(VARIANTS), "presets"),
        default=["paper", "official-head"],
        help="comma-separated presets (default: paper,official-head)",
    )
    compare.add_argument(
        "--reference",
        default="torch",
        help="the way the others are compared with (default: torch, or the first way that ran)",
    )
    compare.add_argument("--groups", type=_positive_int, default=32)
    compare.add_argument("--batch-size", type=_positive_int, default=None)
    compare.add_argument(
        "--images", type=_positive_int, default=None, help="use the first N sample photos only"
    )
    compare.add_argument(
        "--image-size", type=_positive_int, default=224, help="photo side (default: %(default)s)"
    )
    compare.add_argument(
        "--figure-colors",
        type=int,
        default=256,
        help="colors of the PNG figures' palette, dithered (default: %(default)s; 0: full "
        "color, about three times larger)",
    )
    compare.add_argument(
        "--warmup",
        action="store_true",
        help="explain once before the timed call, so that the seconds leave out compilation",
    )

    add_explain_command(commands)
    return parser


# -- groupcam demo --------------------------------------------------------------------------


def _demo_way(args: argparse.Namespace) -> str:
    if args.framework == "keras":
        return f"keras-{args.backend or os.environ.get('KERAS_BACKEND', 'tensorflow')}"
    if args.backend is not None:
        raise _UsageError("--backend chooses the Keras backend: use it with --framework keras")
    return "torch" if args.framework == "torch" else "jax-linen"


class _UsageError(Exception):
    pass


def _run_demo(args: argparse.Namespace) -> int:
    from . import ways

    way = _demo_way(args)
    missing = ways.missing_modules(way)
    if missing:
        print(
            f"groupcam demo --framework {args.framework} needs {', '.join(missing)}, which "
            f"cannot be imported; install with: {ways.get_way(way).install_command(missing)}",
            file=sys.stderr,
        )
        return 2
    from .demo import run_demo

    print(f"Explaining 4 photos with EfficientNet-Lite0 in {way} (Group-CAM, {args.variant}) ...")
    try:
        result = run_demo(
            args.out, way, variant=args.variant, groups=args.groups, batch_size=args.batch_size
        )
    except ImportError as error:
        print(
            f"groupcam demo --framework {args.framework} failed to import a module: {error}; "
            f"install with: {ways.get_way(way).install_command()}",
            file=sys.stderr,
        )
        return 2
    rows = zip(result.predictions.items(), result.overlays, strict=True)
    for (photo, (label, probability)), path in rows:
        print(f"  {photo:<10} {label} ({probability:.1%})  -> {path}")
    print(f"  grid       -> {result.grid}")
    print(f"Wrote {len(result.overlays) + 1} PNG files to {result.grid.parent.resolve()}")
    return 0


# -- groupcam compare -----------------------------------------------------------------------


def _child_environment(way: str) -> dict[str, str]:
    """The environment of a worker: this process's, with groupcam importable and the backend."""
    from .ways import get_way

    roots = []
    for package in ("groupcam_core", "groupcam_torch", "groupcam_keras", "groupcam_jax"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            roots.append(str(Path(spec.origin).resolve().parent.parent))
    environment = dict(os.environ)
    inherited = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(inherited + roots))
    backend = get_way(way).keras_backend
    if backend is not None:
        environment["KERAS_BACKEND"] = backend
    return environment


def _run_worker(way: str, path: Path, args: argparse.Namespace) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "groupcam_core.ways",
        way,
        "--out",
        str(path),
        "--variants",
        ",".join(args.variants),
        "--groups",
        str(args.groups),
        "--image-size",
        str(args.image_size),
    ]
    if args.batch_size is not None:
        command += ["--batch-size", str(args.batch_size)]
    if args.images is not None:
        command += ["--images", str(args.images)]
    if args.warmup:
        command.append("--warmup")
    return subprocess.run(
        command, env=_child_environment(way), capture_output=True, text=True, check=False
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class _Outcome:
    """What the worker processes of ``groupcam compare`` gave."""

    metas: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # preset -> way -> WayRun
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _run_ways(args: argparse.Namespace, folder: Path) -> _Outcome:
    """Run each way in its own process; its results go to ``folder/<way>.npz``."""
    from . import ways

    outcome = _Outcome(runs={variant: {} for variant in args.variants})
    folder.mkdir(parents=True, exist_ok=True)
    for way in args.ways:
        install = ways.get_way(way).install_command
        missing = ways.missing_modules(way)
        if missing:
            outcome.skipped[way] = (
                f"{', '.join(missing)} not installed; install with {install(missing)}"
            )
            print(f"  {way:<17} skipped: {outcome.skipped[way]}")
            continue
        path = folder / f"{way}.npz"
        path.unlink(missing_ok=True)
        start = time.perf_counter()
        done = _run_worker(way, path, args)
        seconds = time.perf_counter() - start
        if done.returncode == ways.MISSING_EXIT:
            why = _last_line(done.stderr).removeprefix("missing: ")
            outcome.skipped[way] = f"{why}; install with {install()}"
            print(f"  {way:<17} skipped: {outcome.skipped[way]}")
        elif done.returncode != 0 or not path.exists():
            outcome.failed[way] = _last_line(done.stderr) or f"exit status {done.returncode}"
            print(f"  {way:<17} FAILED: {outcome.failed[way]}")
            print(done.stderr[-3000:], file=sys.stderr)
        else:
            meta, by_variant = ways.read_runs(path)
            outcome.metas[way] = meta
            for variant, run in by_variant.items():
                outcome.runs[variant][way] = run
            print(f"  {way:<17} done in {seconds:.0f} s")
    return outcome


def _run_compare(args: argparse.Namespace) -> int:
    from .compare import Comparison

    out = Path(args.out)
    print(
        f"Explaining {args.images or 4} photo(s) with EfficientNet-Lite0 in {len(args.ways)} "
        f"way(s), each in its own process ({', '.join(args.variants)}; {args.groups} groups) ..."
    )
    outcome = _run_ways(args, out / "runs")
    if not outcome.metas:
        print("groupcam compare: no way could run; see the lines above", file=sys.stderr)
        return 2
    reference = args.reference if args.reference in outcome.metas else next(iter(outcome.metas))
    comparisons = {
        variant: Comparison.from_runs(found, reference) for variant, found in outcome.runs.items()
    }
    figures = _figures(comparisons, out, args)
    report = _report(comparisons, figures, outcome, args)
    (out / "comparison.md").write_text(report, encoding="utf-8")
    for variant, comparison in comparisons.items():
        print(f"\n{variant}:\n{comparison.to_markdown()}")
    print(f"Wrote {out / 'comparison.md'}" + "".join(f" and {path}" for path in figures.values()))
    return 1 if outcome.failed else 0


def _figures(comparisons: dict[str, Any], out: Path, args: argparse.Namespace) -> dict[str, Path]:
    if importlib.util.find_spec("matplotlib") is None:
        print("  (no figure: matplotlib is not installed; pip install matplotlib)")
        return {}
    from .samples import imagenet_class_names
    from .ways import sample_batch

    photos, _ = sample_batch(size=args.image_size, count=args.images)
    names = imagenet_class_names()
    figures = {}
    for variant, comparison in comparisons.items():
        reference = comparison.runs[comparison.reference].explanation
        titles = [
            f"{photo}: {names[int(target)]}"
            for photo, target in zip(photos, reference.targets, strict=True)
        ]
        path = out / f"comparison-{variant}.png"
        comparison.save_figure(
            path, photos=list(photos.values()), titles=titles, colors=args.figure_colors or None
        )
        figures[variant] = path
    return figures


def _command(args: argparse.Namespace) -> str:
    words = ["groupcam compare", f"--ways {','.join(args.ways)}"]
    words += [f"--variants {','.join(args.variants)}", f"--groups {args.groups}"]
    for option in ("batch_size", "images"):
        if getattr(args, option) is not None:
            words.append(f"--{option.replace('_', '-')} {getattr(args, option)}")
    if args.image_size != 224:
        words.append(f"--image-size {args.image_size}")
    if args.warmup:
        words.append("--warmup")
    return " ".join(words)


def _report(
    comparisons: dict[str, Any],
    figures: dict[str, Path],
    outcome: _Outcome,
    args: argparse.Namespace,
) -> str:
    versions: dict[str, str] = {}
    for meta in outcome.metas.values():
        versions.update(meta["versions"])
    first = next(iter(comparisons.values()))
    count = len(next(iter(first.runs.values())).explanation)
    timing = "after a warm-up call" if args.warmup else "including the first call's compilation"
    lines = [
        "# Group-CAM maps of EfficientNet-Lite0, compared across frameworks",
        "",
        f"Written by `{_command(args)}` (groupcam {__version__}): {count} sample photo(s) at "
        f"{args.image_size} x {args.image_size}, {args.groups} groups, the head's ReLU6 "
        "explained, each way in its own process and explaining the class it predicts. "
        f"Each way is compared with **{first.reference}**. Seconds per image {timing}.",
    ]
    if versions:
        lines.append(
            "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + "."
        )
    lines.append("")
    for variant, comparison in comparisons.items():
        lines += [f"## Preset `{variant}`", "", comparison.to_markdown()]
        if variant in figures:
            lines += [f"![{variant}]({figures[variant].name})", ""]
    if outcome.skipped or outcome.failed:
        lines += ["## Not run", ""]
        lines += [f"- {way}: skipped: {why}" for way, why in outcome.skipped.items()]
        lines += [f"- {way}: failed: {why}" for way, why in outcome.failed.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "compare":
            return _run_compare(args)
        if args.command == "explain":
            return run_explain(args)
    except _UsageError as error:
        print(f"groupcam: error: {error}", file=sys.stderr)
        return 2
    except GroupCAMError as error:
        print(f"groupcam: error: {error}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
