"""Every constant of Group-CAM as one immutable configuration, and its presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .arguments import positive_int, real_number
from .errors import ConfigError

__all__ = ["VARIANTS", "GroupCAMConfig", "Grouping", "LayerFusion", "MergeSource", "make_config"]

MergeSource = Literal["masks", "upsampled"]
Grouping = Literal["contiguous", "kmeans"]
LayerFusion = Literal["mean", "max"]


def _odd(value: Any, name: str) -> int:
    size = positive_int(value, name, "odd")
    if size % 2 == 0:
        raise ConfigError(f"{name} must be a positive odd int, got {size}")
    return size


def _positive(value: Any, name: str) -> float:
    return real_number(value, name, above=0.0)


def _per_axis(value: Any, name: str, check: Callable[[Any, str], Any]) -> Any:
    """One checked value for every spatial axis, or a tuple of 1 to 3 (one per axis)."""
    if not isinstance(value, (tuple, list)):
        return check(value, name)
    if not 1 <= len(value) <= 3:
        raise ConfigError(f"{name} needs 1 to 3 values, one per spatial axis, got {value!r}")
    return tuple(check(item, f"each value of {name}") for item in value)


@dataclass(frozen=True)
class GroupCAMConfig:
    """The constants of the Group-CAM algorithm.

    The defaults are the "paper" preset: what Zhang, Rao and Yang (2021) describe
    and evaluate. ``make_config("official-head")`` gives what the public reference
    repository's latest code computes.

    Parameters
    ----------
    groups
        Number of channel groups G.
    grouping
        ``"contiguous"`` (the paper): channels are split into G contiguous
        groups in channel order, as ``numpy.array_split`` does when K is not a
        multiple of G. ``"kmeans"``: per image, channels are clustered into G
        groups by k-means on their spatial patterns (as the reference code's
        ``cluster_method="k_means"``), seeded and deterministic.
    percentile
        Denoising percentile in (0, 100): per image and group, values not strictly
        above this percentile of the feature-resolution map become 0. ``None``
        disables denoising.
    blur_kernel_size
        Side of the Gaussian kernel used for the blurred baseline (odd): one int
        for every spatial axis, or a tuple with one per axis (``(1, 51, 51)``
        leaves the first axis of a volume or video unblurred: a kernel of 1 is
        no blur).
    blur_sigma
        Standard deviation of that kernel, in pixels (or voxels, or samples):
        one float, or a tuple with one per axis.
    skip_constant_masks
        If true, a group map whose maximum equals its minimum gets no forward pass
        and no weight. If false it is used as an all-zero mask.
    score_relu
        If true, a group's score is ``max(0, p - p_baseline)``; else ``p - p_baseline``.
    merge_source
        ``"masks"`` merges the min-max normalized masks; ``"upsampled"`` merges the
        upsampled maps before normalization.
    final_relu
        Apply a ReLU to the merged map before its min-max normalization.
    layer_fusion
        With several target layers: how their maps (each min-max normalized)
        become one: ``"mean"`` or ``"max"`` per pixel, then min-max normalized.
    """

    groups: int = 32
    percentile: float | None = 70.0
    blur_kernel_size: int | tuple[int, ...] = 51
    blur_sigma: float | tuple[float, ...] = 50.0
    skip_constant_masks: bool = True
    score_relu: bool = False
    merge_source: MergeSource = "masks"
    final_relu: bool = True
    grouping: Grouping = "contiguous"
    layer_fusion: LayerFusion = "mean"

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # the dataclass is frozen; store validated values
        set_field(self, "groups", positive_int(self.groups, "groups", "the number of groups"))
        if self.percentile is not None:
            percentile = real_number(self.percentile, "percentile", "or None", at_least=0.0)
            if percentile >= 100.0:
                raise ConfigError(f"percentile must lie in [0, 100), got {self.percentile}")
            set_field(self, "percentile", percentile)
        set_field(
            self, "blur_kernel_size", _per_axis(self.blur_kernel_size, "blur_kernel_size", _odd)
        )
        set_field(self, "blur_sigma", _per_axis(self.blur_sigma, "blur_sigma", _positive))
        for name, allowed in (
            ("merge_source", ("masks", "upsampled")),
            ("grouping", ("contiguous", "kmeans")),
            ("layer_fusion", ("mean", "max")),
        ):
            if getattr(self, name) not in allowed:
                choices = " or ".join(repr(value) for value in allowed)
                raise ConfigError(f"{name} must be {choices}, got {getattr(self, name)!r}")
        for flag in ("skip_constant_masks", "score_relu", "final_relu"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be a bool, got {getattr(self, flag)!r}")

    def replace(self, **changes: Any) -> GroupCAMConfig:
        """Return a copy with some fields changed (validated like the original)."""
        _check_field_names(changes)
        return dataclasses.replace(self, **changes)


VARIANTS: dict[str, GroupCAMConfig] = {
    "paper": GroupCAMConfig(),
    "official-head": GroupCAMConfig(
        percentile=None,
        skip_constant_masks=False,
        score_relu=True,
        merge_source="upsampled",
        final_relu=False,
    ),
}


def _check_field_names(changes: dict[str, Any]) -> None:
    known = {field.name for field in dataclasses.fields(GroupCAMConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(
            f"unknown Group-CAM setting(s) {unknown}; known settings are {sorted(known)}"
        )


def make_config(variant: str | GroupCAMConfig = "paper", **overrides: Any) -> GroupCAMConfig:
    """Build a configuration from a preset name (or a config) and field overrides.

    Parameters
    ----------
    variant
        ``"paper"`` (default), ``"official-head"``, or a :class:`GroupCAMConfig`.
    **overrides
        Fields of :class:`GroupCAMConfig` to change, e.g. ``groups=16`` or
        ``percentile=None``.

    Returns
    -------
    GroupCAMConfig
    """
    if isinstance(variant, GroupCAMConfig):
        base = variant
    elif isinstance(variant, str) and variant in VARIANTS:
        base = VARIANTS[variant]
    else:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return base.replace(**overrides) if overrides else base
