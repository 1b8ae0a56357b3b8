"""From-scratch CNNs of the CIFAR-100 seed: ``simple_cnn`` and ``deep_cnn``.

Example:
    >>> from kerasclf.zoo import simple_cnn
    >>> simple_cnn(100).count_params()
    1777636
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

from kerasclf.errors import ConfigError
from kerasclf.zoo.heads import classifier_head
from kerasclf.zoo.layers import image_stem
from kerasclf.zoo.registry import register_model

__all__ = ["simple_cnn", "deep_cnn", "SEED_EXACT_BLOCKS", "SIMPLE_CNN_MIN_SIZE"]

#: the smallest height/width simple_cnn accepts: 3x3 valid conv, conv + pool, conv + pool, conv
SIMPLE_CNN_MIN_SIZE = 20

# 12 convs whose totals equal the seed's deep net exactly (15,047,588 / 15,038,116 / 9,472)
# with deep_cnn's head; found by search, see deep_cnn and docs/models.md.
SEED_EXACT_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 384, 384), (384, 384, 384), (512, 512, 512, 512))


@register_model(family="cnn", input_shape=(32, 32, 3), preprocessing="scale01", gradcam_layer="conv4")
def simple_cnn(num_classes: int = 100, *, input_shape: tuple[int, int, int] | None = None,
               task: str = "auto", dropout: float = 0.25, bn_momentum: float = 0.9) -> keras.Model:
    """The seed's simple CIFAR-100 net: 4 conv + 3 dense, 1,777,636 params at 100 classes.

    Conv 64/128/256/512 (3×3, valid, ReLU) with dropout, batch norm and max-pooling, global
    average pooling, Dense 256, Dense 256, softmax. 1,775,716 trainable; the 1,920 others are
    the batch-norm moving statistics. ``bn_momentum`` is 0.9 rather than Keras's 0.99 so the
    moving statistics catch up within a few epochs on small datasets (with 0.99 the validation
    accuracy of the digits demo sat near 0.3 after 5 epochs while training accuracy was 0.97).

    Example:
        >>> m = simple_cnn(10)
        >>> m.output_shape
        (None, 10)
    """
    shape = input_shape or (32, 32, 3)
    if min(shape[:2]) < SIMPLE_CNN_MIN_SIZE:  # its four valid 3x3 convs and two pools leave nothing below 20 px
        raise ConfigError(f"simple_cnn: input {shape[0]}x{shape[1]} is too small (its valid convolutions need at "
                          f"least {SIMPLE_CNN_MIN_SIZE}x{SIMPLE_CNN_MIN_SIZE}); set data.image_size to "
                          f"[{SIMPLE_CNN_MIN_SIZE}, {SIMPLE_CNN_MIN_SIZE}] or more, or use resnet")
    inputs, x = image_stem(shape)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
    for i, filters in enumerate((128, 256), start=2):
        x = keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
    x = keras.layers.Conv2D(512, 3, activation="relu", name="conv4")(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = classifier_head(x, num_classes, task, pooling=None, hidden=[256, 256])
    return keras.Model(inputs, outputs, name="simple_cnn")


@register_model(family="cnn", input_shape=(32, 32, 3), preprocessing="scale01", gradcam_layer="block4_conv3")
def deep_cnn(num_classes: int = 100, *, input_shape: tuple[int, int, int] | None = None, task: str = "auto",
             l2: float = 5e-4, dropout: float = 0.3, dense: int = 512,
             blocks: Sequence[int | Sequence[int]] = (128, 256, 512, 512), convs_per_block: int = 3,
             bn_momentum: float = 0.9) -> keras.Model:
    """The seed's deep CIFAR-100 net: 12 conv layers in VGG-style blocks + 2 dense, BN, L2.

    Four blocks of three 3×3 convolutions (128, 256, 512, 512 filters) each followed by batch
    norm and ReLU, max-pooling and dropout after each block, global average pooling, Dense 512
    with L2 and batch norm, softmax with L2. At 100 classes: 15,086,180 params, 15,076,708
    trainable, 9,472 non-trainable — the seed reports 15,047,588 / 15,038,116 / 9,472 without
    its layer table; the batch-norm count matches exactly and the total is within 0.26%.

    ``blocks`` items are a width (repeated ``convs_per_block`` times) or a tuple of per-conv
    widths. A search over 12-conv layouts (widths 32…1024, 2–6 blocks, GAP or Flatten, hidden
    Dense solved for) found one layout with the same Dense 512 head that gives all three seed
    figures exactly, :data:`SEED_EXACT_BLOCKS` (64, 64 | 128, 384, 384 | 384 × 3 | 512 × 4).
    Its 384-wide convs are not a VGG pattern, so it is an option, not the default.

    Example:
        >>> deep_cnn(100).count_params()
        15086180
        >>> deep_cnn(100, blocks=SEED_EXACT_BLOCKS).count_params()
        15047588
    """
    reg = keras.regularizers.L2(l2) if l2 else None
    inputs, x = image_stem(input_shape or (32, 32, 3))
    for b, widths in enumerate(blocks, start=1):
        widths = (widths,) * convs_per_block if isinstance(widths, int) else tuple(widths)
        for c, filters in enumerate(widths, start=1):
            x = keras.layers.Conv2D(int(filters), 3, padding="same", name=f"block{b}_conv{c}")(x)
            x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{b}_pool")(x)
        x = keras.layers.Dropout(dropout)(x)
    outputs = classifier_head(x, num_classes, task, pooling="avg", hidden=[dense], hidden_batch_norm=bn_momentum,
                              hidden_dropout=0.5, kernel_regularizer=reg, output_regularizer=reg)
    return keras.Model(inputs, outputs, name="deep_cnn")
