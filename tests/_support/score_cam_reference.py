"""A plain, one-image, one-channel-at-a-time Score-CAM oracle in torch.

It follows the steps of the authors' public implementation (haofanwang/Score-CAM,
``cam/scorecam.py`` with the hooks of ``cam/basecam.py``), written independently
as the slowest, most literal loop, to test faster implementations against:

1. Put the model in evaluation mode and run it once on the image, with a forward
   hook on the target layer that keeps the layer's output tensor (of its last
   call). The target is the given class, else the arg-max of the outputs.
2. For every channel ``k`` of that output, in order:

   a. upsample ``A_k`` to the input size, bilinear, ``align_corners=False``
      (half-pixel centers), no antialiasing;
   b. skip the channel (no forward pass, no weight) when the *upsampled* map is
      constant (its max equals its min);
   c. min-max normalize the upsampled map to [0, 1]: the mask ``M_k``;
   d. run the model on ``x * M_k`` (the mask broadcast over the color channels;
      no baseline image, no blur) and take the softmax over classes of the
      output: ``s_k`` = probability of the target class (no baseline score is
      subtracted and there is no softmax across channels);
   e. add ``s_k * upsample(A_k)`` to the map: the *raw* upsampled activation is
      weighted, not the mask.

3. ReLU, then min-max normalize the whole map to [0, 1].

Two deliberate differences from the authors' script, neither of which changes a
non-degenerate map: everything is computed in the model's dtype (their map
accumulates in a float32 buffer), and a constant final map is returned as zeros
(their script returns ``None``).

Two options switch off behaviors of the authors' code that groupcam does not
copy, so that tests can show each one is the whole cause of a difference:

``clone_activations``
    The authors' hook keeps the layer's output tensor itself. If the network
    changes that tensor in place later on (say ``nn.ReLU(inplace=True)`` right
    after a target ``nn.Conv2d``, as in their AlexNet example with
    ``features_10``), the map is built from the changed values. ``True`` keeps a
    copy taken when the layer runs instead, as groupcam does.
``skip_constant_at_feature_resolution``
    The authors decide constancy after upsampling only. A channel that is
    constant but non-zero at feature resolution can come out of
    ``F.interpolate`` with rounding noise, and is then kept with a mask made of
    that noise. ``True`` also skips channels that are constant before
    upsampling, as groupcam does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["reference_score_cam"]


def _layer_output(
    model: nn.Module, layer: nn.Module, image: torch.Tensor, clone: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs on ``image`` and the layer's output of its last call."""
    kept: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        kept.append(output.detach().clone() if clone else output)

    handle = layer.register_forward_hook(keep)
    try:
        with torch.no_grad():
            outputs = model(image)
    finally:
        handle.remove()
    if not kept:
        raise ValueError("the target layer was not called during the forward pass")
    return outputs, kept[-1].detach()


def _min_max(values: torch.Tensor) -> torch.Tensor:
    return (values - values.min()) / (values.max() - values.min())


def reference_score_cam(
    model: nn.Module,
    target_layer_module: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    *,
    clone_activations: bool = False,
    skip_constant_at_feature_resolution: bool = False,
) -> np.ndarray:
    """Score-CAM map of one image, the way the authors' code computes it.

    Parameters
    ----------
    model
        A torch classifier returning ``(1, classes)`` logits.
    target_layer_module
        The module whose output is explained (its last call in a forward pass).
    x
        One image, ``(C, H, W)`` or ``(1, C, H, W)``, in the model's dtype and device.
    target
        The class to explain; ``None`` for the arg-max of the model's outputs.
    clone_activations, skip_constant_at_feature_resolution
        See the module docstring; the defaults follow the authors' code.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)`` map in [0, 1]; zeros when the map is constant.
    """
    image = x if x.ndim == 4 else x[None]
    if image.shape[0] != 1:
        raise ValueError(f"one image at a time, got a batch of {image.shape[0]}")
    height, width = image.shape[2], image.shape[3]

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        outputs, activations = _layer_output(model, target_layer_module, image, clone_activations)
        chosen = int(outputs[0].argmax()) if target is None else int(target)

        cam = torch.zeros((height, width), dtype=activations.dtype, device=activations.device)
        with torch.no_grad():
            for channel in range(activations.shape[1]):
                feature = activations[0, channel]
                if skip_constant_at_feature_resolution and feature.max() == feature.min():
                    continue
                upsampled = F.interpolate(
                    feature[None, None],
                    size=(height, width),
                    mode="bilinear",
                    align_corners=False,
                )[0, 0]
                if upsampled.max() == upsampled.min():
                    continue
                mask = _min_max(upsampled)
                probabilities = torch.softmax(model(image * mask), dim=1)
                cam = cam + probabilities[0, chosen] * upsampled
    finally:
        for module, training in modes:
            module.training = training

    cam = torch.clamp(cam, min=0.0)
    if cam.max() == cam.min():
        return np.zeros((height, width), dtype=np.float64)
    return _min_max(cam).cpu().numpy().astype(np.float64)
