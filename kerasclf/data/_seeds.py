"""Stateless random keys: a seed and a path of integers (a pass, a batch, a draw) -> a seed of TensorFlow's
stateless random ops, the same whenever the path is, with nothing carried from one call to the next.

The training pipeline keys each pass's shuffle and each batch's augmentation this way
(:mod:`kerasclf.data.pipeline`), so any pass can be made without making those before it.

Example:
    >>> a, b = derive_seed(42, 3, 0), derive_seed(42, 3, 1)
    >>> bool((derive_seed(42, 3, 0) == a).numpy().all()), bool((a == b).numpy().all())
    (True, False)
"""
from __future__ import annotations

from typing import Any

__all__ = ["derive_seed"]


def derive_seed(seed: Any, *path: Any) -> Any:
    """An int64 ``[2]`` seed tensor from ``seed`` (an int or an int64 ``[2]`` seed) and ``path`` (ints or
    int scalars), each step hashed through a stateless Philox draw."""
    import tensorflow as tf  # the tf.data pipeline's: optional when Keras runs on JAX

    key = tf.cast(tf.reshape(seed, [-1]), tf.int64)
    key = tf.concat([key, tf.zeros([2], tf.int64)], 0)[:2]
    for step in path:
        key = tf.random.stateless_uniform([2], seed=tf.stack([key[0], key[1] + tf.cast(step, tf.int64)]),
                                          minval=None, maxval=None, dtype=tf.int64)
    return key
