"""A convolutional autoencoder for unsupervised features (the seed's first clustering phase).

The model maps raw 0..255 RGB to a reconstruction in 0..1 (sigmoid); train it against the
image scaled to 0..1 (``kerasclf train`` does this for the ``autoencoder`` family). Its
sub-models are reachable: ``model.get_layer("encoder")`` (image → latent vector, whose output
layer is "features") and ``model.get_layer("decoder")``.

Example:
    >>> m = conv_autoencoder(input_shape=(32, 32, 3), latent_dim=16)
    >>> m.get_layer("encoder").output_shape
    (None, 16)
"""
from __future__ import annotations

from collections.abc import Sequence

import keras

from kerasclf.errors import ConfigError
from kerasclf.zoo.layers import image_stem
from kerasclf.zoo.registry import register_model

__all__ = ["conv_autoencoder"]


@register_model(family="autoencoder", input_shape=(64, 64, 3), preprocessing="scale01",
                feature_layer="encoder", gradcam_layer=None)
def conv_autoencoder(num_classes: int | None = None, *, input_shape: tuple[int, int, int] | None = None,
                     task: str = "auto", latent_dim: int = 64,
                     filters: Sequence[int] = (32, 64, 128)) -> keras.Model:
    """Conv encoder (stride-2 convs → Dense latent "features") and a mirrored transposed-conv
    decoder. Input size must be divisible by ``2 ** len(filters)``; ``num_classes`` is ignored."""
    h, w, c = (int(v) for v in (input_shape or (64, 64, 3)))
    factor = 2 ** len(filters)
    if h % factor or w % factor:
        raise ConfigError(f"conv_autoencoder: input {h}x{w} must be divisible by {factor} "
                          f"(2 ** len(filters)); pick e.g. {h // factor * factor or factor}x{w // factor * factor or factor}")
    enc_in = keras.Input((h, w, c), name="scaled_image")
    x = enc_in
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"enc_conv{i + 1}")(x)
    x = keras.layers.Flatten()(x)
    latent = keras.layers.Dense(latent_dim, name="features")(x)
    encoder = keras.Model(enc_in, latent, name="encoder")

    dec_in = keras.Input((latent_dim,), name="latent")
    gh, gw = h // factor, w // factor
    y = keras.layers.Dense(gh * gw * filters[-1], activation="relu")(dec_in)
    y = keras.layers.Reshape((gh, gw, filters[-1]))(y)
    for i, f in enumerate(reversed(filters)):
        y = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"dec_conv{i + 1}")(y)
    recon = keras.layers.Conv2D(c, 3, padding="same", activation="sigmoid", dtype="float32", name="reconstruction")(y)
    decoder = keras.Model(dec_in, recon, name="decoder")

    inputs, x = image_stem((h, w, c), "scale01")
    outputs = decoder(encoder(x))
    return keras.Model(inputs, outputs, name="conv_autoencoder")
