"""One compiled forward pass per model and per everything its trace bakes in.

A ``tf.function`` or ``jax.jit`` traces the model once per input shape. Every
explainer of a model would otherwise build its own and trace again (TensorFlow
then warns about retracing); here they share one per model and *trace key*: the
Keras backend, whether the final softmax is switched off while it runs (the
trace keeps the activation it saw), the call's keyword arguments
(``training=False``) and the ``output=`` selector.

The cache does not keep models alive: entries are found by the model's identity
(never by ``==`` or ``hash``), dropped when the model is garbage-collected, and
the compiled functions reach the model through a weak reference. A callable
``output=`` selector is kept alive by its entry (its identity is part of the
key); one that refers to the model would keep the model alive too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from groupcam_core.kit import OutputSelector

__all__ = ["selector_key", "shared_forward"]

#: ``build(model_reference) -> compiled``: makes the compiled forward of one model.
ForwardBuilder = Callable[["weakref.ReferenceType[Any]"], Callable[..., Any]]

_registry_lock = threading.Lock()
# id(model) -> (weak reference to the model, {trace key: (compiled forward, selector)})
_forwards: dict[int, tuple[Any, dict[Hashable, tuple[Callable[..., Any], Any]]]] = {}


def selector_key(selector: OutputSelector) -> Hashable:
    """What of an ``output=`` selector a trace depends on: its value, or a callable's identity."""
    if selector is None or isinstance(selector, (str, int)):
        return ("value", type(selector).__name__, selector)
    return ("identity", id(selector))


def _forget(key: int, reference: Any) -> None:
    # Runs when a model is collected, possibly while this thread holds
    # _registry_lock: no locking here; only the collected model's entry goes.
    entry = _forwards.get(key)
    if entry is not None and entry[0] is reference:
        _forwards.pop(key, None)


def shared_forward(
    model: Any, trace_key: Hashable, selector: OutputSelector, build: ForwardBuilder
) -> Callable[..., Any]:
    """The compiled forward of ``model`` for ``trace_key``, built on first use.

    Parameters
    ----------
    model
        The Keras model.
    trace_key
        Everything the compiled function bakes into its trace, hashable
        (include :func:`selector_key` of the selector).
    selector
        The ``output=`` selector the function calls; kept alive with the entry so
        that a callable's identity in the key cannot be reused by another object.
    build
        Called with a weak reference to ``model`` when no function exists yet.
    """
    identity = id(model)
    with _registry_lock:
        entry = _forwards.get(identity)
        if entry is None or entry[0]() is not model:
            reference = weakref.ref(model, lambda dead, key=identity: _forget(key, dead))
            entry = (reference, {})
            _forwards[identity] = entry
        reference, compiled_by_key = entry
        found = compiled_by_key.get(trace_key)
        if found is None:
            found = (build(reference), selector)
            compiled_by_key[trace_key] = found
        return found[0]
