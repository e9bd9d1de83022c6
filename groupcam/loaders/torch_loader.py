"""What ``groupcam explain`` needs from PyTorch: loading model files, building the explainer.

A :class:`~groupcam.loaders.FileLoader`; :mod:`groupcam.jobs.models` imports it
when a job's model is a torch one.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
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
]

FRAMEWORK = "torch"

_SCRIPT_CONVOLUTIONS = ("Conv2d", "ConvTranspose2d")
_SCRIPT_POOLING = ("MaxPool2d", "AvgPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool2d", "LPPool2d")


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
        If the file is not a torch file at all.
    """
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
        with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; the user chose it
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(path, map_location="cpu")
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
    model = torch.load(path, map_location="cpu", weights_only=False)
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
