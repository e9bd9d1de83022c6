"""Images per second of ``groupcam explain``: local, and on Ray Data with 1 and 2 workers.

Each run is the command line in a fresh process on the same folder of JPEG
photos (scikit-image's, center-cropped views of them, no downloads), with the
built-in EfficientNet-Lite0 in torch at 224 x 224, the paper preset, G = 32:

* ``local``: one process, torch's default threads (all cores);
* ``local, 1 thread``: ``--threads 1``, what one Ray worker does;
* ``ray, N workers``: ``--ray --workers N`` on a local Ray runtime the command
  starts; each worker is one actor with 1 CPU and 1 torch thread.

Two rates per run: **end to end** (images over the whole command's wall time,
Python and Ray start-up, model loading and writing included) and **steady**
(images per second between the first and the last image a worker finished,
from the journal's time stamps: the rate a long job approaches). Also measured: how
fast the driver alone writes outcomes (maps, overlays, journal), the ceiling
of any number of workers behind one driver.

Usage: ``python benchmarks/bench_explain.py [--images 24] [--quick]`` or ``nox -s bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTOS = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "camera",
    "motorcycle_left",
    "hubble_deep_field",
    "immunohistochemistry",
)


def write_photos(folder: Path, count: int) -> None:
    """``count`` JPEG files: scikit-image photos and shifted crops of them."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in PHOTOS:
        loader = getattr(data, name, None)
        if loader is not None:
            image = np.asarray(loader())
            sources.append(
                np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
            )
    for index in range(count):
        image = sources[index % len(sources)]
        shift = (index // len(sources)) * 16
        crop = image[shift:, shift:]
        Image.fromarray(np.ascontiguousarray(crop)).save(
            folder / f"photo{index:03d}.jpg", quality=92
        )


def run(label: str, folder: Path, out: Path, extra: list[str]) -> dict[str, object]:
    command = [sys.executable, "-m", "groupcam", "explain", "efficientnet-lite0", str(folder),
               "--out", str(out), "--quiet", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = (out / "journal.jsonl").read_text().splitlines()[1:]
    stamps = sorted(json.loads(line)["done"] for line in lines if line.strip())
    images = len(stamps)
    steady = (images - 1) / (stamps[-1] - stamps[0]) if images > 1 else float("nan")
    return {"run": label, "images": images, "wall_s": wall, "end_to_end": images / wall,
            "steady": steady}  # fmt: skip


def driver_ceiling(out: Path, count: int = 200) -> float:
    """Outcomes per second the driver writes (224 x 224 map, a 512 x 512 overlay)."""
    from groupcam.jobs import ExplainJob, ModelSource, Outcome, OutputFolder
    from groupcam.jobs.images import png_bytes
    from groupcam.jobs.worker import map_bytes

    rng = np.random.default_rng(0)
    saliency = rng.random((224, 224), dtype=np.float32)
    overlay = png_bytes(rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8))
    folder = OutputFolder(out, ExplainJob(ModelSource.parse("efficientnet-lite0")))
    start = time.perf_counter()
    for index in range(count):
        row = {"path": f"/x/{index}.jpg", "name": f"image{index}", "status": "ok"}
        folder.record(Outcome(row, map_bytes(saliency), overlay))
    folder.close()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="8 images")
    parser.add_argument("--runs", type=int, default=1, help="accepted for nox -s bench; unused")
    args = parser.parse_args()
    count = 8 if args.quick else args.images
    import torch

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"Python {platform.python_version()}; {count} JPEG photos, EfficientNet-Lite0 "
          "(torch) at 224 x 224, paper preset, G = 32\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_photos(root / "photos", count)
        runs = [
            ("local", []),
            ("local, 1 thread", ["--threads", "1"]),
            ("ray, 1 worker", ["--ray", "--workers", "1"]),
            ("ray, 2 workers", ["--ray", "--workers", "2"]),
        ]
        results = [
            run(label, root / "photos", root / f"out{i}", extra)
            for i, (label, extra) in enumerate(runs)
        ]
        ceiling = driver_ceiling(root / "driver")
    print("| run | images | wall s | end to end img/s | steady img/s |")
    print("|---|---|---|---|---|")
    for result in results:
        print(f"| {result['run']} | {result['images']} | {result['wall_s']:.1f} | "
              f"{result['end_to_end']:.2f} | {result['steady']:.2f} |")  # fmt: skip
    print(f"\nDriver alone: {ceiling:.0f} outcomes written per second (map, overlay, journal).")


if __name__ == "__main__":
    main()
