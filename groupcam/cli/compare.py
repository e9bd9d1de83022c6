"""``groupcam compare``: EfficientNet-Lite0's maps in every framework, compared with torch's."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groupcam_core import VARIANTS, __version__

from ..compare import child
from ..zoo import explainers
from .arguments import UsageError, name_list, positive_int

__all__ = ["DESCRIPTION", "HELP", "NAME", "add_arguments", "run"]

NAME = "compare"
HELP = "Group-CAM maps of EfficientNet-Lite0 in every framework, compared with torch"
DESCRIPTION = (
    "Explain the sample photos with EfficientNet-Lite0 in every way asked (each in its "
    "own process), compare the maps with the reference way's and write "
    "DIR/comparison.md and one PNG figure per preset."
)


def add_arguments(compare: argparse.ArgumentParser) -> None:
    """The options of ``groupcam compare``."""
    compare.add_argument(
        "--ways",
        type=name_list(explainers.WAYS, "ways"),
        default=list(explainers.WAYS),
        help="comma-separated (default: every way; those whose framework is missing are "
        "reported as skipped): " + ",".join(explainers.WAYS),
    )
    compare.add_argument(
        "--out", default="groupcam-compare", help="output folder (default: %(default)s)"
    )
    compare.add_argument(
        "--variants",
        type=name_list(sorted(VARIANTS), "presets"),
        default=["paper", "official-head"],
        help="comma-separated presets (default: paper,official-head)",
    )
    compare.add_argument(
        "--reference",
        default=None,
        help="the way the others are compared with, one of --ways (default: torch if asked "
        "for, else the first way; the first way that ran if that one could not run)",
    )
    compare.add_argument("--groups", type=positive_int, default=32)
    compare.add_argument("--batch-size", type=positive_int, default=None)
    compare.add_argument(
        "--images", type=positive_int, default=None, help="use the first N sample photos only"
    )
    compare.add_argument(
        "--image-size", type=positive_int, default=224, help="photo side (default: %(default)s)"
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


def _child_environment(way: str) -> dict[str, str]:
    """The environment of a worker: this process's, with groupcam importable and the backend."""
    roots = []
    for package in (
        "groupcam",
        "groupcam_core",
        "groupcam_torch",
        "groupcam_keras",
        "groupcam_jax",
    ):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            roots.append(str(Path(spec.origin).resolve().parent.parent))
    environment = dict(os.environ)
    inherited = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(inherited + roots))
    backend = explainers.get_way(way).keras_backend
    if backend is not None:
        environment["KERAS_BACKEND"] = backend
    return environment


def _run_worker(way: str, path: Path, args: argparse.Namespace) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "groupcam.compare.child",
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
    outcome = _Outcome(runs={variant: {} for variant in args.variants})
    folder.mkdir(parents=True, exist_ok=True)
    for way in args.ways:
        install = explainers.get_way(way).install_command
        missing = explainers.missing_modules_of(way)
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
        if done.returncode == child.MISSING_EXIT:
            why = _last_line(done.stderr).removeprefix("missing: ")
            outcome.skipped[way] = f"{why}; install with {install()}"
            print(f"  {way:<17} skipped: {outcome.skipped[way]}")
        elif done.returncode != 0 or not path.exists():
            outcome.failed[way] = _last_line(done.stderr) or f"exit status {done.returncode}"
            print(f"  {way:<17} FAILED: {outcome.failed[way]}")
            print(done.stderr[-3000:], file=sys.stderr)
        else:
            meta, by_variant = child.read_runs(path)
            outcome.metas[way] = meta
            for variant, run in by_variant.items():
                outcome.runs[variant][way] = run
            print(f"  {way:<17} done in {seconds:.0f} s")
    return outcome


def run(args: argparse.Namespace) -> int:
    """Run ``groupcam compare``; return the exit status."""
    from ..compare import Comparison

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if args.reference is not None and args.reference not in args.ways:
        raise UsageError(
            f"--reference {args.reference} is not one of --ways ({', '.join(args.ways)}); "
            "name the way the others are compared with"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create it ({error.strerror})") from error
    print(
        f"Explaining {args.images or 4} photo(s) with EfficientNet-Lite0 in {len(args.ways)} "
        f"way(s), each in its own process ({', '.join(args.variants)}; {args.groups} groups) ..."
    )
    outcome = _run_ways(args, out / "runs")
    if not outcome.metas:
        print("groupcam compare: no way could run; see the lines above", file=sys.stderr)
        return 2
    wanted = args.reference or ("torch" if "torch" in args.ways else args.ways[0])
    reference = wanted if wanted in outcome.metas else next(iter(outcome.metas))
    if reference != wanted:
        print(f"  (comparing with {reference}: {wanted} could not run)")
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
    from ..samples import imagenet_class_names, sample_batch

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
