"""The classifier head shared by every family: pool → dropout → hidden Dense → Dense "predictions".

Example:
    >>> output_spec(2, "auto")
    (1, 'sigmoid', 'binary')
    >>> output_spec(10, "multilabel")
    (10, 'sigmoid', 'multilabel')
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kerasclf.errors import ConfigError

__all__ = ["output_spec", "classifier_head", "TASKS"]

TASKS = ("auto", "binary", "multiclass", "multilabel")


def output_spec(num_classes: int, task: str = "auto") -> tuple[int, str, str]:
    """``(units, activation, task)`` of the output layer for ``num_classes`` and ``task``.

    ``auto`` is binary (one sigmoid unit) for two classes and multiclass (softmax) above.
    """
    if task not in TASKS:
        raise ConfigError(f"task '{task}' is not one of {', '.join(TASKS)}")
    if num_classes is None or int(num_classes) < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    n = int(num_classes)
    if task == "auto":
        task = "binary" if n <= 2 else "multiclass"
    if task == "binary":
        if n > 2:
            raise ConfigError(f"task 'binary' needs num_classes <= 2, got {n}; use multiclass or multilabel")
        return 1, "sigmoid", "binary"
    if task == "multilabel":
        return n, "sigmoid", "multilabel"
    return n, "softmax", "multiclass"


def classifier_head(x: Any, num_classes: int, task: str = "auto", *, pooling: str | None = "avg",
                    dropout: float = 0.0, hidden: Sequence[int] | int | None = None,
                    hidden_activation: str = "relu", hidden_batch_norm: float | None = None,
                    hidden_dropout: float = 0.0, kernel_initializer: str = "glorot_uniform",
                    kernel_regularizer: Any = None, output_regularizer: Any = None) -> Any:
    """Apply pooling ("features") → dropout → hidden Dense layers → Dense "predictions" (float32).

    Each hidden layer is Dense → (batch norm with momentum ``hidden_batch_norm``) → activation →
    (dropout ``hidden_dropout``); ``kernel_regularizer`` applies to the hidden layers and
    ``output_regularizer`` to the output layer.

    Example:
        >>> inputs = keras.Input((4, 4, 8))
        >>> out = classifier_head(inputs, 10, hidden=16, hidden_batch_norm=0.9, hidden_dropout=0.5)
        >>> keras.Model(inputs, out).count_params()  # (8*16+16) + 4*16 BN + (16*10+10)
        378
    """
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="features")(x)
    elif pooling == "flatten":
        x = keras.layers.Flatten(name="features")(x)
    elif pooling not in (None, "none"):
        raise ConfigError(f"pooling '{pooling}' is not one of avg, max, flatten, none")
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if isinstance(hidden, int):
        hidden = [hidden]
    for i, units in enumerate(hidden or [], start=1):
        norm = hidden_batch_norm is not None
        x = keras.layers.Dense(units, activation=None if norm else hidden_activation,
                               kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
                               name=f"head_dense{i}")(x)
        if norm:
            x = keras.layers.BatchNormalization(momentum=hidden_batch_norm, name=f"head_bn{i}")(x)
            x = keras.layers.Activation(hidden_activation, name=f"head_act{i}")(x)
        if hidden_dropout:
            x = keras.layers.Dropout(hidden_dropout, name=f"head_dropout{i}")(x)
    units, activation, _ = output_spec(num_classes, task)
    return keras.layers.Dense(units, activation=activation, kernel_regularizer=output_regularizer,
                              dtype="float32", name="predictions")(x)
