"""The model-randomization sanity check (Adebayo et al., 2018)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..agreement import spearman
from ..errors import BackendError, ConfigError
from ..namespaces import to_host
from ..targets import TargetSpec
from .checks import check_map_rank, check_maps

__all__ = ["RandomizationCorrelations", "rank_correlations", "sanity_check"]


@dataclass(frozen=True)
class RandomizationCorrelations:
    """Rank correlations between original maps and maps of randomized models.

    Attributes
    ----------
    names
        One name per randomization step (for cascading randomization, the layer
        randomized last).
    correlations
        ``(steps, B)`` float64: Spearman rank correlation of each image's map
        with its original map, over the flattened pixels; 0 where either map is
        constant.
    """

    names: tuple[str, ...]
    correlations: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """``(steps,)`` correlation averaged over images."""
        return self.correlations.mean(axis=1)


def rank_correlations(
    original: Any, randomized: Iterable[tuple[str, Any]]
) -> RandomizationCorrelations:
    """Spearman rank correlation of each image's map with the maps of randomized models.

    Parameters
    ----------
    original
        ``(B, H, W)`` maps of the trained model.
    randomized
        ``(name, maps)`` pairs, one per randomization step, each ``maps`` of the
        same shape as ``original``.

    Returns
    -------
    RandomizationCorrelations
        The names and a ``(steps, B)`` array of correlations over the flattened
        pixels; a constant map (no ranking) correlates 0 with anything.

    Notes
    -----
    Ties share their average rank (:func:`groupcam_core.agreement.spearman`, as
    ``scipy.stats.spearmanr``). Adebayo et al. (2018) expect the
    correlation to fall as more layers are randomized; maps that stay similar
    do not depend on what the model learnt.
    """
    reference = to_host(original)
    check_map_rank(reference, "original")
    reference = check_maps(reference, reference.shape, "original")
    flat_reference = reference.reshape(reference.shape[0], -1)
    constant_reference = np.ptp(flat_reference, axis=1) == 0
    names: list[str] = []
    rows: list[np.ndarray] = []
    for name, maps in randomized:
        other = check_maps(maps, reference.shape, f"randomized ({name})")
        flat = other.reshape(other.shape[0], -1)
        row = np.zeros(reference.shape[0], dtype=np.float64)
        for b in range(reference.shape[0]):
            if constant_reference[b] or np.ptp(flat[b]) == 0:
                continue
            row[b] = spearman(flat_reference[b], flat[b])
        names.append(str(name))
        rows.append(row)
    correlations = np.stack(rows) if rows else np.zeros((0, reference.shape[0]), dtype=np.float64)
    return RandomizationCorrelations(names=tuple(names), correlations=correlations)


def _maps_and_targets(explainer: Any, x: Any, targets: TargetSpec) -> tuple[np.ndarray, Any]:
    if hasattr(explainer, "explain"):
        result = explainer.explain(x, targets)
        return to_host(result.saliency), result.targets
    if callable(explainer):
        return to_host(explainer(x, targets)), targets
    raise BackendError(
        "make_explainer must return a groupcam explainer or a callable (x, targets) -> maps, "
        f"got {type(explainer).__name__}"
    )


def sanity_check(
    make_explainer: Callable[[Any], Any],
    model: Any,
    randomized_models: Iterable[tuple[str, Any]],
    x: Any,
    targets: TargetSpec = None,
) -> RandomizationCorrelations:
    """Model-randomization sanity check (Adebayo et al. 2018) for any saliency method.

    Explains ``x`` with the trained model, then with each randomized model, and
    compares the maps by rank correlation (:func:`rank_correlations`). The
    randomized models explain the same classes as the trained one: the given
    ``targets``, or the classes the trained model's explanation chose. A plain
    callable cannot say which classes it explained, so it needs ``targets``
    (otherwise each randomized model would explain its own top class, and the
    check would compare explanations of different classes).

    Parameters
    ----------
    make_explainer
        ``model -> explainer``, for example
        ``lambda m: groupcam_torch.GroupCAM(m, target_layer="layer4")``. The
        explainer is a groupcam explainer (its ``explain`` is used) or any
        callable ``(x, targets) -> (B, H, W) maps``.
    model
        The trained model.
    randomized_models
        ``(name, model)`` pairs, consumed one at a time; for example
        ``groupcam_torch.randomization.cascading_randomization(model)``.
    x
        The batch to explain.
    targets
        ``None``, one int, or one int per image.

    Returns
    -------
    RandomizationCorrelations
    """
    explainer = make_explainer(model)
    if targets is None and not hasattr(explainer, "explain") and callable(explainer):
        raise ConfigError(
            "sanity_check with a plain callable explainer needs targets=: it cannot tell which "
            "classes the trained model's maps explain, and the randomized models must explain "
            "the same ones (pass, for example, the trained model's predicted classes)"
        )
    original, chosen = _maps_and_targets(explainer, x, targets)

    def explained() -> Iterator[tuple[str, np.ndarray]]:
        for name, randomized in randomized_models:
            yield name, _maps_and_targets(make_explainer(randomized), x, chosen)[0]

    return rank_correlations(original, explained())
