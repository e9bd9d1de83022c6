"""Loading a job's model, in whichever framework it belongs to.

The framework-specific parts live in :mod:`groupcam.loaders`, one module per
framework, imported here only when a job needs them: this module imports no
framework.

What runs code: a built-in model runs groupcam's own; ``module:callable`` runs
the user's module, which the user named; a TorchScript archive runs only
TorchScript; a ``.keras`` file loads with Keras' safe mode on; a pickled torch
module (``torch.save(model)``) runs the code it names and is loaded only with
``trust_model``. Nothing is ever loaded from the images' folders.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groupcam_core.errors import BackendError
from groupcam_core.kit import ExplainerBase
from groupcam_core.protocol import Backend, Layout

from ..errors import ModelLoadError
from ..loaders import FILE_FRAMEWORKS, file_loader, loader
from ..native_logs import quiet_framework_start
from ..zoo import builtin_model
from .settings import ExplainJob

__all__ = [
    "LoadedModel",
    "check_model_source",
    "import_callable",
    "load_model",
    "model_weights_digest",
    "weights_digest",
]

#: The module whose presence in ``sys.modules`` means a framework's objects may exist.
_FRAMEWORK_MODULES = (("keras", "keras"), ("torch", "torch"), ("jax", "flax"))


@contextmanager
def _importable_from(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.append(folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def import_callable(spec: str, workdir: str, what: str = "model") -> Callable[..., Any]:
    """Import ``package.module:name`` (or ``/path/file.py:name``); ``name`` may be dotted.

    ``workdir`` is searched after the installed packages, as ``python -m``
    would search the current folder.
    """
    module_name, _, attribute = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            location = importlib.util.spec_from_file_location(
                f"_groupcam_user_{abs(hash(module_name))}", module_name
            )
            if location is None or location.loader is None:
                raise ImportError(f"cannot import {module_name}")
            module = importlib.util.module_from_spec(location)
            with _importable_from(str(Path(module_name).parent)), quiet_framework_start():
                location.loader.exec_module(module)
        else:
            with _importable_from(workdir), quiet_framework_start():
                module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelLoadError(f"{what}: cannot import {module_name!r}: {error}") from error
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ModelLoadError(f"{what}: {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise ModelLoadError(f"{what}: {spec!r} is a {type(found).__name__}, not a callable")
    return found


def check_model_source(job: ExplainJob) -> None:
    """Check the model's source without loading the model (for a driver that only schedules).

    Files must exist and a torch pickle needs ``trust_model``; a module must be
    importable (it is not imported); a built-in model needs its framework's
    adapter to be installed (not imported).
    """
    source = job.model
    if source.kind == "torch-file":
        if job.framework not in (None, "torch"):
            raise ModelLoadError(
                f"model: {source.location} is a torch file, not a {job.framework} model"
            )
        from ..loaders import torch_loader

        kind = torch_loader.classify_file(source.location)
        if kind == "pickled-module" and not job.trust_model:
            torch_loader.load_file(source.location, False)  # raises the explanation
        if kind == "weights":
            torch_loader.load_file(source.location, job.trust_model)
    elif source.kind == "callable":
        module_name = source.location.rpartition(":")[0]
        if not module_name.endswith(".py"):
            with _importable_from(job.workdir):
                try:
                    found = importlib.util.find_spec(module_name)
                except (ImportError, ValueError):
                    found = None
            if found is None:
                raise ModelLoadError(f"model: no module named {module_name!r}")
    elif source.kind == "keras-file" and job.framework not in (None, "keras"):
        raise ModelLoadError(
            f"model: {source.location} is a Keras file, not a {job.framework} model"
        )


@dataclass
class LoadedModel:
    """A job's model, ready to be explained.

    Attributes
    ----------
    framework
        ``"torch"``, ``"keras"``, ``"jax"``, or ``"explainer"`` when a
        ``module:callable`` returned a ready groupcam explainer or backend.
    model
        The model (or explainer, or backend).
    layout
        The layout of the model's input.
    size
        The input size the model declares, if any.
    """

    framework: str
    model: Any
    layout: Layout
    size: tuple[int, int] | None

    def weights_digest(self) -> str | None:
        """SHA-256 of the model's weights (see :func:`weights_digest`); ``None`` if unreadable."""
        return model_weights_digest(self.framework, self.model)

    def explainer(self, job: ExplainJob, sample: Any) -> ExplainerBase:
        """The explainer for this model with the job's settings (``sample``: a first input)."""
        if self.framework == "explainer":
            if isinstance(self.model, ExplainerBase):
                return self.model
            return BackendExplainer(self.model, job)
        return loader(self.framework).make_explainer(self.model, job, sample)


class BackendExplainer(ExplainerBase):
    """An explainer around a ready :class:`~groupcam_core.protocol.Backend`."""

    def __init__(self, backend: Backend, job: ExplainJob) -> None:
        super().__init__(backend, job.groups, job.variant, job.batch_size, {})
        self.backend = backend

    def _backend_for(self, x: Any) -> Backend:
        return self.backend


def _detect(model: Any) -> str:
    if isinstance(model, (ExplainerBase, Backend)):
        return "explainer"
    for framework, module in _FRAMEWORK_MODULES:
        if module in sys.modules and loader(framework).owns(model):
            return framework
    raise ModelLoadError(
        f"model: got a {type(model).__module__}.{type(model).__name__}; expected a "
        "torch.nn.Module, a keras.Model, a Flax NNX module, a linen (module, variables) pair, "
        "or a groupcam explainer"
    )


def _explainer_layout(explainer: Any) -> Layout:
    try:
        layout: Layout = explainer.input_layout
    except BackendError as error:
        raise ModelLoadError(f"model: {error}") from error
    return layout


def load_model(job: ExplainJob) -> LoadedModel:
    """Load the job's model (see the module's notes on what runs code).

    Raises
    ------
    ModelLoadError
        If it cannot be loaded, or is not of ``job.framework``.
    """
    source = job.model
    framework = job.framework
    if source.kind == "builtin":
        framework = framework or "torch"
        _threads(job, framework)
        model = builtin_model(source.location, framework, job.size)
    elif source.kind in FILE_FRAMEWORKS:
        owner = FILE_FRAMEWORKS[source.kind]
        if framework not in (None, owner):
            raise ModelLoadError(f"model: {source.location} is a {owner} file, not {framework}")
        framework = owner
        _threads(job, framework)
        model = file_loader(source.kind).load_file(source.location, job.trust_model)
    else:
        factory = import_callable(source.location, job.workdir)
        guard = (
            _importable_from(job.workdir) if not source.location.endswith(".py") else nullcontext()
        )
        try:
            with guard:
                model = factory()
        except Exception as error:  # the user's code: any failure means no model
            raise ModelLoadError(
                f"model: {source.location}() raised {type(error).__name__}: {error}"
            ) from error
        detected = _detect(model)
        if framework is not None and detected not in (framework, "explainer"):
            raise ModelLoadError(
                f"model: {source.location}() returned a {detected} model, not a {framework} one"
            )
        framework = detected
        _threads(job, framework)
    if framework == "explainer":
        return LoadedModel("explainer", model, _explainer_layout(model), None)
    found = loader(framework)
    return LoadedModel(framework, model, found.input_layout(model), found.input_size(model))


def _threads(job: ExplainJob, framework: str) -> None:
    if job.threads is None:
        return
    if framework != "explainer":
        loader(framework).set_threads(job.threads)
        return
    for owner, module in _FRAMEWORK_MODULES:  # a ready explainer: whichever is in use
        if module in sys.modules:
            loader(owner).set_threads(job.threads)


def weights_digest(weights: Iterable[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over named arrays: each name, dtype, shape and bytes, in order.

    The same for a model's weights in every framework's loader (each gives its
    weights as numpy), so that a resume can tell a model with other weights.
    """
    digest = hashlib.sha256()
    for name, array in weights:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_weights_digest(framework: str, model: Any) -> str | None:
    """The digest of a loaded model's weights; for a ready explainer, of the model inside it.

    A backend or explainer whose model groupcam cannot read is digested as a
    pickle where it pickles; ``None`` where nothing can be read (such a model
    is then told apart by its source only).
    """
    if framework != "explainer":
        return weights_digest(loader(framework).weights(model))
    way_in = getattr(model, "way_in", None)
    inner = getattr(model, "model", None)
    if inner is None and way_in is not None:
        variables = getattr(way_in, "variables", None)
        module = getattr(way_in, "module", None)
        inner = (module, variables) if module is not None else getattr(way_in, "model", None)
    if inner is not None:
        try:
            return model_weights_digest(_detect(inner), inner)
        except ModelLoadError:
            pass
    try:
        return hashlib.sha256(pickle.dumps(model, protocol=4)).hexdigest()
    except Exception:  # anything can fail to pickle: the model is then not fingerprinted
        return None
