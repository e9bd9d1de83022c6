"""What ``groupcam explain`` needs from PyTorch: loading model files, building the explainer.

A :class:`~groupcam.loaders.FileLoader`; :mod:`groupcam.jobs.models` imports it
when a job's model is a torch one.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from groupcam_core.kit import LayerKind
from groupcam_core.protocol import Layout
from groupcam_torch import GroupCAM
from groupcam_torch.layers import find_last_feature_layer

from ..errors import UsageError
from ..jobs.settings import ExplainJob

__all__ = [
    "FRAMEWORK",
    "ScriptedLayer",
    "classify_file",
    "input_layout",
    "input_size",
    "load_file",
    "make_explainer",
    "mirror_script_module",
    "owns",
    "set_threads",
    "weights",
]

FRAMEWORK = "torch"

_SCRIPT_CONVOLUTIONS = ("Conv2d", "ConvTranspose2d")
_SCRIPT_POOLING = ("MaxPool2d", "AvgPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool2d", "LPPool2d")


_MAGIC_NUMBERS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x89HDF", "an HDF5 file (a legacy Keras .h5 model needs the .h5 ending)"),
)


def _looks_like(start: bytes) -> str | None:
    """What a file that begins with ``start`` is, when it is a common kind of non-model."""
    for magic, what in _MAGIC_NUMBERS:
        if start.startswith(magic):
            return what
    if start[:4] == b"RIFF" and start[8:12] == b"WEBP":
        return "a WebP image"
    return None


def classify_file(path: str | Path) -> str:
    """What a torch file holds, found without running code from it.

    Returns
    -------
    str
        ``"torchscript"`` (a ``torch.jit.save`` archive), ``"weights"``
        (tensors and plain containers: ``torch.load(weights_only=True)``
        reads it) or ``"pickled-module"`` (anything else ``torch.save``
        wrote: reading it imports and runs the classes it names).

    Raises
    ------
    UsageError
        If the file is not a torch file at all (empty, an image, text, ...).
    """
    with open(path, "rb") as handle:
        start = handle.read(16)
    if not start:
        raise UsageError(f"model: {path} is empty (0 bytes), not a model file")
    known = _looks_like(start)
    if known is not None:
        raise UsageError(
            f"model: {path} is {known}, not a model file; MODEL comes first, then the images"
        )
    # torch.save writes a zip archive (and, before torch 1.6, a pickle: protocol 2 starts 0x80).
    if not zipfile.is_zipfile(path) and start[:1] != b"\x80":
        raise UsageError(
            f"model: {path} is not a torch file (neither a torch.save archive nor TorchScript)"
        )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in name or name.endswith("/constants.pkl") for name in names):
            return "torchscript"
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return "pickled-module"
    except Exception as error:  # torch raises many types for files it cannot read
        raise UsageError(f"model: cannot read {path} as a torch file: {error}") from error
    return "weights"


def load_file(path: str, trust_model: bool) -> nn.Module:
    """Load a TorchScript archive or a pickled ``torch.nn.Module`` onto the CPU.

    A TorchScript model is mirrored by :func:`mirror_script_module`. A pickled
    module is loaded only with ``trust_model``: unpickling it imports and runs
    the code the file names, as ``torch.load(weights_only=False)`` does.
    """
    kind = classify_file(path)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; the user chose it
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(path, map_location="cpu")
        except Exception as error:  # a broken archive: torch raises RuntimeError and others
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise UsageError(
                f"model: {path} looks like a TorchScript archive, but torch cannot load it: "
                f"{type(error).__name__}: {message}"
            ) from error
        mirror = mirror_script_module(scripted)
        if isinstance(mirror, ScriptedLayer):
            raise UsageError(
                f"model: {path} is a TorchScript {mirror.original_name} whose forward runs in "
                "TorchScript, where no layer's output can be seen; groupcam explains TorchScript "
                "models built of nn.Sequential containers. Save the module with torch.save "
                "(and pass --trust-model), or give package.module:callable"
            )
        return mirror
    if kind == "weights":
        raise UsageError(
            f"model: {path} holds weights (a state dict or tensors), not a model; give "
            "package.module:callable that builds your model and loads them instead"
        )
    if not trust_model:
        raise UsageError(
            f"model: {path} is a pickled torch module: loading it runs code named in the file "
            "(as torch.load(weights_only=False) does). Pass --trust-model if you trust the file, "
            "or save it with torch.jit.save, or give package.module:callable"
        )
    # As `python script.py` would: the classes a pickle names may live in modules
    # beside the file or in the current folder.
    folders = [str(Path(path).resolve().parent), os.getcwd()]
    added = [folder for folder in folders if folder not in sys.path]
    sys.path[:0] = added
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as error:
        raise UsageError(
            f"model: {path} names code that cannot be imported ({type(error).__name__}: "
            f"{error}); run from the folder of the module that defines the model's classes, or "
            "put it on PYTHONPATH"
        ) from error
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise UsageError(f"model: cannot read {path} as a torch file: {error}") from error
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model: {path} holds a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


class ScriptedLayer(nn.Module):
    """One layer of a TorchScript model, called from Python so that a hook can see its output.

    The scripted layer is kept out of ``named_modules()`` (the mirror's layer
    names are those of the scripted model) and stays in eval mode.
    """

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.__dict__["scripted"] = scripted.eval()
        self.original_name = str(getattr(scripted, "original_name", type(scripted).__name__))

    def forward(self, *args: Any) -> Any:
        return self.__dict__["scripted"](*args)

    def extra_repr(self) -> str:
        return f"scripted {self.original_name}"


def mirror_script_module(scripted: torch.jit.ScriptModule) -> nn.Module:
    """An eager module that runs a TorchScript model layer by layer.

    TorchScript runs a module's ``forward`` in C++, where no forward hook sees
    a layer's output; but ``nn.Sequential`` only calls its children in order.
    The mirror rebuilds each scripted ``Sequential`` as an eager one and wraps
    every other scripted module in a :class:`ScriptedLayer`, so every layer
    reached through ``Sequential`` containers can be explained, under its
    original dotted name. Layers inside other scripted modules (a ResNet's
    blocks, a custom ``forward``) cannot.
    """
    if getattr(scripted, "original_name", "") == "Sequential":
        mirror = nn.Sequential()
        for name, child in scripted.named_children():
            mirror.add_module(name, mirror_script_module(child))
        return mirror.eval()
    return ScriptedLayer(scripted)


def _script_default_layer(model: nn.Module, sample: torch.Tensor) -> str:
    """The default layer of a TorchScript mirror, its kinds from the scripted classes' names."""

    def kind(original: str) -> LayerKind:
        if original in _SCRIPT_CONVOLUTIONS:
            return "convolution"
        return "pooling" if original in _SCRIPT_POOLING else "other"

    layers = {
        name: (module, kind(module.original_name))
        for name, module in model.named_modules()
        if isinstance(module, ScriptedLayer)
    }
    return find_last_feature_layer(model, lambda: model(sample), layers)


def owns(model: Any) -> bool:
    """Whether ``model`` is a torch model."""
    return isinstance(model, nn.Module)


def input_layout(model: Any) -> Layout:
    """Torch models take channels-first batches."""
    return "channels_first"


def input_size(model: Any) -> tuple[int, int] | None:
    """A torch module does not declare its input size."""
    return None


def make_explainer(model: nn.Module, job: ExplainJob, sample: np.ndarray) -> GroupCAM:
    """``GroupCAM`` for ``model`` with the job's settings; ``sample`` is the first input."""
    layer = job.layer
    scripted = any(isinstance(module, ScriptedLayer) for module in model.modules())
    if layer is None and scripted:
        layer = _script_default_layer(model, torch.as_tensor(sample))
    return GroupCAM(
        model, target_layer=layer, groups=job.groups, variant=job.variant, batch_size=job.batch_size
    )


def set_threads(threads: int) -> None:
    """Use ``threads`` threads for torch's kernels in this process."""
    torch.set_num_threads(threads)


def weights(model: nn.Module) -> Iterator[tuple[str, np.ndarray]]:
    """The model's parameters and buffers (those of scripted layers too), as raw bytes."""
    owners: list[tuple[str, Any]] = [("", model)]
    owners += [
        (f"{name}.", module.__dict__["scripted"])
        for name, module in model.named_modules()
        if isinstance(module, ScriptedLayer)
    ]
    for prefix, owner in owners:
        for name, tensor in owner.state_dict().items():
            raw = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
            yield f"{prefix}{name}:{tensor.dtype}:{tuple(tensor.shape)}", raw.numpy()
