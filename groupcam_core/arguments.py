"""Checks of the numbers and choices a user passes: one message style for every setting."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["one_of", "positive_int", "real_number"]


def positive_int(value: Any, name: str, detail: str = "", minimum: int = 1) -> int:
    """``value`` as an int if it is an integer of at least ``minimum``, else ConfigError.

    Python and numpy integers are accepted; bools, floats and strings are not.
    ``detail`` says in the error what the setting means.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int of at least {minimum}"
        meaning = f" ({detail})" if detail else ""
        raise ConfigError(f"{name} must be {kind}{meaning}, got {value!r}")
    return int(value)


def real_number(
    value: Any,
    name: str,
    detail: str = "",
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a float if it is a finite real number within the bounds, else ConfigError."""
    valid = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (at_most is None or value <= at_most)
    )
    if not valid:
        bounds = [
            f"above {above:g}" if above is not None else "",
            f"at least {at_least:g}" if at_least is not None else "",
            f"at most {at_most:g}" if at_most is not None else "",
        ]
        limits = " and ".join(bound for bound in bounds if bound)
        meaning = f" ({detail})" if detail else ""
        raise ConfigError(
            f"{name} must be a finite number{' ' + limits if limits else ''}{meaning}, "
            f"got {value!r}"
        )
    return float(value)


def one_of(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`ConfigError` listing them.

    >>> one_of("logits", "model_outputs", ("logits", "probabilities"))
    'logits'
    """
    if not isinstance(value, str) or value not in choices:
        quoted = [repr(choice) for choice in choices]
        listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        raise ConfigError(f"{name} must be {listed}, got {value!r}")
    return value
