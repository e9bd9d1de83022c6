"""What the core asks of a framework adapter, and what it hands one.

The core never sees a model. An adapter wraps one in a :class:`Backend` and
answers four questions: how its arrays are laid out, how to turn user input
into the model's own array type, what one gradient pass at the target layer
gives, and what the model outputs for a chunk of inputs. Arrays cross this
boundary in the adapter's own type (numpy, torch, jax); the core computes on
them through the Python array API so that, on an accelerator, nothing leaves
the device until the final result.

The core hands a backend's gradient pass an :class:`Objective`: what to
resolve on the clean outputs and what to differentiate. A backend whose masked
passes can run in low precision is a :class:`FastBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .fast import FastMode
    from .model_outputs import ModelOutputs

__all__ = ["Backend", "FastBackend", "GradientPass", "Layout", "Objective"]

Layout = Literal["channels_first", "channels_last"]


@runtime_checkable
class Objective(Protocol):
    """What an explanation explains, as a backend's gradient pass sees it.

    :class:`~groupcam_core.targets.ClassObjective` (class targets) and
    :class:`~groupcam_core.targets.FunctionObjective` (a target function)
    implement it; backends call nothing else.
    """

    #: ``"class"``: ``forward`` returns ``(n, classes)`` scores; ``"function"``:
    #: any output whose first axis has the ``n`` rows (the function reads it).
    kind: Literal["class", "function"]

    def __call__(self, outputs: Any) -> Any:
        """Check the clean batch's outputs and resolve the targets.

        Returns the class of each image as an integer array in the outputs'
        namespace and device (class targets), or ``None`` (a target function).
        Raises the library's errors for outputs or targets that do not fit.
        """
        ...

    def scores(self, outputs: Any, targets: Any) -> Any:
        """``(B,)`` scores of the outputs, in the framework's own arrays, differentiable.

        The gradient pass differentiates their sum with respect to the target
        layer's output.
        """
        ...


@dataclass(frozen=True)
class GradientPass:
    """The result of one forward/backward pass through the model.

    Attributes
    ----------
    activations
        Output of the target layer, ``(B, K, u, v)`` or ``(B, u, v, K)`` according
        to the adapter's ``feature_layout``; for several target layers, a tuple
        with one such array per layer, in the order of ``layer_names``.
    gradients
        Gradient of the target score (the sum over images of
        ``objective.scores(outputs, targets)``) with respect to ``activations``;
        same shapes.
    outputs
        The model's output for the clean batch: ``(B, classes)`` for class
        targets, any shape with a first axis of ``B`` for target functions.
    targets
        What ``objective(outputs)`` returned: the class of each image, or
        ``None`` for a target function.
    layer_names
        For several target layers, their names, in the order of the arrays.
    """

    activations: Any
    gradients: Any
    outputs: Any
    targets: Any
    layer_names: tuple[str, ...] | None = None


@runtime_checkable
class Backend(Protocol):
    """The interface between the framework-neutral core and one framework."""

    @property
    def layer_name(self) -> str:
        """Name of the target layer(s) (for results and error messages); ``""`` if none."""
        ...

    @property
    def input_layout(self) -> Layout:
        """Layout of the model's input batch."""
        ...

    @property
    def feature_layout(self) -> Layout:
        """Layout of the target layer's activations and gradients."""
        ...

    @property
    def model_outputs(self) -> ModelOutputs:
        """What the class outputs are: ``"logits"`` (a masked pass scores the softmax),
        ``"probabilities"`` (scored as they are) or ``"sigmoid"`` (each class's sigmoid)."""
        ...

    @property
    def fixed_batch_shape(self) -> bool:
        """True when every forward chunk must have exactly ``batch_size`` rows.

        Compiled forward functions (``tf.function``, ``jax.jit``) retrace for each
        new shape; the core pads the last chunk for such backends.
        """
        ...

    @property
    def default_batch_size(self) -> int:
        """Chunk size used for masked forward passes when the user gives none."""
        ...

    def prepare_input(self, x: Any) -> Any:
        """Convert a user batch into the model's array type, device and dtype."""
        ...

    def gradient_pass(self, x: Any, objective: Objective) -> GradientPass:
        """Run the model once on ``x`` and differentiate the target scores at the layer.

        ``targets = objective(outputs)`` resolves and checks the targets on the
        clean outputs; the gradient is that of ``objective.scores(outputs,
        targets)`` summed over images (for class targets: each image's output
        at its class).
        """
        ...

    def forward(self, x: Any) -> Any:
        """The model's output for a chunk of ``n`` inputs, without gradients.

        ``(n, classes)`` scores when the explanation has class targets; for a
        target function, whatever the model returns with ``n`` rows first
        (the function reads it). The core checks the shape.
        """
        ...

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy an array of this backend to host memory as numpy."""
        ...


@runtime_checkable
class FastBackend(Backend, Protocol):
    """A backend whose masked forward passes can run in a faster, lower precision.

    The explainer sets :attr:`fast` for the duration of an explanation with
    ``fast=True`` (and puts :data:`~groupcam_core.fast.EXACT` back afterwards);
    ``forward`` reads it. The gradient pass always runs exact.
    """

    fast: FastMode
