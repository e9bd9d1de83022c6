"""One re-entrant lock per model object, shared by every explainer of that model.

An explanation changes a model for its duration (evaluation mode, a forward hook,
a patched layer call, a softmax switched off) and puts it back afterwards. Two
threads doing that at once on one model would undo each other's changes, so
every explainer holds its model's lock for the whole call. Locks are found by
the model's identity (never by ``==`` or ``hash``, which some model classes
override) and forgotten when the model is garbage-collected.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["model_lock"]

_registry_lock = threading.Lock()
_locks: dict[int, tuple[Any, threading.RLock]] = {}


def _forget(key: int, reference: Any) -> None:
    # Runs when a model is collected, possibly while this thread holds
    # _registry_lock: no locking here (dict operations are atomic), and only
    # the entry of the collected model is removed.
    entry = _locks.get(key)
    if entry is not None and entry[0] is reference:
        _locks.pop(key, None)


def model_lock(model: Any) -> threading.RLock:
    """The lock shared by every explanation of ``model``.

    Parameters
    ----------
    model
        Any object. An object that cannot be weakly referenced keeps its lock
        for the life of the process (and is kept alive by it).

    Returns
    -------
    threading.RLock
        Re-entrant, so a metric that explains inside an explanation's lock does
        not deadlock in the same thread.
    """
    key = id(model)
    with _registry_lock:
        entry = _locks.get(key)
        if entry is not None:
            reference, lock = entry
            if reference() is model:
                return lock
        lock = threading.RLock()
        try:
            reference = weakref.ref(model, lambda dead, key=key: _forget(key, dead))
        except TypeError:
            strong = model
            reference = lambda: strong  # noqa: E731 - kept alive for the process's life
        _locks[key] = (reference, lock)
        return lock
