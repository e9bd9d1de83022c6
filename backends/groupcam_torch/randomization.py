"""Cascading model randomization for the sanity check of Adebayo et al. (2018).

>>> from groupcam_core.metrics import sanity_check
>>> from groupcam_torch import GroupCAM
>>> from groupcam_torch.randomization import cascading_randomization
>>> result = sanity_check(                                  # doctest: +SKIP
...     lambda m: GroupCAM(m, target_layer="layer4"),
...     model,
...     cascading_randomization(model),
...     images,
... )
>>> result.names, result.mean                               # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from groupcam_core.errors import BackendError

__all__ = ["cascading_randomization", "randomizable_layers"]


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, from the output end to the input end.

    The order is the reverse of ``model.named_modules()`` (registration order,
    which for usual models follows the forward pass). Only modules with their
    own parameters and a ``reset_parameters()`` method are listed; others that
    own parameters are reported in a warning by :func:`cascading_randomization`.
    """
    return [name for name, _ in _owners(model)[0]]


def _owners(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    resettable: list[tuple[str, nn.Module]] = []
    skipped: list[str] = []
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if callable(getattr(module, "reset_parameters", None)):
            resettable.append((name, module))
        else:
            skipped.append(name or "<root>")
    resettable.reverse()
    return resettable, skipped


def _layer_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def cascading_randomization(model: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Copies of ``model`` with more and more layers re-initialized, from the output down.

    Step ``k`` yields ``(name, copy)`` where ``copy`` is a deep copy of the
    model whose ``k + 1`` parametrized layers nearest the output (see
    :func:`randomizable_layers`), up to and including ``name``, were reset with
    their own ``reset_parameters()``, as in the cascading randomization of
    Adebayo et al. (2018). The last step randomizes every such layer.

    Parameters
    ----------
    model
        The trained model; it is never modified (each step is a new copy).
    seed
        Seeds the re-initialization of each layer (a seed derived from ``seed``
        and the layer's position): the same seed gives the same copies. The
        global torch random state is left as it was.

    Yields
    ------
    tuple of (str, torch.nn.Module)
        The layer randomized last and the randomized copy (in the same
        training/eval mode as ``model``).
    """
    if not isinstance(model, nn.Module):
        raise BackendError(
            f"cascading_randomization needs a torch.nn.Module, got {type(model).__name__}"
        )
    working = copy.deepcopy(model)
    layers, skipped = _owners(working)
    if skipped:
        warnings.warn(
            "these modules own parameters but have no reset_parameters() and stay trained: "
            + ", ".join(skipped),
            stacklevel=2,
        )
    for index, (name, module) in enumerate(layers):
        cuda = sorted({p.device.index or 0 for p in module.parameters(recurse=False) if p.is_cuda})
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(_layer_seed(seed, index))
            module.reset_parameters()
        yield name, copy.deepcopy(working)
