"""Step 1 with torch autograd: one forward pass and the gradient at one layer's output.

Shared by :mod:`groupcam_torch` and ``groupcam_keras`` on Keras' torch backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from groupcam_core.errors import TargetLayerError, layer_not_called, layer_not_connected
from groupcam_core.protocol import GradientPass, TargetResolver

__all__ = ["Capture", "gradient_at_layer"]

#: Applied to the target layer's output during the forward pass; returns what
#: the rest of the network sees in its place.
Capture = Callable[[Any], torch.Tensor]


def gradient_at_layer(
    run: Callable[[torch.Tensor, Capture], torch.Tensor],
    x: torch.Tensor,
    resolve_targets: TargetResolver,
    layer_name: str,
) -> GradientPass:
    """One forward pass and the gradient of the target scores at one layer's output.

    Parameters
    ----------
    run
        ``run(x, capture)`` runs the model on ``x`` with ``capture`` applied to the
        target layer's output (by a forward hook, a patched call, ...) and
        returns the ``(B, classes)`` outputs.
    x
        The input batch.
    resolve_targets
        The core's resolver from outputs to target classes.
    layer_name
        For error messages.

    Notes
    -----
    Below the target layer nothing needs a graph: the forward runs under
    ``no_grad`` and ``capture`` turns gradients on from the layer's output, which
    it replaces with a fresh leaf (handed on as a clone, so in-place operations
    after the layer cannot touch it). Frozen parameters and calls made inside
    ``torch.no_grad()`` or ``torch.inference_mode()`` work, and parameters'
    ``.grad`` are never written (``torch.autograd.grad``).
    """
    captured: dict[str, torch.Tensor] = {}

    def capture(output: Any) -> torch.Tensor:
        if not (torch.is_tensor(output) and output.is_floating_point()):
            raise TargetLayerError(
                f"target layer {layer_name!r} returned {type(output).__name__}, "
                "not a floating-point tensor"
            )
        torch.set_grad_enabled(True)
        leaf = output.detach().requires_grad_(True)
        captured["activations"] = leaf
        return leaf.clone()

    not_connected = layer_not_connected(layer_name)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()  # an inference tensor (made under inference_mode) becomes usable
        with torch.no_grad():
            outputs = run(x, capture)
        if "activations" not in captured:
            raise layer_not_called(layer_name)
        activations = captured["activations"]
        targets = resolve_targets(outputs.detach())
        if not outputs.requires_grad:
            raise not_connected
        score = outputs.gather(1, targets[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, activations, allow_unused=True)
    if gradients is None:
        raise not_connected
    return GradientPass(
        activations=activations.detach(),
        gradients=gradients.detach(),
        outputs=outputs.detach(),
        targets=targets,
    )
