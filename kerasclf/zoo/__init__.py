"""The model zoo: builders by family, a registry, and helpers that read a model's layout.

Example:
    >>> from kerasclf.zoo import build, list_models
    >>> "efficientnet_b0_head" in list_models()
    True
    >>> build("simple_cnn", num_classes=100).count_params()
    1777636
"""
from __future__ import annotations

from typing import Any

import keras

from kerasclf.zoo.registry import ModelCfg, build, get_builder, get_cfg, is_registered, list_models, register_model
from kerasclf.zoo.layers import Preprocess, image_stem
from kerasclf.zoo.heads import classifier_head, output_spec
from kerasclf.zoo.cnn import SEED_EXACT_BLOCKS, deep_cnn, simple_cnn
from kerasclf.zoo.resnet import ResidualUnit, resnet
from kerasclf.zoo.transfer import (APPLICATIONS, backbone_head, efficientnet_b0_head, is_application,
                                   resnet50_features, set_backbone_trainable, vgg16_head)
from kerasclf.zoo.autoencoder import conv_autoencoder

__all__ = [
    "ModelCfg", "build", "get_builder", "get_cfg", "is_registered", "list_models", "register_model",
    "Preprocess", "image_stem", "classifier_head", "output_spec", "simple_cnn", "deep_cnn", "SEED_EXACT_BLOCKS",
    "ResidualUnit", "resnet", "APPLICATIONS", "backbone_head", "vgg16_head", "efficientnet_b0_head",
    "resnet50_features", "set_backbone_trainable", "is_application", "conv_autoencoder",
    "input_size", "feature_model",
]


def input_size(model: Any) -> tuple[int, int]:
    """``(H, W)`` the model resizes its input to (its "resize" layer), else its fixed input size."""
    try:
        layer = model.get_layer("resize")
        return int(layer.height), int(layer.width)
    except ValueError:
        shape = model.inputs[0].shape
        if shape[1] is None or shape[2] is None:
            from kerasclf.errors import ModelError

            raise ModelError(f"model '{model.name}' has no 'resize' layer and no fixed input size; "
                             f"give the image size explicitly") from None
        return int(shape[1]), int(shape[2])


def feature_model(model: Any, layer: str = "features") -> keras.Model:
    """A model from the same input to the output of ``layer`` (default: the pooled features)."""
    try:
        out = model.get_layer(layer).output
    except ValueError:
        from kerasclf.errors import ModelError

        raise ModelError(f"model '{model.name}' has no layer '{layer}'; kerasclf models name their pooled "
                         f"features 'features'") from None
    return keras.Model(model.inputs, out, name=f"{model.name}_{layer}")
