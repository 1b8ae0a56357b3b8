"""The cached frozen stage: while the backbone is frozen only the head learns, so stage 1 runs the
backbone once per image (or once per augmented view) and trains the head on the pooled features.

The head model built here shares its layers with the full model, so training it trains the full
model's head: the saved model is still the one Keras model.

Example:
    >>> head = head_model(model)                    # doctest: +SKIP
    >>> x, y = cached_features(model, data.datasets["val"])  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kerasclf.data._seeds import derive_seed
from kerasclf.data.pipeline import Passes
from kerasclf.zoo.cut import feature_model

__all__ = ["FEATURES", "head_model", "can_cache", "cached_features", "feature_passes"]

#: the pooling layer every zoo head starts with (zoo/heads.py)
FEATURES = "features"


def head_model(model: keras.Model) -> keras.Model | None:
    """``model``'s layers after ``features`` applied to a features input, or ``None`` when the model has
    no ``features`` layer or what follows it is not a plain chain of single-input layers."""
    names = [layer.name for layer in model.layers]
    if FEATURES not in names:
        return None
    after = model.layers[names.index(FEATURES) + 1:]
    prev = FEATURES
    for layer in after:  # each layer reads the one before it (its first call: the one in ``model``)
        nodes = getattr(layer, "_inbound_nodes", [])
        if not nodes or _parents(nodes[0]) != [prev]:
            return None
        prev = layer.name
    if not after:
        return None
    x = inputs = keras.Input(model.get_layer(FEATURES).output.shape[1:], name="cached_features")
    for layer in after:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def _parents(node: Any) -> list[str]:
    return [t._keras_history.operation.name for t in getattr(node, "input_tensors", [])]


def can_cache(model: keras.Model) -> bool:
    """Whether every trainable weight of ``model`` lies after its ``features`` layer (the backbone is
    frozen), so that stage 1 can train on cached features.

    Example:
        >>> m = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.GlobalAveragePooling2D(name="features"),
        ...                       keras.layers.Dense(3, name="predictions")])
        >>> can_cache(m)
        True
    """
    head = head_model(model)
    if head is None or not model.trainable_weights:
        return False
    return {id(w) for w in model.trainable_weights} == {id(w) for w in head.trainable_weights}


def cached_features(model: keras.Model, views: list[Any], *,
                    cut: keras.Model | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features and labels of every batch of each dataset in ``views`` (e.g. training passes
    0, 1, ...: with augmentation each is another view), stacked: ``(V, N, D)`` and ``(V, N, ...)``.
    Pass the same ``cut`` (``feature_model(model, FEATURES)``) for several splits: its compiled
    predict step is traced once instead of once per split."""
    cut = cut or feature_model(model, FEATURES)
    xs, ys = [], []
    for ds in views:
        fx, fy = [], []
        for images, labels in ds:
            fx.append(np.asarray(cut.predict_on_batch(images), dtype="float32"))
            fy.append(np.asarray(labels))
        xs.append(np.concatenate(fx))
        ys.append(np.concatenate(fy))
    return np.stack(xs), np.stack(ys)


def feature_passes(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                   seed: int = 0) -> Any:
    """Cached views ``(V, N, D)`` as :class:`~kerasclf.data.pipeline.Passes`: pass (epoch) ``e`` reads
    view ``e % V`` in an order fixed by ``(seed, e)`` when ``shuffle`` (so a resumed run sees the same
    batches), else in stored order."""
    import tensorflow as tf  # tf.data: TensorFlow only (cached stages run on TensorFlow)

    views, n = x.shape[0], x.shape[1]
    fx, fy = tf.constant(x), tf.constant(y)

    def one(epoch: Any) -> Any:  # pass `epoch`: view epoch % V in an order fixed by (seed, epoch)
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=derive_seed(seed, epoch))
        view = epoch % views
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(
            lambda i: (tf.gather(fx[view], i), tf.gather(fy[view], i)))

    return Passes(one, n, batch_size)
