"""The model registry: ``@register_model`` records a frozen :class:`ModelCfg`; ``build`` makes models.

Example:
    >>> from kerasclf.zoo import build, list_models
    >>> "simple_cnn" in list_models()
    True
    >>> model = build("simple_cnn", num_classes=10)  # doctest: +SKIP
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kerasclf.errors import ConfigError, UnknownNameError

__all__ = ["ModelCfg", "register_model", "register_alias", "build", "list_models", "get_cfg", "is_registered"]


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
# name -> (registered builder it stands for, options it fixes, its own cfg); e.g. every
# keras.applications class name is an alias of backbone_head(backbone=<name>). Not listed.
_ALIASES: dict[str, tuple[str, dict[str, Any], ModelCfg]] = {}


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


def register_alias(cfg: ModelCfg, target: str, **fixed: Any) -> None:
    """Make ``cfg.name`` a model name that builds ``target(**fixed, **options)``, described by ``cfg``.

    Aliases are buildable and have a cfg (so recipes, features and Grad-CAM work with them) but
    ``list_models`` does not list them. Used for the ``keras.applications`` class names.
    """
    if target not in _REGISTRY:
        raise KeyError(f"register_alias: '{target}' is not a registered builder")
    _ALIASES[cfg.name] = (target, dict(fixed), cfg)


def list_models(pattern: str = "*", *, include_private: bool = False) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (``"*resnet*"``)."""
    return sorted(n for n in _REGISTRY
                  if fnmatch.fnmatch(n, pattern) and (include_private or not n.startswith("_")))


def is_registered(name: str) -> bool:
    """Whether ``build(name)`` knows ``name``: a registered builder or an alias such as ``"MobileNetV2"``."""
    return name in _REGISTRY or name in _ALIASES


def get_cfg(name: str) -> ModelCfg:
    """The :class:`ModelCfg` of a model name ``build`` accepts; raises with close matches if unknown.

    Example:
        >>> cfg = get_cfg("MobileNetV2")
        >>> cfg.family, cfg.input_shape, cfg.preprocessing, cfg.backbone, cfg.pretrained
        ('transfer', (224, 224, 3), 'tf', 'backbone', True)
    """
    if name in _REGISTRY:
        return _REGISTRY[name][1]
    if name in _ALIASES:
        return _ALIASES[name][2]
    raise UnknownNameError("model", name, [*_REGISTRY, *_ALIASES], hint="run `kerasclf zoo` to list them")


def get_builder(name: str) -> Callable[..., Any]:
    """The builder function of a registered model (for an alias: the builder it stands for)."""
    get_cfg(name)
    return _REGISTRY[_ALIASES[name][0]][0] if name in _ALIASES else _REGISTRY[name][0]


def build(name: str, **kwargs: Any) -> Any:
    """Build a registered model by name; any ``keras.applications`` class name works too.

    ``build("MobileNetV2", num_classes=5)`` is ``build("backbone_head", backbone="MobileNetV2", ...)``.
    """
    fn = get_builder(name)
    if name in _ALIASES:
        fixed = _ALIASES[name][1]
        clash = sorted(set(fixed) & set(kwargs))
        if clash:
            raise ConfigError(f"model '{name}' already sets option '{clash[0]}' (={fixed[clash[0]]!r}); "
                              f"remove it, or use model '{_ALIASES[name][0]}' to choose it")
        kwargs = {**fixed, **kwargs}
    _check_options(name, fn, kwargs)
    return fn(**kwargs)


def _check_options(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Unknown builder options become a ConfigError naming them (not a Python TypeError)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # e.g. backbone_head passes the rest to keras.applications, which checks them
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(params), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; options: {', '.join(params)}"
        raise ConfigError(f"model '{name}' has no option '{unknown[0]}'{hint}")
