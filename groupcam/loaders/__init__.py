"""What ``groupcam explain`` needs from each framework, one module per framework.

Every framework's loader (:mod:`~groupcam.loaders.torch_loader`,
:mod:`~groupcam.loaders.keras_loader`, :mod:`~groupcam.loaders.jax_loader`)
implements :class:`ModelLoader`; those of frameworks with a model file format
(torch and Keras) implement :class:`FileLoader` too. :func:`loader` imports
one, and with it its framework, only when a job needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np

from groupcam_core.protocol import Layout

from ..errors import ModelLoadError
from ..native_logs import quiet_framework_start

if TYPE_CHECKING:
    from groupcam_core.kit import ExplainerBase

    from ..jobs.settings import ExplainJob

__all__ = ["FILE_FRAMEWORKS", "FileLoader", "ModelLoader", "file_loader", "loader"]

_MODULES = {
    "torch": "groupcam.loaders.torch_loader",
    "keras": "groupcam.loaders.keras_loader",
    "jax": "groupcam.loaders.jax_loader",
}
#: The framework whose loader reads each kind of model file (see ``ModelSource.kind``).
FILE_FRAMEWORKS: dict[str, str] = {"torch-file": "torch", "keras-file": "keras"}


@runtime_checkable
class ModelLoader(Protocol):
    """Recognizing a framework's models and building their explainer."""

    #: ``"torch"``, ``"keras"`` or ``"jax"``.
    FRAMEWORK: str

    def owns(self, model: Any) -> bool:
        """Whether ``model`` is a model of this framework."""
        ...

    def input_layout(self, model: Any) -> Layout:
        """The layout of the model's input batch."""
        ...

    def input_size(self, model: Any) -> tuple[int, int] | None:
        """``(height, width)`` the model declares, or ``None``."""
        ...

    def make_explainer(self, model: Any, job: ExplainJob, sample: Any) -> ExplainerBase:
        """The adapter's ``GroupCAM`` for ``model`` with the job's settings.

        ``sample`` is the first model input (a batch of one), for loaders that
        must look at the model run once.
        """
        ...

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` threads for the framework's kernels, where it can still be set."""
        ...

    def weights(self, model: Any) -> Iterator[tuple[str, np.ndarray]]:
        """Every weight and buffer of the model, by name, as numpy (for its fingerprint)."""
        ...


@runtime_checkable
class FileLoader(ModelLoader, Protocol):
    """A loader of a framework with a model file format."""

    def load_file(self, path: str, trust_model: bool) -> Any:
        """Load a model file; ``trust_model`` allows formats that run code from the file."""
        ...


def loader(framework: str) -> ModelLoader:
    """The loader of ``framework`` (imports the framework)."""
    try:
        with quiet_framework_start():
            module = importlib.import_module(_MODULES[framework])
    except ImportError as error:
        raise ModelLoadError(
            f"the {framework} adapter cannot be imported ({error}); "
            f"pip install 'groupcam[{framework}]'"
        ) from error
    return cast("ModelLoader", module)


def file_loader(kind: str) -> FileLoader:
    """The loader of the framework that reads model files of ``kind`` (``"torch-file"``, ...)."""
    return cast("FileLoader", loader(FILE_FRAMEWORKS[kind]))
