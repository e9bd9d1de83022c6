"""A user's batch into a framework's array: conversion and dtype checks every adapter makes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from ..dtypes import is_real_floating
from ..errors import InputError

__all__ = ["cast_input", "floating_batch"]


def floating_batch(
    x: Any, convert: Callable[[Any], Any], is_floating: Callable[[Any], bool], kind: str
) -> Any:
    """Convert a user's batch with ``convert`` and check that it holds floats.

    Parameters
    ----------
    x
        What the user passed.
    convert
        The framework's conversion to its array type.
    is_floating
        Whether a dtype of that array type is a floating-point type.
    kind
        The array type's name, for the error message.
    """
    try:
        array = convert(x)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InputError(
            f"cannot turn the input of type {type(x).__name__} into {kind}: {error}"
        ) from error
    if not is_floating(array.dtype):
        raise InputError(
            f"expected a floating-point batch, got dtype {array.dtype}; "
            "convert and normalize images the way the model was trained"
        )
    return array


def cast_input(x: Any, cast: Callable[[Any], Any]) -> Any:
    """``cast(x)``, with a clear error when finite values overflow the model's dtype.

    Without this check a float64 batch holding 1e6 becomes inf in float16 and
    would be reported as "contains NaN or inf".
    """
    cast_x = cast(x)
    if cast_x is x or getattr(x, "ndim", 0) == 0:
        return cast_x
    xp = array_namespace(x)
    if not is_real_floating(x.dtype, xp):
        return cast_x
    cast_xp = array_namespace(cast_x)
    if bool(xp.all(xp.isfinite(x))) and not bool(cast_xp.all(cast_xp.isfinite(cast_x))):
        largest = float(xp.max(xp.abs(x)))
        raise InputError(
            f"the input holds values up to {largest:g} in magnitude, which overflow the "
            f"model's dtype {cast_x.dtype}; normalize the images the way the model was trained"
        )
    return cast_x
