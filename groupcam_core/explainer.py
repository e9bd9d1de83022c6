"""What every framework's ``GroupCAM`` class shares."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np

from .config import GroupCAMConfig, make_config
from .engine import explain as explain_with_backend
from .errors import BackendError, ConfigError, InputError, LayerNotFoundError, TargetLayerError
from .protocol import Backend
from .result import Explanation
from .targets import TargetSpec

__all__ = [
    "ExplainerBase",
    "as_backend",
    "floating_batch",
    "pick_last_feature_layer",
    "positive_int",
    "unknown_layer_error",
]


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is a positive integer, else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


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
    except (TypeError, ValueError) as error:
        raise InputError(f"cannot turn the input of type {type(x).__name__} into {kind}") from error
    if not is_floating(array.dtype):
        raise InputError(
            f"expected a floating-point batch, got dtype {array.dtype}; "
            "convert and normalise images the way the model was trained"
        )
    return array


def unknown_layer_error(target: str, names: Sequence[str], detail: str = "") -> LayerNotFoundError:
    """The error for a layer name the model does not have, listing close matches.

    Parameters
    ----------
    target
        The name the user asked for.
    names
        The model's layer names, in the model's order.
    detail
        Appended to the message (for example, a list of the last layers).
    """
    close = difflib.get_close_matches(target, list(dict.fromkeys(names)), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return LayerNotFoundError(f"the model has no layer named {target!r}{hint}{detail}")


def pick_last_feature_layer(
    last_calls: dict[str, tuple[int, bool]], convolutions: Iterable[str]
) -> str:
    """Choose the default target layer from one recorded forward pass.

    Parameters
    ----------
    last_calls
        For each layer name: the order in which its last call finished, and
        whether that call output a 4-D map larger than 1x1.
    convolutions
        Names of the layers that are 2-D convolutions.

    Returns
    -------
    str
        The layer that finished last with a spatial output, at or after the
        last convolution's last call.
    """
    convolution_calls = [last_calls[name][0] for name in convolutions if name in last_calls]
    if not convolution_calls:
        raise TargetLayerError(
            "found no 2-D convolution in the model to pick a target layer from; "
            "pass target_layer= (a layer name or the layer itself)"
        )
    after = max(convolution_calls)
    candidates = [
        (order, name) for name, (order, spatial) in last_calls.items() if spatial and order >= after
    ]
    if not candidates:
        raise TargetLayerError(
            "no layer after the last convolution outputs a 4-D feature map; "
            "pass target_layer= (a layer name or the layer itself)"
        )
    return max(candidates)[1]


class ExplainerBase:
    """Settings, ``explain`` and ``__call__`` on top of a framework's backend.

    Subclasses implement ``_backend_for(x)`` and may override
    ``_explaining()`` (a context manager around each explanation).
    """

    config: GroupCAMConfig
    batch_size: int | None

    def _setup(
        self, groups: int, variant: str | GroupCAMConfig, batch_size: int | None, settings: dict
    ) -> None:
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.config = make_config(variant, groups=groups, **settings)
        self.batch_size = batch_size

    def _backend_for(self, x: Any) -> Backend:  # pragma: no cover - abstract
        raise NotImplementedError

    def _explaining(self) -> AbstractContextManager[Any]:
        return nullcontext()

    @contextmanager
    def using_backend(self, x: Any) -> Iterator[Backend]:
        """The explained model as a core :class:`~groupcam_core.Backend` while the block runs.

        Metrics and the comparison methods of :mod:`groupcam_core` run the model
        through it; the model is prepared as for an explanation (evaluation mode,
        restored afterwards) for the duration of the block.
        """
        with self._explaining():
            yield self._backend_for(x)

    def explain(self, x: Any, targets: TargetSpec = None) -> Explanation:
        """Explain a batch and return the maps with scores and diagnostics.

        Parameters
        ----------
        x
            The batch, normalised as the model expects, in the model's layout.
        targets
            ``None`` to explain each image's top class, one int for all images,
            or one int per image (a sequence or an integer array).

        Returns
        -------
        groupcam_core.Explanation
        """
        with self._explaining():
            backend = self._backend_for(x)
            return explain_with_backend(
                backend,
                x,
                targets=targets,
                config=self.config,
                batch_size=self.batch_size,
                layer=getattr(backend, "layer_name", None) or None,
            )

    def __call__(self, x: Any, targets: TargetSpec = None) -> np.ndarray:
        """Return the saliency maps only: numpy float32 ``(B, H, W)`` in [0, 1]."""
        return self.explain(x, targets).saliency


@contextmanager
def as_backend(model: ExplainerBase | Backend, x: Any) -> Iterator[Backend]:
    """Yield ``model`` as a core backend for the duration of the block.

    Parameters
    ----------
    model
        A :class:`~groupcam_core.protocol.Backend`, or a groupcam explainer
        (:class:`~groupcam_core.explainer.ExplainerBase`): its model is then
        prepared as for an explanation and restored when the block ends.
    x
        The batch that will be run (an explainer may need it to find its layer).
    """
    if isinstance(model, ExplainerBase):
        with model.using_backend(x) as backend:
            yield backend
    elif isinstance(model, Backend):
        yield model
    else:
        raise BackendError(
            "model must be a groupcam explainer (such as groupcam_torch.GroupCAM) or an object "
            f"implementing groupcam_core.Backend, got {type(model).__name__}"
        )
