"""The model zoo: builders by family, a registry, and :mod:`~kerasclf.zoo.cut` (a model's input size and features).

Example:
    >>> from kerasclf.zoo import build, list_models
    >>> "efficientnet_b0_head" in list_models()
    True
    >>> build("simple_cnn", num_classes=100).count_params()
    1777636
"""
from __future__ import annotations

from kerasclf.zoo.registry import ModelCfg, build, get_builder, get_cfg, is_registered, list_models, register_model
from kerasclf.zoo.layers import Preprocess, image_stem
from kerasclf.zoo.heads import classifier_head, output_spec
from kerasclf.zoo.cnn import SEED_EXACT_BLOCKS, deep_cnn, simple_cnn
from kerasclf.zoo.resnet import ResidualUnit, resnet
from kerasclf.zoo.transfer import (APPLICATIONS, backbone_head, efficientnet_b0_head, efficientnet_lite0,
                                   efficientnet_lite1, efficientnet_lite2, is_application, is_backbone,
                                   resnet50_features, set_backbone_trainable, vgg16_head)
from kerasclf.zoo.autoencoder import conv_autoencoder
from kerasclf.zoo.cut import feature_layer_for, feature_model, fixed_input, input_size

__all__ = [
    "ModelCfg", "build", "get_builder", "get_cfg", "is_registered", "list_models", "register_model",
    "Preprocess", "image_stem", "classifier_head", "output_spec", "simple_cnn", "deep_cnn", "SEED_EXACT_BLOCKS",
    "ResidualUnit", "resnet", "APPLICATIONS", "backbone_head", "vgg16_head", "efficientnet_b0_head",
    "resnet50_features", "set_backbone_trainable", "is_application", "is_backbone", "conv_autoencoder",
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
    "input_size", "fixed_input", "feature_model", "feature_layer_for",
]
