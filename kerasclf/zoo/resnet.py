"""``ResidualUnit`` (a serialisable Keras layer) and a ResNet-18/34-style ``resnet`` built from it.

Example:
    >>> unit = ResidualUnit(64, strides=2)
    >>> ResidualUnit.from_config(unit.get_config()).strides
    2
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kerasclf.errors import ConfigError
from kerasclf.zoo.heads import classifier_head
from kerasclf.zoo.layers import image_stem
from kerasclf.zoo.registry import register_model

__all__ = ["ResidualUnit", "resnet"]


@keras.saving.register_keras_serializable(package="kerasclf")
class ResidualUnit(keras.layers.Layer):
    """Two 3×3 convolutions with batch norm and a skip connection (1×1 projection when the
    stride or the channel count changes), as in the CelebA seed's ResNet.

    ``get_config`` returns the constructor arguments only (``filters``, ``strides``,
    ``activation``); the sub-layers are rebuilt from them, so a saved model reloads without
    ``custom_objects`` once ``kerasclf.zoo`` is imported.
    """

    def __init__(self, filters: int, strides: int = 1, activation: str = "relu", bn_momentum: float = 0.99,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.bn_momentum = float(bn_momentum)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation if isinstance(activation, str) else keras.activations.serialize(activation)
        # sub-layers share this layer's dtype policy (mixed precision survives a reload)
        dt = self.dtype_policy
        self.main_layers = [
            keras.layers.Conv2D(self.filters, 3, strides=self.strides, padding="same", use_bias=False, dtype=dt),
            keras.layers.BatchNormalization(momentum=self.bn_momentum, dtype=dt),
            keras.layers.Activation(self.activation, dtype=dt),
            keras.layers.Conv2D(self.filters, 3, strides=1, padding="same", use_bias=False, dtype=dt),
            keras.layers.BatchNormalization(momentum=self.bn_momentum, dtype=dt),
        ]
        self.skip_layers: list[Any] = []

    def build(self, input_shape: Any) -> None:
        channels = input_shape[-1]
        if self.strides > 1 or channels != self.filters:
            # strides 1 on the strided input (see call): the same weights and outputs as a 1x1
            # stride-s conv, whose oneDNN weight gradient in TF 2.21 corrupts the heap (the process
            # aborts) on any odd batch size, e.g. an epoch's last partial batch
            self.skip_layers = [
                keras.layers.Conv2D(self.filters, 1, strides=1, padding="same", use_bias=False,
                                    dtype=self.dtype_policy),
                keras.layers.BatchNormalization(momentum=self.bn_momentum, dtype=self.dtype_policy),
            ]
        shape = input_shape
        for layer in self.main_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        shape = input_shape
        if self.skip_layers and self.strides > 1:
            shape = (*shape[:1], *(None if d is None else -(-d // self.strides) for d in shape[1:3]), shape[3])
        for layer in self.skip_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs: Any) -> Any:
        # No explicit `training` argument: Keras passes the outer call's mode to the batch-norm
        # sub-layers through its call context (an explicit None made exported models use
        # batch statistics).
        x = inputs
        for layer in self.main_layers:
            x = layer(x)
        skip = inputs
        if self.skip_layers and self.strides > 1:  # a 1x1 "same" conv of stride s reads every s-th pixel
            skip = skip[:, ::self.strides, ::self.strides, :]
        for layer in self.skip_layers:
            skip = layer(skip)
        return self.activation(x + skip)

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = input_shape
        for layer in self.main_layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "activation": self._activation_name, "bn_momentum": self.bn_momentum}


@register_model(family="resnet", input_shape=(64, 64, 3), preprocessing="scale01", gradcam_layer=None)
def resnet(num_classes: int = 10, *, input_shape: tuple[int, int, int] | None = None, task: str = "auto",
           stages: Sequence[int] = (64, 128, 256, 512), units_per_stage: Sequence[int] = (2, 2, 2, 2),
           stem_filters: int | None = None, dropout: float = 0.0, bn_momentum: float = 0.9) -> keras.Model:
    """A ResNet of :class:`ResidualUnit` blocks (ResNet-18 layout by default; 34: ``(3, 4, 6, 3)``).

    Stem conv 7×7/2 + max-pool (3×3 conv, no pool, for inputs under 64 px), then stages of
    units (the first unit of each later stage downsamples), global average pooling, head.

    Example:
        >>> m = resnet(5, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 1))
        >>> m.output_shape
        (None, 5)
    """
    if len(stages) != len(units_per_stage):
        raise ConfigError(f"resnet: stages {tuple(stages)} and units_per_stage {tuple(units_per_stage)} "
                          f"must have the same length")
    shape = input_shape or (64, 64, 3)
    inputs, x = image_stem(shape)
    stem = stem_filters or stages[0]
    if min(shape[:2]) >= 64:
        x = keras.layers.Conv2D(stem, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    else:
        x = keras.layers.Conv2D(stem, 3, padding="same", use_bias=False, name="stem_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
        x = keras.layers.Activation("relu")(x)
    for s, (filters, units) in enumerate(zip(stages, units_per_stage)):
        for u in range(units):
            strides = 2 if (u == 0 and s > 0) else 1
            x = ResidualUnit(filters, strides=strides, bn_momentum=bn_momentum, name=f"stage{s + 1}_unit{u + 1}")(x)
    outputs = classifier_head(x, num_classes, task, pooling="avg", dropout=dropout)
    return keras.Model(inputs, outputs, name="resnet")
