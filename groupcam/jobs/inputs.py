"""Finding the images a job explains, and a unique, stable name for each."""

from __future__ import annotations

import glob
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

__all__ = ["IMAGE_SUFFIXES", "ImageInput", "find_images"]

#: File name endings searched for in folders and globs (any case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class ImageInput:
    """One image of a job.

    Attributes
    ----------
    index
        Its position among the job's inputs (results are listed in this order).
    path
        The file, as found (absolute).
    name
        Unique among the job's inputs and the same on every rerun with the same
        INPUT arguments: the file's path relative to the folder or glob it was
        found through, without its suffix, ``/`` written as ``__``; names that
        would clash (``a/cat.jpg`` and ``b/cat.jpg`` given as two files, or
        ``cat.jpg`` and ``cat.png``) get ``-`` and 8 hex digits of a hash of
        the file's absolute path. Its outputs are ``maps/<name>.npy`` and
        ``overlays/<name>.png``.
    """

    index: int
    path: str
    name: str


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, folders, files in os.walk(folder, followlinks=False):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found.extend(Path(root, name) for name in sorted(files) if _is_image(Path(name)))
    return found


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _MAGIC.intersection(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _candidates(argument: str) -> list[tuple[Path, Path]]:
    """``(file, base)`` pairs for one INPUT argument; ``base`` names are relative to."""
    path = Path(argument)
    if path.is_dir():
        return [(file, path) for file in _walk(path)]
    if path.is_file():
        return [(path, path.parent)]
    if _MAGIC.intersection(argument):
        base = _glob_base(argument)
        found: list[tuple[Path, Path]] = []
        for match in sorted(glob.glob(argument, recursive=True)):
            matched = Path(match)
            if matched.is_dir():
                found.extend((file, base) for file in _walk(matched))
            elif matched.is_file() and _is_image(matched):
                found.append((matched, base))
        if not found:
            raise UsageError(f"input: the pattern {argument!r} matches no image")
        return found
    raise UsageError(f"input: no such file or folder: {argument!r}")


def _stem_name(file: Path, base: Path) -> str:
    try:
        relative = file.relative_to(base)
    except ValueError:
        relative = Path(file.name)
    parts = [*relative.parent.parts, relative.stem or relative.name]
    name = "__".join(part for part in parts if part not in ("", ".", ".."))
    return name or "image"


def _hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def find_images(arguments: list[str] | tuple[str, ...]) -> list[ImageInput]:
    """Expand INPUT arguments (files, folders searched recursively, globs) into images.

    Folders and globs yield files ending in one of :data:`IMAGE_SUFFIXES`; a
    file named directly is taken whatever its suffix (it must still decode as
    JPEG, PNG, BMP, TIFF or WebP). Hidden folders are skipped, links to folders
    are not followed, and a file reached twice is listed once.

    Raises
    ------
    UsageError
        For an argument that is no file, no folder and no glob with matches,
        or when nothing at all is found.
    """
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    for argument in arguments:
        for file, base in _candidates(argument):
            absolute = os.path.abspath(file)
            if absolute not in seen:
                seen.add(absolute)
                found.append((absolute, _stem_name(file, base)))
    if not found:
        raise UsageError("input: found no image (" + ", ".join(map(repr, arguments)) + ")")
    clashes: defaultdict[str, int] = defaultdict(int)
    for _, name in found:
        clashes[name.casefold()] += 1
    images = []
    for index, (path, name) in enumerate(found):
        if clashes[name.casefold()] > 1:
            name = f"{name}-{_hash(path)}"
        images.append(ImageInput(index=index, path=path, name=name))
    return images
