"""``groupcam explain``: a job over your model and image files, locally or on Ray."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from groupcam_core import VARIANTS

from ..frameworks import FRAMEWORKS
from ..jobs.inputs import find_images
from ..jobs.runner import JobReport, Stopped, explain_images
from ..jobs.settings import METRICS, ExplainJob, ModelSource, parse_size, resolve_target
from ..samples import imagenet_class_names
from .arguments import UsageError, positive_int

__all__ = ["DESCRIPTION", "HELP", "NAME", "PARSER_OPTIONS", "add_arguments", "make_job", "run"]

NAME = "explain"
HELP = "explain your own model on image files and folders (locally or on Ray)"
DESCRIPTION = """\
Explain every image in INPUT (files, folders searched recursively, globs; JPEG,
PNG, BMP, TIFF, WebP) with Group-CAM and write DIR/maps/<name>.npy (float32 maps
at the model's input resolution), DIR/overlays/<name>.png (the map over the
image, with its class and a color bar), DIR/results.csv, DIR/summary.json and
DIR/report.html (a page to browse the run). DIR/job.sqlite holds the job's
state: a rerun into the same DIR skips the images already done, and refuses
other settings or another model. One job at a time uses a DIR. Exit status: 0
when every image was explained, 1 when some failed (listed on stderr), 2 for
usage errors, 130 after Ctrl-C and 143 after SIGTERM (rerun to resume).
"""

_EPILOG = """\
MODEL is efficientnet-lite0 (built in, in --framework), a .keras file (loaded in
Keras' safe mode), a torch file (TorchScript, or torch.save(model) with
--trust-model: unpickling it runs code named in the file), or
package.module:callable (or path/file.py:callable) returning a torch module, a
keras.Model, a Flax NNX module or a linen (module, variables) pair.
Examples:
  groupcam explain efficientnet-lite0 photos/ --out explained
  groupcam explain model.keras 'data/**/*.jpg' --out maps --targets 281 --metrics insertion
  groupcam explain mypkg.models:build photos/ --out explained --ray --workers 4
"""

MAX_LISTED_FAILURES = 20


def _metrics(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [metric for metric in chosen if metric not in METRICS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown metric {', '.join(unknown)}; choose from {', '.join(METRICS)}"
        )
    return chosen


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


#: How the command's parser is made (its description and epilog keep their lines).
PARSER_OPTIONS: dict[str, Any] = {
    "epilog": _EPILOG,
    "formatter_class": argparse.RawDescriptionHelpFormatter,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments and options of ``groupcam explain``."""
    parser.add_argument("model", metavar="MODEL", help="the model (see below)")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders or globs")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (locked while the job runs; never searched for inputs)",
    )
    parser.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        help="the built-in model's framework (default torch); for other models, a check",
    )
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="target layer (default: the last spatial feature map, as the adapter finds it)",
    )
    parser.add_argument(
        "--targets",
        default="top1",
        metavar="top1|INT|CLASS-NAME",
        help="the class to explain in every image (default: each image's top class)",
    )
    parser.add_argument(
        "--class-names",
        metavar="FILE",
        help="a text file with one class name per line (default: ImageNet's for 1000 classes)",
    )
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default="paper",
        help="the preset of Group-CAM's constants, see docs/algorithm.md (default: %(default)s)",
    )
    parser.add_argument(
        "--groups",
        type=positive_int,
        default=32,
        help="channel groups G, at most the layer's channels (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="rows per masked forward pass (default: the adapter's for the device, 4 to 64)",
    )
    parser.add_argument(
        "--size", type=_size, metavar="H[,W]", help="model input size (default: the model's or 224)"
    )
    parser.add_argument(
        "--preprocess",
        default="auto",
        metavar="auto|imagenet|inception|none|MODULE:FUNCTION",
        help="pixels to model input; auto: the built-in model's own, else imagenet "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--metrics",
        type=_metrics,
        default=(),
        metavar="insertion,deletion",
        help="add each image's insertion and/or deletion AUC (default: none)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray Data: a local runtime, or join ADDRESS (use --ray=ADDRESS before "
        "MODEL; default: run in this process)",
    )
    parser.add_argument(
        "--workers", type=positive_int, help="with --ray: actors (default: as CPUs allow)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="threads per worker for torch and TensorFlow (default: the framework's; "
        "each Ray worker 1); equal threads give maps equal bit for bit",
    )
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="allow loading a pickled torch module (runs code named in the file; default: refused)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh: explain every image again (default: resume, skipping done images)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary (default: both)"
    )


def _class_names(path: str | None) -> tuple[str, ...] | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--class-names: cannot read {path}: {error}") from error
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise UsageError(f"--class-names: {path} holds no names")
    return names


def make_job(args: argparse.Namespace) -> ExplainJob:
    """The job an ``explain`` command line describes (raises :class:`UsageError`)."""
    names = _class_names(args.class_names)
    lookup = names if names is not None else None
    if lookup is None and not args.targets.strip().isdigit():
        lookup = imagenet_class_names()
    target, label = resolve_target(args.targets, lookup)
    if args.workers is not None and args.ray is None:
        raise UsageError("--workers needs --ray (a local run explains in this process)")
    return ExplainJob(
        model=ModelSource.parse(args.model),
        framework=args.framework,
        layer=args.layer,
        target=target,
        target_label=label,
        variant=args.variant,
        groups=args.groups,
        batch_size=args.batch_size,
        size=args.size,
        preprocess=args.preprocess,
        metrics=tuple(args.metrics),
        trust_model=args.trust_model,
        class_names=names,
        threads=args.threads,
        keras_backend=os.environ.get("KERAS_BACKEND"),
    )


def _progress_bar(quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    def make(total: int) -> Any:
        return tqdm(
            total=total,
            unit="img",
            desc="explain",
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    return make


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _shown(path: str) -> str:
    """``path`` relative to the current folder when it lies below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _report(report: JobReport, quiet: bool) -> int:
    if report.failed:
        print(
            f"groupcam explain: {len(report.failed)} of {_count(report.images, 'image')} failed:",
            file=sys.stderr,
        )
        for path, message in report.failed[:MAX_LISTED_FAILURES]:
            print(f"  {_shown(path)}: {message}", file=sys.stderr)
        if len(report.failed) > MAX_LISTED_FAILURES:
            rest = len(report.failed) - MAX_LISTED_FAILURES
            print(f"  ... and {rest} more (see {report.out / 'results.csv'})", file=sys.stderr)
    if report.interrupted:
        by = "" if report.stopped_by in (None, "SIGINT") else f" by {report.stopped_by}"
        print(
            f"groupcam explain: interrupted{by}; run the same command again to resume",
            file=sys.stderr,
        )
    if not quiet:
        print(
            f"{report.done} of {_count(report.images, 'image')} explained ({report.explained} "
            f"in this run, {report.skipped} before) in {report.wall_seconds:.1f} s -> "
            f"{report.out}"
        )
    if report.interrupted:
        signal_number = getattr(signal, report.stopped_by or "SIGINT", signal.SIGINT)
        return 128 + int(signal_number)  # 130 for Ctrl-C, 143 for SIGTERM, as shells report
    return 1 if report.failed else 0


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Make SIGTERM (and SIGHUP) end the run as Ctrl-C does: tables written, resumable."""
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(number: int, frame: Any) -> None:
        raise Stopped(signal.Signals(number).name)

    previous = {name: signal.signal(getattr(signal, name), stop) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def run(args: argparse.Namespace) -> int:
    """Run ``groupcam explain``; return the exit status.

    0 when every image was explained, 1 when some failed, 2 for usage errors,
    130 when stopped by Ctrl-C and 143 by SIGTERM (the folder is then resumable).

    A :class:`~groupcam.errors.UsageError` (exit status 2) is reported by
    :func:`groupcam.cli.main`.
    """
    job = make_job(args)
    images = find_images(args.inputs, exclude=args.out)
    progress = _progress_bar(args.quiet)

    def on_start(pending: int, skipped: int) -> None:
        if not args.quiet:
            where = f"on Ray ({args.ray})" if args.ray else "locally"
            print(
                f"Explaining {_count(pending, 'image')} {where}"
                + (f" ({skipped} done before)" if skipped else "")
                + f" -> {args.out}",
                flush=True,
            )

    with _stopped_by_signals():
        report = _run_job(args, job, images, progress, on_start)
    return _report(report, args.quiet)


def _run_job(
    args: argparse.Namespace, job: ExplainJob, images: list[Any], progress: Any, on_start: Any
) -> JobReport:
    if args.ray is not None:
        from ..jobs.models import check_model_source
        from ..jobs.ray_runner import explain_images_on_ray

        check_model_source(job)
        return explain_images_on_ray(
            job,
            images,
            args.out,
            address=args.ray,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=progress,
            on_start=on_start,
        )
    return explain_images(
        job, images, args.out, overwrite=args.overwrite, progress=progress, on_start=on_start
    )
