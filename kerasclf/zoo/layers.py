"""Serialisable layers that put preprocessing inside the model.

Example:
    >>> import numpy as np
    >>> layer = Preprocess("tf")
    >>> float(np.asarray(layer(np.full((1, 2, 2, 3), 255.0, "float32")))[0, 0, 0, 0])
    1.0
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops
from keras.src.applications import imagenet_utils

from kerasclf.errors import ConfigError

__all__ = ["Preprocess", "PREPROCESS_MODES", "image_stem", "FlipLeftRight"]

PREPROCESS_MODES = ("scale01", "caffe", "tf", "torch", "lite", "none")


@keras.saving.register_keras_serializable(package="kerasclf")
class Preprocess(keras.layers.Layer):
    """Raw RGB 0..255 → what a network expects, with keras.applications' own definitions.

    Modes: ``scale01`` (x/255), ``tf`` (x/127.5 − 1), ``caffe`` (RGB→BGR minus the ImageNet
    mean), ``torch`` ((x/255 − mean)/std), ``lite`` ((x − 127)/128, EfficientNet-Lite's), ``none``
    (identity, for backbones that preprocess themselves such as EfficientNet). Written with ``keras.ops``, so it runs on every backend.
    """

    def __init__(self, mode: str = "scale01", **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ConfigError(f"preprocessing mode '{mode}' is not one of {', '.join(PREPROCESS_MODES)}")
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "none":
            return x
        if self.mode == "scale01":
            return x / 255.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=self.mode)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


#: test-time views a model can be averaged over (``kerasclf.export.compose.tta_model``, ``train.tta``)
TTA_VIEWS = ("flip",)


@keras.saving.register_keras_serializable(package="kerasclf")
class FlipLeftRight(keras.layers.Layer):
    """Mirror images left-right, always (a test-time view; ``RandomFlip`` is for training).

    Example:
        >>> import numpy as np
        >>> np.asarray(FlipLeftRight()(np.arange(3, dtype="float32").reshape(1, 1, 3, 1))).ravel().tolist()
        [2.0, 1.0, 0.0]
    """

    def call(self, inputs: Any) -> Any:
        return ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def image_stem(input_shape: tuple[int, int, int], preprocessing: str = "scale01") -> tuple[Any, Any]:
    """``(inputs, x)``: an input of any height/width, resized to ``input_shape`` ("resize") and
    preprocessed ("preprocess"); every zoo model starts with it.

    Example:
        >>> inputs, x = image_stem((32, 32, 3))
        >>> tuple(x.shape)
        (None, 32, 32, 3)
    """
    h, w, c = (int(v) for v in input_shape)
    inputs = keras.Input((None, None, c), name="image")
    x = keras.layers.Resizing(h, w, name="resize")(inputs)
    x = Preprocess(preprocessing, name="preprocess")(x)
    return inputs, x
