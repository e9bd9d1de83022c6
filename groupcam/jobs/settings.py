"""The description of one ``groupcam explain`` job, shared by the local and the Ray runner."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from groupcam_core import VARIANTS

from ..errors import UsageError
from ..frameworks import FRAMEWORKS
from ..zoo import BUILTIN_MODELS

__all__ = [
    "METRICS",
    "PREPROCESSING",
    "ExplainJob",
    "ModelSource",
    "parse_size",
    "resolve_target",
]

#: Named preprocessing: how pixel values in [0, 255] become the model's input.
PREPROCESSING: tuple[str, ...] = ("auto", "imagenet", "inception", "none")
#: Faithfulness metrics a job can add to each row.
METRICS: tuple[str, ...] = ("insertion", "deletion")

_CALLABLE = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")


@dataclass(frozen=True)
class ModelSource:
    """Where a job's model comes from.

    Attributes
    ----------
    kind
        ``"builtin"`` (a name from :data:`BUILTIN_MODELS`), ``"keras-file"``
        (``.keras``, or legacy ``.h5``), ``"torch-file"`` (anything else that
        is a file: ``torch.save(model)`` or TorchScript) or ``"callable"``
        (``package.module:callable`` or ``path/to/file.py:callable``).
    location
        The built-in name, the file's absolute path, or ``module:callable``
        (a ``.py`` file's path made absolute).
    """

    kind: str
    location: str

    @classmethod
    def parse(cls, text: str, workdir: str | None = None) -> ModelSource:
        """Read the ``MODEL`` argument; raise :class:`UsageError` if it names nothing.

        Parameters
        ----------
        text
            A built-in model's name, a model file, or ``module:callable``.
        workdir
            The folder relative paths are resolved against (the current one by
            default).
        """
        base = Path(workdir or os.getcwd())
        if text.lower() in BUILTIN_MODELS:
            return cls("builtin", text.lower())
        path = base / text
        if path.is_file():
            kind = "keras-file" if path.suffix.lower() in (".keras", ".h5") else "torch-file"
            return cls(kind, str(path.resolve()))
        match = _CALLABLE.match(text)
        if match:
            module = match["module"]
            if module.endswith(".py"):
                script = base / module
                if not script.is_file():
                    raise UsageError(f"model: no such Python file {module!r}")
                module = str(script.resolve())
            return cls("callable", f"{module}:{match['name']}")
        if path.exists():
            raise UsageError(
                f"model: {text!r} is a folder; give a .keras file, a torch file, "
                "package.module:callable, or one of " + ", ".join(BUILTIN_MODELS)
            )
        close = difflib.get_close_matches(text.lower(), BUILTIN_MODELS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"model: {text!r} is no file, no package.module:callable and no built-in model "
            f"({', '.join(BUILTIN_MODELS)}){hint}"
        )


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> ``(224, 224)``, ``"224,320"`` -> ``(224, 320)`` (height, width)."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise UsageError(f"--size must be H or H,W in pixels, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 8:
        raise UsageError(f"--size must be H or H,W, each at least 8 pixels, got {text!r}")
    return (values[0], values[-1])


def resolve_target(text: str, class_names: tuple[str, ...] | None) -> tuple[int | None, str]:
    """Read ``--targets``: ``top1``, a class index, or a class name.

    Parameters
    ----------
    text
        What the user wrote.
    class_names
        The names to look a class name up in.

    Returns
    -------
    index, label
        ``(None, "top1")`` for each image's top class, else the class index
        and how the user named it.
    """
    spelled = text.strip()
    if spelled.lower() in ("top1", "top-1", "top"):
        return None, "top1"
    if re.fullmatch(r"\d+", spelled):
        index = int(spelled)
        if class_names is not None and index >= len(class_names):
            raise UsageError(f"--targets {index} is out of range for {len(class_names)} classes")
        return index, spelled
    if class_names is None:
        raise UsageError(f"--targets {text!r}: no class names to look it up in")
    wanted = spelled.casefold()
    for index, name in enumerate(class_names):
        if name.casefold() == wanted:
            return index, name
    close = difflib.get_close_matches(spelled, class_names, n=5, cutoff=0.6)
    hint = f"; close: {', '.join(repr(c) for c in close)}" if close else ""
    raise UsageError(f"--targets {text!r} is not a class name{hint}")


@dataclass(frozen=True)
class ExplainJob:
    """Everything that decides a job's maps: one value, pickled to every worker.

    The local runner and the Ray runner (:mod:`groupcam.jobs.ray_runner`)
    build their workers from the same job, so each image goes through the same
    decoding, preprocessing and explanation in both.

    Attributes
    ----------
    model
        Where the model comes from (:class:`ModelSource`).
    framework
        ``"torch"``, ``"keras"`` or ``"jax"``: the built-in model's framework, or
        the one a loaded model must belong to; ``None`` to detect it (torch
        for the built-in model).
    layer
        The target layer's name, or ``None`` for the adapter's default.
    target
        A class index to explain in every image, or ``None`` for each image's
        top class.
    target_label
        How the user named the target (for the summary).
    variant, groups, batch_size
        As for the adapters' ``GroupCAM``.
    size
        ``(height, width)`` of the model's input; ``None`` for the model's own
        (a Keras model's declared input) or 224 x 224.
    preprocess
        ``"auto"`` (the built-in model's own normalization, else ``"imagenet"``),
        ``"imagenet"``, ``"inception"``, ``"none"`` or ``"module:function"``.
    metrics
        Any of :data:`METRICS`.
    trust_model
        Allow loading a pickled torch module, which runs code from the file.
    class_names
        Class names read from a file, or ``None`` (ImageNet's for 1000 classes).
    threads
        Threads for the framework's own kernels in each worker (torch and
        TensorFlow); ``None`` leaves the framework's default. Maps are equal bit
        for bit between runners that use the same number of threads.
    keras_backend
        ``KERAS_BACKEND`` for workers started elsewhere (Ray actors).
    workdir
        The folder ``module:callable`` models and preprocessing functions are
        imported from, besides the installed packages.
    """

    model: ModelSource
    framework: str | None = None
    layer: str | None = None
    target: int | None = None
    target_label: str = "top1"
    variant: str = "paper"
    groups: int = 32
    batch_size: int | None = None
    size: tuple[int, int] | None = None
    preprocess: str = "auto"
    metrics: tuple[str, ...] = ()
    trust_model: bool = False
    class_names: tuple[str, ...] | None = field(default=None, repr=False)
    threads: int | None = None
    keras_backend: str | None = None
    workdir: str = field(default_factory=os.getcwd)

    def __post_init__(self) -> None:
        if self.framework is not None and self.framework not in FRAMEWORKS:
            raise UsageError(
                f"--framework must be one of {', '.join(FRAMEWORKS)}, got {self.framework!r}"
            )
        if self.variant not in VARIANTS:
            raise UsageError(f"--variant must be one of {', '.join(sorted(VARIANTS))}")
        if self.groups < 1:
            raise UsageError(f"--groups must be a positive integer, got {self.groups}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be a positive integer, got {self.threads}")
        unknown = [metric for metric in self.metrics if metric not in METRICS]
        if unknown:
            raise UsageError(
                f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}"
            )
        if self.preprocess not in PREPROCESSING and not _CALLABLE.match(self.preprocess):
            raise UsageError(
                f"--preprocess must be one of {', '.join(PREPROCESSING[1:])} or "
                f"module:function, got {self.preprocess!r}"
            )
        if self.model.kind == "builtin" and self.framework is None:
            object.__setattr__(self, "framework", "torch")

    def with_changes(self, **changes: Any) -> ExplainJob:
        """A copy with some settings changed."""
        return replace(self, **changes)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide what a finished image holds.

        A rerun into a folder written with other such settings would mix maps
        of two jobs, so it is refused unless ``--overwrite`` is given. Chunk
        sizes, threads and runners are left out: they change how the work is
        done, not what it means.
        """
        return {
            "model": f"{self.model.kind}:{self.model.location}",
            "framework": self.framework,
            "layer": self.layer,
            "target": self.target,
            "variant": self.variant,
            "groups": self.groups,
            "size": list(self.size) if self.size else None,
            "preprocess": self.preprocess,
            "metrics": sorted(self.metrics),
        }

    def describe(self) -> dict[str, Any]:
        """Every setting as JSON-ready values (for ``summary.json``)."""
        described = asdict(self)
        described["model"] = {"kind": self.model.kind, "location": self.model.location}
        described["size"] = list(self.size) if self.size else None
        described["metrics"] = list(self.metrics)
        described["class_names"] = None if self.class_names is None else len(self.class_names)
        return described
