"""Finding the images a job explains, and a unique, stable name for each."""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .arrays import is_array_input

__all__ = [
    "IMAGE_SUFFIXES",
    "NAME_BYTES",
    "ImageInput",
    "find_images",
    "image_name",
    "readable_part",
]

#: File name endings searched for in folders and globs (any case).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: The most UTF-8 bytes of an output name's readable part: with the hash, a suffix
#: and a temporary file's prefix, a name stays far below file systems' 255 bytes.
NAME_BYTES = 96

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
        The name of its outputs, ``maps/<name>.npy`` and ``overlays/<name>.png``
        (see :func:`image_name`): the same on every rerun, whatever the other
        inputs, and unique, also where file names ignore case.
    """

    index: int
    path: str
    name: str


def readable_part(file: Path, base: Path) -> str:
    """The file's path below ``base`` without its suffix, ``/`` as ``__``, in safe characters."""
    try:
        relative = file.relative_to(base)
    except ValueError:
        relative = Path(file.name)
    parts = [*relative.parent.parts, relative.stem or relative.name]
    text = "__".join(part for part in parts if part not in ("", ".", ".."))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip(".") or "image"
    encoded = safe.encode("utf-8", "surrogateescape")[:NAME_BYTES]
    return encoded.decode("utf-8", "ignore") or "image"


def image_name(path: str, readable: str) -> str:
    """An output name: ``<readable>-<10 hex digits of a SHA-256 of the absolute path>``.

    The readable part is the file's path below the INPUT folder or glob it was
    found through (``a/cat.jpg`` in ``photos/`` is ``a__cat``), letters, digits,
    ``-``, ``_`` and ``.`` only, at most :data:`NAME_BYTES` bytes; the hash
    makes the name unique. Names depend on the file alone, never on the other
    inputs, so adding files or folders to a job leaves earlier names as they
    were, and ``Cat.png`` and ``cat.png`` keep apart on case-insensitive file
    systems.
    """
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{readable}-{digest}"


def _is_image(path: Path) -> bool:
    """A picture or an array input (``.npy``, ``.nii``, ``.nii.gz``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or is_array_input(path)


def _regular(path: Path) -> bool:
    """A regular file (after links): never a FIFO, socket or device, which could block a read."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # a dangling link, a loop, no permission
        return False


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def _walk(folder: Path, skip: tuple[Path, ...]) -> list[Path]:
    found = []
    for root, folders, files in os.walk(folder, followlinks=False):
        here = Path(root)
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".") and not _inside((here / name).resolve(), skip)
        )
        found.extend(
            here / name for name in sorted(files) if _is_image(Path(name)) and _regular(here / name)
        )
    return found


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _MAGIC.intersection(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _candidates(argument: str, skip: tuple[Path, ...]) -> list[tuple[Path, Path]]:
    """``(file, base)`` pairs for one INPUT argument; ``base`` names are relative to."""
    path = Path(argument)
    if path.is_dir():
        return [(file, path) for file in _walk(path, skip)]
    if path.exists() and not _regular(path):
        raise UsageError(f"input: {argument!r} is not a regular file (a pipe, socket or device)")
    if path.is_file():
        return [(path, path.parent)]
    if _MAGIC.intersection(argument):
        base = _glob_base(argument)
        found: list[tuple[Path, Path]] = []
        for match in sorted(glob.glob(argument, recursive=True)):
            matched = Path(match)
            if _inside(matched.resolve(), skip):
                continue
            if matched.is_dir():
                found.extend((file, base) for file in _walk(matched, skip))
            elif _is_image(matched) and _regular(matched):
                found.append((matched, base))
        if not found:
            raise UsageError(f"input: the pattern {argument!r} matches no image")
        return found
    raise UsageError(f"input: no such file or folder: {argument!r}")


def find_images(
    arguments: list[str] | tuple[str, ...], *, exclude: str | Path | None = None
) -> list[ImageInput]:
    """Expand INPUT arguments (files, folders searched recursively, globs) into images.

    Folders and globs yield regular files ending in one of
    :data:`IMAGE_SUFFIXES` or :data:`~groupcam.jobs.arrays.ARRAY_SUFFIXES`
    (``.npy``, ``.nii``, ``.nii.gz``: arrays that are the model's input
    already); a file named directly is taken whatever its suffix (it must still
    decode as JPEG, PNG, BMP, TIFF or WebP, or be an array). Hidden folders are
    skipped, links to folders are not followed, pipes and other special files
    are never read, and a file reached twice is listed once.

    Parameters
    ----------
    arguments
        The INPUT arguments.
    exclude
        A folder whose files are never inputs: the job's output folder, so that
        a rerun into a folder inside an input folder does not explain its own
        overlays.

    Raises
    ------
    UsageError
        For an argument that is no file, no folder and no glob with matches, a
        special file, or when nothing at all is found.
    """
    skip = () if exclude is None else (Path(exclude).resolve(),)
    seen: set[str] = set()
    images: list[ImageInput] = []
    for argument in arguments:
        for file, base in _candidates(argument, skip):
            absolute = os.path.abspath(file)
            if absolute not in seen:
                seen.add(absolute)
                name = image_name(absolute, readable_part(file, base))
                images.append(ImageInput(index=len(images), path=absolute, name=name))
    if not images:
        raise UsageError("input: found no image (" + ", ".join(map(repr, arguments)) + ")")
    return images
