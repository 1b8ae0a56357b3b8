"""The model registry: ``@register_model`` records a frozen :class:`ModelCfg`; ``build`` makes models.

Example:
    >>> from kerasclf.zoo import build, list_models
    >>> "simple_cnn" in list_models()
    True
    >>> model = build("simple_cnn", num_classes=10)  # doctest: +SKIP
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kerasclf.errors import UnknownNameError

__all__ = ["ModelCfg", "register_model", "build", "list_models", "get_cfg", "is_registered"]


@dataclass(frozen=True)
class ModelCfg:
    """What the rest of kerasclf needs to know about a registered model.

    Attributes:
        name: registry name (``simple_cnn``).
        family: ``cnn`` | ``resnet`` | ``transfer`` | ``autoencoder`` ...
        input_shape: default input shape (H, W, C) the model resizes to.
        preprocessing: what the model does inside to raw 0..255 RGB: ``scale01`` (x/255),
            ``caffe`` / ``tf`` / ``torch`` (ImageNet modes), ``builtin`` (the backbone's own).
        backbone: name of the nested backbone layer (transfer models), else ``None``.
        gradcam_layer: name of the conv layer Grad-CAM should use (``None``: last conv found).
        feature_layer: name of the layer whose output are the pooled features before the head.
        pretrained: whether ``weights="imagenet"`` is meaningful for this builder.
        description: one line for ``kerasclf zoo``.
    """

    name: str
    family: str
    input_shape: tuple[int, int, int]
    preprocessing: str = "scale01"
    backbone: str | None = None
    gradcam_layer: str | None = None
    feature_layer: str | None = "features"
    pretrained: bool = False
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


_REGISTRY: dict[str, tuple[Callable[..., Any], ModelCfg]] = {}


def register_model(*, family: str, input_shape: tuple[int, int, int], name: str | None = None,
                   **cfg: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a builder ``fn(num_classes, *, input_shape=None, **options) -> Model``.

    Example:
        >>> @register_model(family="cnn", input_shape=(32, 32, 3), name="_doc_tiny")
        ... def _doc_tiny(num_classes=2, *, input_shape=None):
        ...     ...
        >>> get_cfg("_doc_tiny").family
        'cnn'
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        doc = (fn.__doc__ or "").strip().splitlines()
        model_cfg = ModelCfg(name=key, family=family, input_shape=tuple(input_shape),
                             description=cfg.pop("description", doc[0] if doc else ""), **cfg)
        _REGISTRY[key] = (fn, model_cfg)
        fn.cfg = model_cfg  # type: ignore[attr-defined]
        return fn

    return wrap


def _ensure_loaded() -> None:
    # Importing the package imports every family module, which registers its builders.
    import kerasclf.zoo  # noqa: F401


def list_models(pattern: str = "*", *, include_private: bool = False) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (``"*resnet*"``)."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY
                  if fnmatch.fnmatch(n, pattern) and (include_private or not n.startswith("_")))


def is_registered(name: str) -> bool:
    _ensure_loaded()
    return name in _REGISTRY


def get_cfg(name: str) -> ModelCfg:
    """The :class:`ModelCfg` of a registered model; raises with close matches if unknown."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownNameError("model", name, _REGISTRY, hint="run `kerasclf zoo` to list them")
    return _REGISTRY[name][1]


def get_builder(name: str) -> Callable[..., Any]:
    get_cfg(name)
    return _REGISTRY[name][0]


def build(name: str, **kwargs: Any) -> Any:
    """Build a registered model by name; any ``keras.applications`` class name works too.

    ``build("MobileNetV2", num_classes=5)`` is ``build("backbone_head", backbone="MobileNetV2", ...)``.
    """
    _ensure_loaded()
    if name not in _REGISTRY:
        from kerasclf.zoo.transfer import is_application  # lazy: avoids a cycle

        if is_application(name):
            return _REGISTRY["backbone_head"][0](backbone=name, **kwargs)
    fn = get_builder(name)
    _check_options(name, fn, kwargs)
    return fn(**kwargs)


def _check_options(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Unknown builder options become a ConfigError naming them (not a Python TypeError)."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # e.g. backbone_head passes the rest to keras.applications, which checks them
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        import difflib

        from kerasclf.errors import ConfigError

        close = difflib.get_close_matches(unknown[0], list(params), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; options: {', '.join(params)}"
        raise ConfigError(f"model '{name}' has no option '{unknown[0]}'{hint}")
