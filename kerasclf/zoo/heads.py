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
                    hidden_activation: str = "relu", kernel_initializer: str = "glorot_uniform",
                    kernel_regularizer: Any = None) -> Any:
    """Apply pooling ("features") → dropout → hidden Dense layers → Dense "predictions" (float32)."""
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
    for i, units in enumerate(hidden or []):
        x = keras.layers.Dense(units, activation=hidden_activation, kernel_initializer=kernel_initializer,
                               kernel_regularizer=kernel_regularizer, name=f"head_dense{i + 1}")(x)
    units, activation, _ = output_spec(num_classes, task)
    return keras.layers.Dense(units, activation=activation, dtype="float32", name="predictions")(x)
