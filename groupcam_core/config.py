"""Every constant of Group-CAM as one immutable configuration, and its presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["VARIANTS", "GroupCAMConfig", "MergeSource", "make_config"]

MergeSource = Literal["masks", "upsampled"]


@dataclass(frozen=True)
class GroupCAMConfig:
    """The constants of the Group-CAM algorithm.

    The defaults are the "paper" preset: what Zhang, Rao and Yang (2021) describe
    and evaluate. ``make_config("official-head")`` gives what the public reference
    repository's latest code computes.

    Parameters
    ----------
    groups
        Number of channel groups G. Channels are split into G contiguous groups in
        channel order, as ``numpy.array_split`` does when K is not a multiple of G.
    percentile
        Denoising percentile in (0, 100): per image and group, values not strictly
        above this percentile of the feature-resolution map become 0. ``None``
        disables denoising.
    blur_kernel_size
        Side of the square Gaussian kernel used for the blurred baseline (odd).
    blur_sigma
        Standard deviation of that kernel, in pixels.
    skip_constant_masks
        If true, a group map whose maximum equals its minimum gets no forward pass
        and no weight. If false it is used as an all-zero mask.
    score_relu
        If true, a group's score is ``max(0, p - p_baseline)``; else ``p - p_baseline``.
    merge_source
        ``"masks"`` merges the min-max normalised masks; ``"upsampled"`` merges the
        upsampled maps before normalisation.
    final_relu
        Apply a ReLU to the merged map before its min-max normalisation.
    """

    groups: int = 32
    percentile: float | None = 70.0
    blur_kernel_size: int = 51
    blur_sigma: float = 50.0
    skip_constant_masks: bool = True
    score_relu: bool = False
    merge_source: MergeSource = "masks"
    final_relu: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.groups, bool) or not isinstance(self.groups, int):
            raise ConfigError(f"groups must be an int, got {self.groups!r}")
        if self.groups < 1:
            raise ConfigError(f"groups must be at least 1, got {self.groups}")
        if self.percentile is not None:
            if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)):
                raise ConfigError(f"percentile must be a number or None, got {self.percentile!r}")
            if not (0.0 <= float(self.percentile) < 100.0) or math.isnan(self.percentile):
                raise ConfigError(f"percentile must lie in [0, 100), got {self.percentile}")
        if (
            isinstance(self.blur_kernel_size, bool)
            or not isinstance(self.blur_kernel_size, int)
            or self.blur_kernel_size < 1
            or self.blur_kernel_size % 2 == 0
        ):
            raise ConfigError(
                f"blur_kernel_size must be a positive odd int, got {self.blur_kernel_size!r}"
            )
        if (
            isinstance(self.blur_sigma, bool)
            or not isinstance(self.blur_sigma, (int, float))
            or not math.isfinite(self.blur_sigma)
            or self.blur_sigma <= 0
        ):
            raise ConfigError(f"blur_sigma must be a positive number, got {self.blur_sigma!r}")
        if self.merge_source not in ("masks", "upsampled"):
            raise ConfigError(
                f"merge_source must be 'masks' or 'upsampled', got {self.merge_source!r}"
            )
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
