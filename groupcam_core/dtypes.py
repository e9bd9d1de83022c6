"""Floating dtypes across namespaces, numpy's ``ml_dtypes`` extension types included."""

from __future__ import annotations

from typing import Any

__all__ = ["compute_dtype", "is_half_precision", "is_real_floating"]

#: Floating dtypes numpy knows only as extension types (``ml_dtypes``: what TensorFlow
#: and JAX hand over as numpy arrays), which ``numpy.isdtype`` refuses.
_EXTENSION_FLOATS = ("bfloat16", "float16")


def is_real_floating(dtype: Any, xp: Any) -> bool:
    """``xp.isdtype(dtype, "real floating")``, also true for numpy's ``bfloat16`` (ml_dtypes)."""
    try:
        if xp.isdtype(dtype, "real floating"):
            return True
    except TypeError:
        pass
    name = str(getattr(dtype, "name", dtype))
    return name in _EXTENSION_FLOATS or name.startswith("float8")


def is_half_precision(dtype: Any) -> bool:
    """Whether a floating dtype has 16 bits or fewer (bfloat16, float16, float8 kinds)."""
    itemsize = getattr(dtype, "itemsize", None)
    if itemsize is None:  # pragma: no cover - every namespace's dtypes have an itemsize
        return "16" in str(dtype) or "float8" in str(dtype)
    return int(itemsize) <= 2


def compute_dtype(array: Any, xp: Any) -> Any:
    """The dtype of the core's arithmetic: float64 for float64 input, else float32.

    Half-precision models and inputs (bfloat16, float16) are computed on in
    float32: masks, blurs and scores never lose precision to the model's dtype.
    """
    return xp.float64 if array.dtype == xp.float64 else xp.float32
