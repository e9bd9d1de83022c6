"""One way in, in this process: the child that ``groupcam compare`` starts per way.

``python -m groupcam.compare.child WAY --out FILE`` explains the sample photos
with EfficientNet-Lite0 in one way (:mod:`groupcam.zoo.explainers`) and writes
the results to a ``.npz`` file, which :func:`read_runs` reads back. Keras picks
its backend once per process, so each Keras way needs a process of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from groupcam_core import Explanation, make_config
from groupcam_core.result import PER_IMAGE_ARRAYS

from ..frameworks import versions
from ..native_logs import quiet_framework_start
from ..samples import sample_batch
from ..zoo.explainers import WAYS, get_way, make_explainer, use_keras_backend
from .comparison import WayRun

__all__ = ["MISSING_EXIT", "read_runs", "run_way"]

#: Exit status of the worker when a module it needs cannot be imported.
MISSING_EXIT = 3


def run_way(
    name: str,
    out: str | Path,
    variants: Sequence[str] = ("paper", "official-head"),
    groups: int = 32,
    batch_size: int | None = None,
    size: int = 224,
    count: int | None = None,
    warmup: bool = False,
) -> Path:
    """Explain the sample photos in way ``name`` with each preset; write a ``.npz`` file.

    The file holds, per preset ``v``, ``v/<field>`` for the explanation's
    arrays and ``v/seconds``, and a JSON ``meta`` entry (way, layout, layer,
    configurations, framework versions). :func:`read_runs` reads it back.
    """
    way = get_way(name)
    if way.keras_backend is not None:
        use_keras_backend(way.keras_backend)
    with quiet_framework_start():
        for module in way.modules:  # a missing framework fails here, before any work
            importlib.import_module(module)
    _, batch = sample_batch(way.layout, size=size, count=count)
    arrays: dict[str, Any] = {}
    configs = {}
    layer = None
    for variant in variants:
        explainer = make_explainer(name, variant, groups, batch_size, image_size=size)
        if warmup:
            explainer.explain(batch)
        start = time.perf_counter()
        explanation = explainer.explain(batch)
        arrays[f"{variant}/seconds"] = np.float64(time.perf_counter() - start)
        for field in PER_IMAGE_ARRAYS:
            arrays[f"{variant}/{field}"] = getattr(explanation, field)
        configs[variant] = dataclasses.asdict(explanation.config)
        layer = explanation.layer
    meta = {
        "way": name,
        "layout": way.layout,
        "layer": layer,
        "configs": configs,
        "versions": versions(("torch", "keras", "tensorflow", "jax", "flax")),
        "keras_backend": way.keras_backend,
    }
    path = Path(out)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def read_runs(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file of :func:`run_way`.

    Returns
    -------
    meta, runs
        The JSON metadata, and per preset a :class:`~groupcam.compare.WayRun`.
    """
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        runs = {}
        for variant, config in meta["configs"].items():
            explanation = Explanation(
                **{field: data[f"{variant}/{field}"] for field in PER_IMAGE_ARRAYS},
                config=make_config(**config),
                layer=meta["layer"],
            )
            seconds = float(data[f"{variant}/seconds"])
            runs[variant] = WayRun(meta["way"], explanation, seconds, meta["layout"])
    return meta, runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run one way (the child's command line); return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m groupcam.compare.child",
        description="Explain the sample photos with EfficientNet-Lite0 in one way; write .npz.",
    )
    parser.add_argument("way", choices=WAYS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", default="paper,official-head")
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--warmup", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_way(
            args.way,
            args.out,
            variants=[v for v in args.variants.split(",") if v],
            groups=args.groups,
            batch_size=args.batch_size,
            size=args.image_size,
            count=args.images,
            warmup=args.warmup,
        )
    except ImportError as error:
        print(f"missing: {error}", file=sys.stderr)
        return MISSING_EXIT
    return 0


if __name__ == "__main__":  # pragma: no cover - run in a subprocess by the tests and the CLI
    sys.exit(main())
