"""Explain one batch in several ways and measure how far the maps agree.

>>> from groupcam.compare import compare
>>> result = compare(  # doctest: +SKIP
...     {"torch": torch_cam, "keras-jax": keras_cam, "jax-nnx": nnx_cam},
...     images,  # (B, H, W, 3), converted to each explainer's layout
...     layout="channels_last",
... )
>>> print(result.to_markdown())  # doctest: +SKIP
>>> result.save_figure("comparison.png", photos=photos)  # doctest: +SKIP

The explainers can come from any adapter (``groupcam_torch``, ``groupcam_keras``,
``groupcam_jax``); this module imports no framework, and matplotlib only when a
figure is drawn. Each explainer is asked for its ``input_layout`` and gets the
images in that layout.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groupcam_core import Explanation
from groupcam_core.agreement import TOP_FRACTION, spearman, top_fraction_iou
from groupcam_core.errors import ConfigError, InputError
from groupcam_core.namespaces import to_host
from groupcam_core.protocol import Layout
from groupcam_core.targets import TargetSpec

__all__ = ["Agreement", "Comparison", "WayRun", "compare"]


@dataclass(frozen=True)
class WayRun:
    """One way's explanation of the batch, and what it cost.

    Attributes
    ----------
    name
        The name the way was given.
    explanation
        Its :class:`~groupcam_core.Explanation`.
    seconds
        Wall-clock seconds of the timed ``explain`` call for the whole batch
        (with JAX and Keras on JAX, the first call includes jit compilation,
        unless :func:`compare` ran a warm-up call first).
    layout
        The layout the explainer was given the images in.
    """

    name: str
    explanation: Explanation
    seconds: float
    layout: str

    @property
    def saliency(self) -> np.ndarray:
        """float32 ``(B, H, W)`` maps in [0, 1]."""
        return self.explanation.saliency

    @property
    def seconds_per_image(self) -> float:
        """:attr:`seconds` divided by the number of images."""
        return self.seconds / max(len(self.explanation), 1)

    @property
    def forward_passes(self) -> np.ndarray:
        """Passes through the model per image (see :attr:`Explanation.forward_passes`)."""
        return self.explanation.forward_passes


@dataclass(frozen=True)
class Agreement:
    """How far one way's maps agree with another's, image by image.

    Attributes
    ----------
    reference, way
        The two ways' names.
    max_abs_difference, mean_abs_difference
        float64 ``(B,)``: largest and mean absolute difference of the two maps.
    spearman
        float64 ``(B,)``: Spearman rank correlation over the pixels (see
        :func:`spearman`).
    top_iou
        float64 ``(B,)``: intersection over union of the two maps' top
        ``top_fraction`` of pixels (see :func:`top_fraction_iou`).
    same_target
        bool ``(B,)``: both explained the same class (with ``targets=None``, both
        predicted it).
    probability_difference
        float64 ``(B,)``: absolute difference of the target probabilities on the
        clean images (NaN for target functions).
    top_fraction
        The share of pixels of ``top_iou``.
    """

    reference: str
    way: str
    max_abs_difference: np.ndarray
    mean_abs_difference: np.ndarray
    spearman: np.ndarray
    top_iou: np.ndarray
    same_target: np.ndarray
    probability_difference: np.ndarray
    top_fraction: float = TOP_FRACTION

    @classmethod
    def between(
        cls, reference: WayRun, way: WayRun, top_fraction: float = TOP_FRACTION
    ) -> Agreement:
        """Measure the agreement of two runs on the same images."""
        a = np.asarray(reference.saliency, dtype=np.float64)
        b = np.asarray(way.saliency, dtype=np.float64)
        if a.shape != b.shape:
            raise InputError(
                f"the maps of {reference.name!r} {a.shape} and {way.name!r} {b.shape} "
                "do not have one shape; compare the ways on the same images"
            )
        difference = np.abs(a - b).reshape(a.shape[0], -1)
        pairs = list(zip(a, b, strict=True))
        return cls(
            reference=reference.name,
            way=way.name,
            max_abs_difference=difference.max(axis=1),
            mean_abs_difference=difference.mean(axis=1),
            spearman=np.array([spearman(x, y) for x, y in pairs]),
            top_iou=np.array([top_fraction_iou(x, y, top_fraction) for x, y in pairs]),
            same_target=np.asarray(reference.explanation.targets == way.explanation.targets),
            probability_difference=np.abs(
                reference.explanation.target_probabilities.astype(np.float64)
                - way.explanation.target_probabilities.astype(np.float64)
            ),
            top_fraction=top_fraction,
        )

    def summary(self) -> dict[str, float]:
        """The worst case over the images (the mean for ``mean_abs_difference``).

        Keys: ``max_abs_difference``, ``mean_abs_difference``, ``min_spearman``,
        ``min_top_iou``, ``same_targets`` (the share of images) and
        ``max_probability_difference``.
        """
        probability = self.probability_difference
        return {
            "max_abs_difference": float(self.max_abs_difference.max()),
            "mean_abs_difference": float(self.mean_abs_difference.mean()),
            "min_spearman": float(self.spearman.min()),
            "min_top_iou": float(self.top_iou.min()),
            "same_targets": float(self.same_target.mean()),
            "max_probability_difference": (
                float(np.nanmax(probability)) if np.isfinite(probability).any() else math.nan
            ),
        }


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _near_one(value: float) -> str:
    """A correlation or overlap: ``1``, ``1 - 2.1e-10`` when close to 1, else 4 decimals."""
    if value == 1.0:
        return "1"
    if 0.999 < value < 1.0:
        return f"1 - {_number(1.0 - value)}"
    return f"{value:.4f}"


@dataclass(frozen=True)
class Comparison:
    """The maps of several ways on one batch, their cost and their agreement.

    Attributes
    ----------
    runs
        Each way's :class:`WayRun`, by name, in the order given.
    reference
        The name of the way the others are compared with.
    agreements
        One :class:`Agreement` per other way, against ``reference``, in order.
    top_fraction
        The share of pixels of the top-pixel IoU.
    """

    runs: dict[str, WayRun]
    reference: str
    agreements: tuple[Agreement, ...] = field(default=())
    top_fraction: float = TOP_FRACTION

    @classmethod
    def from_runs(
        cls,
        runs: Mapping[str, WayRun] | Sequence[WayRun],
        reference: str | None = None,
        top_fraction: float = TOP_FRACTION,
    ) -> Comparison:
        """Compare runs made elsewhere (for example in other processes).

        Parameters
        ----------
        runs
            The runs, by name or in a sequence (named by their ``name``).
        reference
            The way the others are compared with; default: the first.
        top_fraction
            The share of pixels of the top-pixel IoU.
        """
        by_name = dict(runs) if isinstance(runs, Mapping) else {run.name: run for run in runs}
        if not by_name:
            raise ConfigError("nothing to compare: give at least one way")
        reference = _reference(reference, by_name)
        agreements = tuple(
            Agreement.between(by_name[reference], run, top_fraction)
            for name, run in by_name.items()
            if name != reference
        )
        return cls(by_name, reference, agreements, top_fraction)

    @property
    def names(self) -> list[str]:
        """The ways' names, in order."""
        return list(self.runs)

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Each way's ``(B, H, W)`` maps, by name."""
        return {name: run.saliency for name, run in self.runs.items()}

    def agreement(self, way: str, reference: str | None = None) -> Agreement:
        """The agreement of ``way`` with ``reference`` (default: the comparison's)."""
        reference = self.reference if reference is None else reference
        for name in (way, reference):
            if name not in self.runs:
                raise KeyError(f"no way named {name!r}; the ways are {', '.join(self.runs)}")
        for found in self.agreements:
            if (found.reference, found.way) == (reference, way):
                return found
        return Agreement.between(self.runs[reference], self.runs[way], self.top_fraction)

    def to_markdown(self) -> str:
        """A markdown table: one row per way, with its cost and its agreement.

        Columns: seconds per image, model passes per image, then against the
        reference: largest and mean absolute map difference, the lowest
        Spearman correlation and top-pixel IoU over the images (written
        ``1 - 2.1e-10`` when close to 1), how many images have the same target
        class, and the largest difference of the target probabilities.
        """
        percent = f"{self.top_fraction:.0%}"
        head = (
            "| way | layout | s / image | passes / image | max abs diff | mean abs diff "
            f"| min Spearman | min IoU top {percent} | same class | max prob. diff |"
        )
        lines = [head, "|" + "---|" * 10]
        by_way = {found.way: found for found in self.agreements}
        for name, run in self.runs.items():
            cost = (
                f"| {name}{' (reference)' if name == self.reference else ''} | {run.layout} "
                f"| {run.seconds_per_image:.3g} | {float(np.mean(run.forward_passes)):g} "
            )
            found = by_way.get(name)
            if found is None:
                lines.append(cost + "| | | | | | |")
                continue
            worst = found.summary()
            same = int(found.same_target.sum())
            lines.append(
                cost
                + f"| {_number(worst['max_abs_difference'])} "
                + f"| {_number(worst['mean_abs_difference'])} "
                + f"| {_near_one(worst['min_spearman'])} | {_near_one(worst['min_top_iou'])} "
                + f"| {same}/{found.same_target.size} "
                + f"| {_number(worst['max_probability_difference'])} |"
            )
        return "\n".join(lines) + "\n"

    def save_figure(
        self,
        path: str | Path,
        photos: Any = None,
        images: Sequence[int] | None = None,
        titles: Sequence[str] | None = None,
        dpi: int = 72,
        over_photos: bool = True,
        colors: int | None = None,
    ) -> Path:
        """Write the maps side by side, each with its difference from the reference.

        For each image, one row shows the photo (if given) and every way's map
        (over the photo, if given), and the row below shows ``|map - reference
        map|`` for every other way, on one color scale for the whole figure
        (its largest value is in the color bar).

        Parameters
        ----------
        path
            PNG file to write.
        photos
            ``(B, H, W, 3)`` photos to show the maps over (uint8, or floats in
            [0, 1]), or ``None`` for the maps alone.
        images
            Indices of the images to show (default: all).
        titles
            One title per shown image (default: ``"image <i>"``).
        dpi
            Resolution; each panel is 1.6 inches wide.
        over_photos
            Draw the maps over the photos (when given); ``False`` draws the
            maps alone beside the photo (a smaller PNG file).
        colors
            ``None`` for a full-color PNG; else the number of colors (2 to
            256) of a palette PNG, dithered (Pillow): about a third of the size,
            hardly different to the eye.
        """
        if colors is not None and not 2 <= colors <= 256:
            raise ConfigError(f"colors must be None or from 2 to 256, got {colors!r}")
        from matplotlib.figure import Figure

        from groupcam_core.visualization import as_rgb_float, overlay

        first = next(iter(self.runs.values()))
        chosen = list(range(len(first.explanation))) if images is None else list(images)
        if not chosen:
            raise ConfigError("images is empty: choose at least one image to show")
        if titles is not None and len(titles) != len(chosen):
            raise ConfigError(f"got {len(titles)} titles for {len(chosen)} images")
        shown = None if photos is None else to_host(photos)
        reference = self.maps[self.reference]
        differences = {
            name: np.abs(maps.astype(np.float64) - reference)
            for name, maps in self.maps.items()
            if name != self.reference
        }
        scale = max((float(d[chosen].max()) for d in differences.values()), default=0.0)
        offset = 0 if shown is None else 1
        columns = offset + len(self.runs)
        figure = Figure(figsize=(1.6 * columns + 0.6, 3.4 * len(chosen)), dpi=dpi)
        grid = figure.add_gridspec(2 * len(chosen), columns)
        difference_image = None
        for row, index in enumerate(chosen):
            title = titles[row] if titles is not None else f"image {index}"
            if shown is not None:
                axis = figure.add_subplot(grid[2 * row, 0])
                axis.imshow(as_rgb_float(shown[index]))
                axis.set_title(title, fontsize=8)
            for column, (name, maps) in enumerate(self.maps.items(), start=offset):
                axis = figure.add_subplot(grid[2 * row, column])
                if shown is None or not over_photos:
                    axis.imshow(maps[index], cmap="jet", vmin=0.0, vmax=1.0)
                else:
                    axis.imshow(overlay(shown[index], maps[index]))
                axis.set_title(
                    name if shown is not None or column else f"{title}\n{name}", fontsize=8
                )
                if name in differences:
                    below = figure.add_subplot(grid[2 * row + 1, column])
                    difference = differences[name][index]
                    difference_image = below.imshow(
                        difference, cmap="magma", vmin=0.0, vmax=scale or 1.0
                    )
                    below.set_title(f"|diff| max {_number(float(difference.max()))}", fontsize=7)
        for axis in figure.axes:
            axis.set_xticks([])
            axis.set_yticks([])
        figure.subplots_adjust(left=0.02, right=0.86, top=0.95, bottom=0.02, wspace=0.05)
        if difference_image is not None:
            bar = figure.add_axes((0.88, 0.1, 0.015, 0.8))
            figure.colorbar(difference_image, cax=bar, label=f"|map - {self.reference} map|")
        path = Path(path)
        if colors is None:
            figure.savefig(path)
        else:
            _save_with_palette(figure, path, colors)
        return path


def _save_with_palette(figure: Any, path: Path, colors: int) -> None:
    """Write a matplotlib figure as a dithered palette PNG of ``colors`` colors."""
    from groupcam_core.visualization import write_palette_png

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    write_palette_png(buffer, path, colors)


def _reference(reference: str | None, names: Mapping[str, Any]) -> str:
    if reference is None:
        return next(iter(names))
    if reference not in names:
        raise ConfigError(
            f"reference {reference!r} is not one of the ways: {', '.join(map(repr, names))}"
        )
    return reference


def _in_layout(images: np.ndarray, given: str, wanted: str) -> np.ndarray:
    if given == wanted:
        return images
    axes = (0, 3, 1, 2) if wanted == "channels_first" else (0, 2, 3, 1)
    return np.ascontiguousarray(images.transpose(axes))


def compare(
    explainers: Mapping[str, Any],
    images: Any,
    layout: Layout = "channels_last",
    targets: TargetSpec = None,
    reference: str | None = None,
    *,
    top_fraction: float = TOP_FRACTION,
    warmup: bool = False,
) -> Comparison:
    """Explain one batch with several explainers and measure how far their maps agree.

    Parameters
    ----------
    explainers
        Name -> explainer: any adapter's ``GroupCAM`` (anything with
        ``explain(x, targets)`` and ``input_layout``). The names label the table
        and figure.
    images
        One ``(B, C, H, W)`` or ``(B, H, W, C)`` batch, normalized as the models
        expect: a numpy array, or anything ``numpy.asarray`` takes (a torch
        tensor is moved to the host). Each explainer gets it, as numpy, in its
        own ``input_layout``.
    layout
        The layout ``images`` is given in.
    targets
        Passed to every explainer: ``None`` (each way explains the class it
        predicts), one int, or one int per image.
    reference
        The way the others are compared with; default: the first.
    top_fraction
        The share of pixels whose overlap the IoU measures (0.15: the top 15%).
    warmup
        Explain the batch once, untimed, before the timed call: the seconds then
        leave out jit compilation and other first-call costs.

    Returns
    -------
    Comparison
        Every way's maps, seconds per image and passes per image, and each
        way's agreement with the reference: ``to_markdown()`` and
        ``save_figure(path)`` show them.
    """
    if not isinstance(explainers, Mapping) or not explainers:
        raise ConfigError("explainers must be a non-empty mapping of names to explainers")
    for name, explainer in explainers.items():
        missing = [
            part
            for part in ("explain", "input_layout")  # asked of the class: a property may raise
            if not hasattr(type(explainer), part) and part not in getattr(explainer, "__dict__", {})
        ]
        if missing:
            raise ConfigError(
                f"explainers[{name!r}] is a {type(explainer).__name__}, not a groupcam explainer "
                f"(it has no {' or '.join(missing)}); wrap the model first, e.g. "
                "groupcam_torch.GroupCAM(model), groupcam_keras.GroupCAM(model) or "
                "groupcam_jax.GroupCAM.from_nnx(model)"
            )
    if layout not in ("channels_last", "channels_first"):
        raise ConfigError(f"layout must be 'channels_last' or 'channels_first', got {layout!r}")
    reference = _reference(reference, explainers)
    batch = to_host(images)
    if batch.ndim != 4:
        raise InputError(f"images must be one 4-D batch in {layout} layout, got {batch.shape}")
    runs: dict[str, WayRun] = {}
    for name, explainer in explainers.items():
        wanted = explainer.input_layout
        x = _in_layout(batch, layout, wanted)
        if warmup:
            explainer.explain(x, targets)
        start = time.perf_counter()
        explanation = explainer.explain(x, targets)
        runs[name] = WayRun(name, explanation, time.perf_counter() - start, wanted)
    return Comparison.from_runs(runs, reference, top_fraction)
