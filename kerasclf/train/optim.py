"""Optimizers and learning-rate schedules from a recipe, using Keras's own classes.

Example:
    >>> from kerasclf.train.recipe import OptimizerCfg, ScheduleCfg
    >>> opt = make_optimizer(OptimizerCfg(name="sgd", learning_rate=0.1),
    ...                      ScheduleCfg(name="exponential"), steps_per_epoch=100, epochs=10)
    >>> type(opt).__name__
    'SGD'
"""
from __future__ import annotations

from typing import Any

from kerasclf.errors import ConfigError, UnknownNameError
from kerasclf.train.recipe import OptimizerCfg, ScheduleCfg

__all__ = ["make_optimizer", "make_schedule", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SCHEDULES = ("none", "exponential", "cosine")


def make_schedule(cfg: ScheduleCfg, learning_rate: float, *, steps_per_epoch: int, epochs: int) -> Any:
    """A ``keras.optimizers.schedules`` object, or the plain float for ``none``."""
    import keras

    name = (cfg.name or "none").lower()
    if name == "none":
        return learning_rate
    if name == "exponential":
        # decay by decay_rate once per epoch unless told otherwise (the seed's deep CNN)
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=cfg.decay_steps or max(1, steps_per_epoch),
            decay_rate=cfg.decay_rate)
    if name == "cosine":
        total = cfg.decay_steps or max(1, steps_per_epoch * epochs)
        if cfg.warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(1, total - cfg.warmup_steps), alpha=cfg.alpha,
                warmup_target=learning_rate, warmup_steps=cfg.warmup_steps)
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total, alpha=cfg.alpha)
    raise UnknownNameError("schedule", name, SCHEDULES, hint="train.schedule.name")


def make_optimizer(cfg: OptimizerCfg, schedule: ScheduleCfg | None = None, *,
                   steps_per_epoch: int = 1, epochs: int = 1, learning_rate: float | None = None) -> Any:
    """Build the Keras optimizer named in the recipe with its (scheduled) learning rate."""
    import keras

    lr_value = cfg.learning_rate if learning_rate is None else learning_rate
    if lr_value <= 0:
        raise ConfigError(f"train.optimizer.learning_rate must be > 0, got {lr_value}")
    lr = make_schedule(schedule or ScheduleCfg(), lr_value, steps_per_epoch=steps_per_epoch, epochs=epochs)
    common: dict[str, Any] = {"learning_rate": lr}
    if cfg.clipnorm:
        common["clipnorm"] = cfg.clipnorm
    name = cfg.name.lower()
    if name == "adam":
        return keras.optimizers.Adam(**common)
    if name == "adamw":
        return keras.optimizers.AdamW(weight_decay=cfg.weight_decay or 1e-4, **common)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=cfg.momentum, nesterov=False, **common)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(momentum=cfg.momentum if cfg.momentum != 0.9 else 0.0, **common)
    if name == "nadam":
        return keras.optimizers.Nadam(**common)
    raise UnknownNameError("optimizer", name, OPTIMIZERS, hint="train.optimizer.name")
