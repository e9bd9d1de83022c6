"""The three ways into a JAX model, each a pure function that can tap any layer.

A way in answers: which variables the model reads now, how to run it as a pure
function of ``(variables, x)`` while handing chosen layers' outputs to a
callback, which layers exist, and which of them are 2-D convolutions. The
backend builds the gradient pass, the masked passes and the default layer on
top of ``run`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from typing import Any, Protocol

from groupcam_core.errors import BackendError, LayerNotFoundError
from groupcam_core.kit import unknown_layer_error

__all__ = [
    "FunctionPair",
    "LayerCallback",
    "LinenModel",
    "ModelWayIn",
    "NnxModel",
    "path_name",
]

#: Called with ``(path, module, output)`` after each tapped layer call; returns
#: the output the rest of the model sees.
LayerCallback = Callable[[str, Any, Any], Any]


def path_name(path: Sequence[Any]) -> str:
    """``("backbone", "layers", 0)`` -> ``"backbone/layers/0"``."""
    return "/".join(str(part) for part in path)


def normalize_path(target: str | Sequence[Any]) -> str:
    """A user's layer path as ``"a/b/0"``: dots and slashes both separate names."""
    if isinstance(target, str):
        return target.replace(".", "/").strip("/")
    if isinstance(target, (tuple, list)) and all(isinstance(p, (str, int)) for p in target):
        return path_name(target)
    raise BackendError(
        "target_layer must be a path such as 'backbone/stage4' (or a tuple of names), "
        f"a submodule of the model, or None; got {type(target).__name__}"
    )


class ModelWayIn(Protocol):
    """What the JAX backend needs from a model."""

    description: str

    def current_variables(self) -> tuple[Hashable, Any]:
        """``(structure key, variables)``: run's variables as they are now.

        The key changes when the model's structure does, so compiled functions
        are rebuilt; the variables are passed to them as arguments.
        """
        ...

    def run(
        self, variables: Any, x: Any, callback: LayerCallback | None, only: Collection[str] | None
    ) -> Any:
        """The model's raw output; tapped layers go through ``callback``.

        With ``callback=None`` nothing is tapped. With ``only=None`` every layer
        is tapped, else only the layers whose paths are in ``only``.
        """
        ...

    def is_convolution(self, module: Any) -> bool:
        """Whether a tapped module is a 2-D convolution."""
        ...

    def resolve(self, target: Any, layout: str) -> str:
        """The path of a layer given by the user (a path or, where possible, an object).

        Raises :class:`~groupcam_core.LayerNotFoundError` for a layer the model
        does not have, when that can be known before the model runs.
        """
        ...

    def lock_key(self) -> Any:
        """The object whose lock serializes explanations (the user's model)."""
        ...

    def known_paths(self) -> list[str]:
        """Layer paths known without running the model (for error messages)."""
        ...


#: ``params`` of a :class:`FunctionPair` whose functions take none.
NO_PARAMS: Any = None


class FunctionPair:
    """``head_fn(features_fn(x))``: any JAX model split in two at the target layer.

    With ``params`` (any pytree of arrays), the functional form:
    ``head_fn(params, features_fn(params, x))``, the params passed to the compiled
    passes at every call, so that a change (``cam.params = new``) is seen. Without,
    the functions close over their arrays, which are baked in when they are first
    traced: later changes to those arrays are not seen by this explainer.
    """

    layer = "features"

    def __init__(
        self,
        features_fn: Callable[..., Any],
        head_fn: Callable[..., Any],
        params: Any = NO_PARAMS,
    ) -> None:
        for name, fn in (("features_fn", features_fn), ("head_fn", head_fn)):
            if not callable(fn):
                raise BackendError(f"{name} must be callable, got {type(fn).__name__}")
        self.features_fn = features_fn
        self.head_fn = head_fn
        self.params = params
        self.description = f"{_name(features_fn)} -> {_name(head_fn)}"

    @property
    def functional(self) -> bool:
        """Whether the functions take ``params`` first."""
        return self.params is not NO_PARAMS

    def current_variables(self) -> tuple[Hashable, Any]:
        return (), (self.params if self.functional else ())

    def run(
        self, variables: Any, x: Any, callback: LayerCallback | None, only: Collection[str] | None
    ) -> Any:
        features = self.features_fn(variables, x) if self.functional else self.features_fn(x)
        if callback is not None:
            features = callback(self.layer, None, features)
        return self.head_fn(variables, features) if self.functional else self.head_fn(features)

    def is_convolution(self, module: Any) -> bool:
        return True  # the split point is the layer to explain

    def lock_key(self) -> Any:
        return self.features_fn

    def resolve(self, target: Any, layout: str) -> str:
        if target is None or normalize_path(target) == self.layer:
            return self.layer
        raise BackendError(
            "GroupCAM(features_fn, head_fn) explains the output of features_fn; "
            "leave target_layer out"
        )

    def known_paths(self) -> list[str]:
        return [self.layer]


class LinenModel:
    """An unmodified ``flax.linen`` module with its variables.

    Layers are tapped with ``flax.linen.intercept_methods`` on ``__call__``;
    every ``BatchNorm`` is called with ``use_running_average=True`` and every
    ``Dropout`` with ``deterministic=True``, whatever the module passes.
    """

    def __init__(
        self,
        module: Any,
        variables: Any,
        method: str | Callable[..., Any] | None,
        apply_kwargs: dict[str, Any] | None,
    ) -> None:
        from flax import linen

        if not isinstance(module, linen.Module):
            raise BackendError(
                f"GroupCAM.from_linen needs a flax.linen.Module, got {type(module).__name__}"
            )
        if not hasattr(variables, "keys") or "params" not in variables:
            raise BackendError(
                "GroupCAM.from_linen needs the module's variables, a mapping with a 'params' "
                "collection (what module.init returns)"
            )
        self.linen = linen
        self.module = module
        self.variables = variables
        self.method = method
        self.apply_kwargs = dict(apply_kwargs or {})
        self.description = type(module).__name__

    def current_variables(self) -> tuple[Hashable, Any]:
        return (), self.variables

    def run(
        self, variables: Any, x: Any, callback: LayerCallback | None, only: Collection[str] | None
    ) -> Any:
        linen = self.linen

        def interceptor(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs)
            module = context.module
            if isinstance(module, linen.BatchNorm):
                output = _call_in_inference_mode(
                    module, "use_running_average", next_fun, args, kwargs
                )
            elif isinstance(module, linen.Dropout):
                output = _call_in_inference_mode(module, "deterministic", next_fun, args, kwargs)
            else:
                output = next_fun(*args, **kwargs)
            if callback is not None and module.path:
                path = path_name(module.path)
                if only is None or path in only:
                    output = callback(path, module, output)
            return output

        with linen.intercept_methods(interceptor):
            return self.module.apply(variables, x, method=self.method, **self.apply_kwargs)

    def is_convolution(self, module: Any) -> bool:
        return isinstance(module, self.linen.Conv)

    def lock_key(self) -> Any:
        return self.module

    def resolve(self, target: Any, layout: str) -> str:
        path = normalize_path(target)
        known = self.known_paths()
        if path in known:
            return path
        # Not in the variables tree: a submodule without parameters, or a typo. An
        # abstract trace on a probe input lists every submodule that runs.
        traced = self._trace_paths(layout)
        if traced is not None and path not in traced:
            raise unknown_layer_error(path, [*traced, *known])
        return path

    def _trace_paths(self, layout: str) -> list[str] | None:
        """Paths of the submodules that run on a 224 x 224 probe, or None if it fails."""
        import jax
        import jax.numpy as jnp

        channels = _first_kernel_channels(self.variables.get("params", {}))
        if channels is None:
            return None
        shape = (1, 224, 224, channels) if layout == "channels_last" else (1, channels, 224, 224)
        seen: list[str] = []

        def record(path: str, module: Any, output: Any) -> Any:
            seen.append(path)
            return output

        try:
            jax.eval_shape(
                lambda v: self.run(v, jnp.zeros(shape, jnp.float32), record, None), self.variables
            )
        except Exception:  # the probe does not fit the model: the first call will tell
            return None
        return list(dict.fromkeys(seen))

    def known_paths(self) -> list[str]:
        paths: list[str] = []
        for collection in self.variables.values():
            _collect_paths(collection, (), paths)
        return paths


class NnxModel:
    """A ``flax.nnx`` module. Each pass runs on a private copy (``nnx.merge``) put
    in evaluation mode, so the user's module, its flags and its state are never
    touched. Layers are tapped by giving the copy's modules a subclass whose
    ``__call__`` passes the output on.
    """

    def __init__(self, model: Any) -> None:
        from flax import nnx

        if not isinstance(model, nnx.Module):
            raise BackendError(
                f"GroupCAM.from_nnx needs a flax.nnx.Module, got {type(model).__name__}"
            )
        self.nnx = nnx
        self.model = model
        self.description = type(model).__name__
        self.graphdef: Any = None

    def _modules(self, model: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
        # nnx.iter_modules(m) replaced the m.iter_modules() method in newer Flax.
        iterate = getattr(self.nnx, "iter_modules", None)
        return iterate(model) if iterate is not None else model.iter_modules()

    def current_variables(self) -> tuple[Hashable, Any]:
        self.graphdef, state = self.nnx.split(self.model)
        return self.graphdef, state

    def run(
        self, variables: Any, x: Any, callback: LayerCallback | None, only: Collection[str] | None
    ) -> Any:
        copy = self.nnx.merge(self.graphdef, variables)
        copy.eval()
        if callback is not None:
            for path, module in self._modules(copy):
                name = path_name(path)
                if path and (only is None or name in only):
                    _tap_calls(module, name, callback)
        return copy(x)

    def is_convolution(self, module: Any) -> bool:
        return isinstance(module, self.nnx.Conv)

    def lock_key(self) -> Any:
        return self.model

    def resolve(self, target: Any, layout: str) -> str:
        if isinstance(target, self.nnx.Module):
            for path, module in self._modules(self.model):
                if module is target and path:
                    return path_name(path)
            raise LayerNotFoundError(
                f"the given {type(target).__name__} module is not a submodule of the model"
            )
        path = normalize_path(target)
        known = self.known_paths()
        if path not in known:
            raise unknown_layer_error(path, known)
        return path

    def known_paths(self) -> list[str]:
        return [path_name(p) for p, _ in self._modules(self.model) if p]


def _tap_calls(module: Any, name: str, callback: LayerCallback) -> None:
    """Route one module object's calls through ``callback`` (on a private copy only)."""
    cls = type(module)

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        return callback(name, self, cls.__call__(self, *args, **kwargs))

    module.__class__ = type(cls.__name__, (cls,), {"__call__": __call__})


def _call_in_inference_mode(
    module: Any, flag: str, next_fun: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call a linen BatchNorm or Dropout with ``flag=True``, wherever the flag is set.

    linen takes the flag either as a field or as the call's second argument,
    never both. A field is switched for this call only, on the bound copy that
    ``apply`` made (never on the user's module definition).
    """
    if getattr(module, flag) is None:
        if len(args) > 1:
            args = (args[0], True, *args[2:])
        else:
            kwargs = {**kwargs, flag: True}
        return next_fun(*args, **kwargs)
    before = getattr(module, flag)
    object.__setattr__(module, flag, True)
    try:
        return next_fun(*args, **kwargs)
    finally:
        object.__setattr__(module, flag, before)


def _collect_paths(tree: Any, prefix: tuple[str, ...], paths: list[str]) -> None:
    if not hasattr(tree, "items"):
        return
    for key, value in tree.items():
        if hasattr(value, "items"):
            path = (*prefix, str(key))
            paths.append(path_name(path))
            _collect_paths(value, path, paths)


def _first_kernel_channels(tree: Any) -> int | None:
    """Input channels of the first 4-D ``kernel`` (HWIO) in a linen params tree."""
    if not hasattr(tree, "items"):
        return None
    for key, value in tree.items():
        if key == "kernel" and getattr(value, "ndim", 0) == 4:
            return int(value.shape[2])
        found = _first_kernel_channels(value)
        if found is not None:
            return found
    return None


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__
