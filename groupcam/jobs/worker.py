"""One worker of a job: the model loaded once, then one input at a time explained and drawn.

Inputs are pictures (decoded, resized and normalized for the model) or arrays
already preprocessed (``.npy`` of any rank, NIfTI volumes; :mod:`.arrays`).

The local runner runs one worker in its own process; the Ray runner runs one in
each actor of its pool. Every image is explained alone (a batch of one), with
the same settings, so its map does not depend on which worker explained it or
on which other images it came with.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from groupcam_core import metrics
from groupcam_core.errors import ConfigError, ModelOutputError, TargetError, TargetLayerError
from groupcam_core.kit import ExplainerBase
from groupcam_core.model_outputs import check_outputs

from ..errors import SettingsError
from ..samples import imagenet_class_names
from .arrays import array_overlay_png, is_array_input, load_array_input
from .images import (
    check_image_bounds,
    decode_image,
    fit_to_size,
    normalize,
    overlay_on_original,
    png_bytes,
)
from .inputs import ImageInput
from .models import LoadedModel, import_callable, load_model
from .settings import ExplainJob

__all__ = ["RESULT_COLUMNS", "JobWorker", "Outcome", "map_bytes"]

#: The columns of ``results.csv``, in order (metric columns only when asked for).
RESULT_COLUMNS: tuple[str, ...] = (
    "path",
    "name",
    "status",
    "error",
    "target",
    "target_name",
    "probability",
    "degenerate",
    "insertion_auc",
    "deletion_auc",
    "seconds",
)

#: Input size when neither the job nor the model gives one.
DEFAULT_SIZE = (224, 224)


@dataclass
class Outcome:
    """What explaining one image produced.

    Attributes
    ----------
    row
        Its ``results.csv`` row, by column (see :data:`RESULT_COLUMNS`).
    map_npy
        The contents of ``maps/<name>.npy``: the float32 map at the model's
        input resolution, ``(h, w)`` for a picture, the input's spatial shape
        for an array; ``None`` for an error.
    overlay_png
        The contents of ``overlays/<name>.png``; ``None`` for an error.
    finished
        When the worker finished the image (``time.time()`` on its machine).
    weights
        The digest of the worker's model weights
        (:func:`groupcam.jobs.models.weights_digest`), so that the runner can
        tell a folder's maps of another model; ``None`` if not known.
    """

    row: dict[str, Any]
    map_npy: bytes | None = None
    overlay_png: bytes | None = field(default=None, repr=False)
    finished: float = field(default_factory=time.time)
    weights: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was explained."""
        return self.row["status"] == "ok"


def map_bytes(saliency: np.ndarray) -> bytes:
    """A map as the bytes of a ``.npy`` file (float32)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(saliency, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def error_row(image: ImageInput, message: str, seconds: float) -> dict[str, Any]:
    """The row of an image that could not be explained."""
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(path=image.path, name=image.name, status="error", error=message, seconds=seconds)
    return row


class JobWorker:
    """Loads a job's model once and explains images one by one.

    Parameters
    ----------
    job
        The job's settings.

    Raises
    ------
    groupcam.errors.ModelLoadError
        If the model (or a ``module:function`` preprocessing) cannot be loaded.
    """

    def __init__(self, job: ExplainJob) -> None:
        self.job = job
        self.loaded: LoadedModel = load_model(job)
        self.weights: str | None = self.loaded.weights_digest()
        self.size: tuple[int, int] = job.size or self.loaded.size or DEFAULT_SIZE
        how = job.preprocess
        if how == "auto":
            how = "inception" if job.model.kind == "builtin" else "imagenet"
        self.normalization = how
        self._custom = None
        if how not in ("imagenet", "inception", "none"):
            self._custom = import_callable(how, job.workdir, what="preprocess")
        self._explainer: ExplainerBase | None = None
        self.class_names: tuple[str, ...] | None = job.class_names

    # -- one image ------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, ...] | None]:
        """The model's input for one RGB uint8 image (a batch of one), and the crop box."""
        if self._custom is not None:
            prepared = self._custom(image)
            if hasattr(prepared, "detach"):
                prepared = prepared.detach().cpu()
            array = np.asarray(prepared, dtype=np.float32)
            if array.ndim == 3:
                array = array[None]
            if array.ndim != 4 or array.shape[0] != 1:
                raise ValueError(
                    f"{self.job.preprocess} returned shape {array.shape}; expected one image "
                    "(H, W, C) or (C, H, W) in the model's layout"
                )
            return np.ascontiguousarray(array), None
        fitted = fit_to_size(image, self.size)
        values = normalize(fitted.pixels, self.normalization)
        if self.loaded.layout == "channels_first":
            values = values.transpose(2, 0, 1)
        return np.ascontiguousarray(values[None]), fitted.box

    def _explainer_for(self, x: np.ndarray) -> ExplainerBase:
        """The explainer, made at the first image; the model's outputs are checked on it.

        A model whose outputs are no ``(1, classes)`` scores for one image
        cannot explain any image: :class:`SettingsError`.
        """
        if self._explainer is None:
            explainer = self.loaded.explainer(self.job, x)
            with explainer.using_backend(x) as backend:
                outputs = backend.to_numpy(backend.forward(backend.prepare_input(x)))
            try:
                check_outputs(outputs, 1)
            except ModelOutputError as error:
                raise SettingsError(str(error)) from error
            if self.class_names is None and np.shape(outputs)[1] == 1000:
                self.class_names = imagenet_class_names()
            self._explainer = explainer
        return self._explainer

    def explain(self, image: ImageInput, data: bytes | np.ndarray | None = None) -> Outcome:
        """Explain one image; a failure on it becomes an ``error`` row.

        Raises
        ------
        SettingsError
            If the explainer refuses the job's settings (``ConfigError``,
            ``TargetLayerError``, ``TargetError``) or the model's outputs are
            no class scores: no image could be explained.

        Parameters
        ----------
        image
            The image's path and name.
        data
            Its file's bytes, or the decoded ``(H, W, 3)`` uint8 image; ``None``
            to read ``image.path``.
        """
        start = time.perf_counter()
        try:
            outcome = self._explain(image, data, start)
        except SettingsError as error:
            raise SettingsError(f"{error} (at {image.path})") from error
        except (ConfigError, TargetLayerError, TargetError) as error:
            raise SettingsError(f"{error} (at {image.path})") from error
        except Exception as error:  # a broken image or a failure on it: its row says what
            message = f"{type(error).__name__}: {error}".strip().replace("\n", " ")
            outcome = Outcome(error_row(image, message, round(time.perf_counter() - start, 4)))
        outcome.weights = self.weights
        return outcome

    def _explain(self, image: ImageInput, data: Any, start: float) -> Outcome:
        pixels: np.ndarray | None = None
        box = None
        if is_array_input(image.path) and not isinstance(data, np.ndarray):
            # Already the model's input: neither resized nor normalized.
            x = load_array_input(
                data if data is not None else image.path, image.path, self.loaded.layout
            )
        else:
            if isinstance(data, np.ndarray):
                pixels = _as_rgb(data)
                check_image_bounds(pixels.shape[1], pixels.shape[0])
            else:
                pixels = decode_image(data if data is not None else image.path)
            x, box = self.prepare(pixels)
        explainer = self._explainer_for(x)
        result = explainer.explain(x, targets=self.job.target)
        saliency = np.asarray(result.saliency[0], dtype=np.float32)
        target = int(result.targets[0])
        row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, "")
        row.update(
            path=image.path,
            name=image.name,
            status="ok",
            target=target,
            target_name=(
                self.class_names[target]
                if self.class_names is not None and 0 <= target < len(self.class_names)
                else ""
            ),
            probability=float(result.target_probabilities[0]),
            degenerate=bool(result.degenerate[0]),
        )
        for metric in self.job.metrics:
            run = metrics.insertion if metric == "insertion" else metrics.deletion
            curves = run(explainer, x, result.saliency, result.targets)
            row[f"{metric}_auc"] = float(curves.auc[0])
        label = f"{row['target_name'] or f'class {target}'} ({row['probability']:.1%})"
        if row["degenerate"]:
            label += ", degenerate map"
        if pixels is None:
            overlay = array_overlay_png(x, saliency, self.loaded.layout, label)
        else:
            overlay = png_bytes(overlay_on_original(pixels, saliency, box, label=label))
        row["seconds"] = round(time.perf_counter() - start, 4)
        return Outcome(row, map_bytes(saliency), overlay)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        top = 1.0 if np.issubdtype(array.dtype, np.floating) and array.max() <= 1.0 else 255.0
        array = np.clip(np.round(array.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)
