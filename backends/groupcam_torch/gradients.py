"""Step 1 with torch autograd: one forward pass and the gradient at the layers' outputs.

Shared by :mod:`groupcam_torch` and ``groupcam_keras`` on Keras' torch backend
(the one import between adapters, declared in pyproject's import contract).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from groupcam_core.errors import TargetLayerError, layer_not_called, layer_not_connected
from groupcam_core.protocol import GradientPass, Objective

__all__ = ["Capture", "gradient_at_layers"]

#: Applied to the target layer's output during the forward pass; returns what
#: the rest of the network sees in its place.
Capture = Callable[[Any], torch.Tensor]


def _detached(outputs: Any) -> Any:
    """The outputs without their graph: a tensor, or per-image detections (dicts of tensors)."""
    if isinstance(outputs, list):
        return [
            {
                key: value.detach() if torch.is_tensor(value) else value
                for key, value in item.items()
            }
            for item in outputs
        ]
    return outputs.detach()


def _requires_grad(outputs: Any) -> bool:
    if isinstance(outputs, list):
        return any(
            torch.is_tensor(value) and value.requires_grad
            for item in outputs
            for value in item.values()
        )
    return bool(outputs.requires_grad)


def _with_first(container: tuple[Any, ...] | list[Any], first: Any) -> Any:
    """``container`` with its first item replaced, of the same type (namedtuples too)."""
    items = [first, *container[1:]]
    if isinstance(container, list):
        return items
    if hasattr(container, "_fields"):  # a namedtuple takes its fields as arguments
        return type(container)(*items)
    return type(container)(items)


def gradient_at_layers(
    run: Callable[[torch.Tensor, Callable[[str], Capture]], Any],
    x: torch.Tensor,
    objective: Objective,
    layer_names: Sequence[str],
    expected_calls: Mapping[str, int] | None = None,
) -> GradientPass:
    """One forward pass and the gradient of the target scores at several layers' outputs.

    Parameters
    ----------
    run
        ``run(x, capture_for)`` runs the model on ``x`` with ``capture_for(name)``
        applied to the output of the layer called ``name`` (by a forward hook, a
        patched call, ...) and returns the model's outputs.
    x
        The input batch.
    objective
        The core's objective: ``objective(outputs)`` resolves the targets,
        ``objective.scores(outputs, targets)`` gives what is differentiated.
    layer_names
        The layers, in the order of the returned arrays.
    expected_calls
        How many times each layer ran in an earlier pass. A layer called several
        times (EfficientNet's shared ``_swish``) is then captured at its last
        call only, and the graph starts there; without it, the graph starts at
        the first call and holds every activation after it until the backward
        pass (memory that grows with the batch). If the layer runs fewer times
        than expected, the pass is run again without the hint.

    Notes
    -----
    A layer that returns a tuple or list whose first item is a tensor (a
    transformer block's ``(hidden_states, attentions)``) is explained at that
    tensor. Below the first captured layer nothing needs a graph: the forward runs under
    ``no_grad`` and the first capture turns gradients on from that layer's
    output, which it replaces with a fresh leaf. Each captured output is handed
    on as a clone, so in-place operations after the layer cannot touch it. A
    layer called several times is explained at its last call. Frozen parameters
    and calls made inside ``torch.no_grad()`` or ``torch.inference_mode()``
    work, and parameters' ``.grad`` are never written (``torch.autograd.grad``).
    """
    captured: dict[str, torch.Tensor] = {}
    seen: dict[str, int] = dict.fromkeys(layer_names, 0)
    skip = {name: max(count - 1, 0) for name, count in (expected_calls or {}).items()}

    def capture_for(name: str) -> Capture:
        def capture(output: Any) -> Any:
            seen[name] = seen.get(name, 0) + 1
            if seen[name] <= skip.get(name, 0):
                return output  # not the last call: no graph yet
            if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
                # A block that returns (hidden states, extras), as transformers' do:
                # its first tensor is explained and handed on in the same container.
                return _with_first(output, capture_tensor(output[0]))
            return capture_tensor(output)

        def capture_tensor(output: Any) -> torch.Tensor:
            if not (torch.is_tensor(output) and output.is_floating_point()):
                raise TargetLayerError(
                    f"target layer {name!r} returned {type(output).__name__}, "
                    "not a floating-point tensor (nor a tuple or list that starts with one)"
                )
            if torch.is_grad_enabled() and output.requires_grad:
                tensor = output  # below a layer captured earlier: already in the graph
            else:
                torch.set_grad_enabled(True)
                tensor = output.detach().requires_grad_(True)
            captured[name] = tensor
            return tensor.clone()

        return capture

    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()  # an inference tensor (made under inference_mode) becomes usable
        with torch.no_grad():
            outputs = run(x, capture_for)
        if expected_calls and any(name not in captured for name in layer_names):
            return gradient_at_layers(run, x, objective, layer_names)  # fewer calls this time
        for name in layer_names:
            if name not in captured:
                raise layer_not_called(name)
        targets = objective(_detached(outputs))
        if not _requires_grad(outputs):
            raise layer_not_connected(layer_names[0])
        score = objective.scores(outputs, targets).sum()
        gradients = torch.autograd.grad(
            score, [captured[name] for name in layer_names], allow_unused=True
        )
    for name, gradient in zip(layer_names, gradients, strict=True):
        if gradient is None:
            raise layer_not_connected(name)
    activations = tuple(captured[name].detach() for name in layer_names)
    gradients = tuple(gradient.detach() for gradient in gradients)
    if len(layer_names) == 1:
        return GradientPass(activations[0], gradients[0], _detached(outputs), targets)
    return GradientPass(activations, gradients, _detached(outputs), targets, tuple(layer_names))
