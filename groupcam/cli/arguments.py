"""Argument types the commands share: positive integers and comma-separated names."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ..errors import UsageError

__all__ = ["UsageError", "name_list", "positive_int"]


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def name_list(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An ``argparse`` type: comma-separated names out of ``choices``, each once."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from "
                + ", ".join(choices)
            )
        return list(dict.fromkeys(names))

    return parse
