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

__all__ = ["make_optimizer", "make_schedule", "optimizer_options", "OPTIMIZERS", "SCHEDULES"]

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


# optimizer -> the OptimizerCfg keys beyond name / learning_rate it takes (others are refused)
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "adam": ("weight_decay", "clipnorm"), "adamw": ("weight_decay", "clipnorm"),
    "nadam": ("weight_decay", "clipnorm"), "sgd": ("momentum", "weight_decay", "clipnorm"),
    "rmsprop": ("momentum", "weight_decay", "clipnorm"),
}
# what an unset key means, per optimizer (sgd keeps the seeds' 0.9; rmsprop Keras's 0.0)
_DEFAULTS: dict[str, dict[str, float]] = {"sgd": {"momentum": 0.9}, "rmsprop": {"momentum": 0.0},
                                          "adamw": {"weight_decay": 1e-4}}


def optimizer_options(cfg: OptimizerCfg) -> dict[str, Any]:
    """The keyword arguments (besides ``learning_rate``) for the Keras optimizer ``cfg.name``.

    Every key set in the recipe reaches the optimizer; a key that optimizer has no use for
    (``momentum`` for adam) is a ConfigError naming it, never silently dropped.

    Example:
        >>> optimizer_options(OptimizerCfg(name="rmsprop", momentum=0.5))
        {'momentum': 0.5}
        >>> optimizer_options(OptimizerCfg(name="adamw"))
        {'weight_decay': 0.0001}
    """
    name = cfg.name.lower()
    if name not in _ACCEPTS:
        raise UnknownNameError("optimizer", name, OPTIMIZERS, hint="train.optimizer.name")
    opts: dict[str, Any] = dict(_DEFAULTS.get(name, {}))
    for key in ("momentum", "weight_decay", "clipnorm"):
        value = getattr(cfg, key)
        if value is None:
            continue
        if key not in _ACCEPTS[name]:
            raise ConfigError(f"train.optimizer.{key} has no effect on {name}; remove it, or use "
                              f"{' / '.join(n for n, keys in _ACCEPTS.items() if key in keys)}")
        value = float(value)
        if key == "momentum" and not 0.0 <= value < 1.0:
            raise ConfigError(f"train.optimizer.momentum must be in [0, 1), got {value}")
        if key == "weight_decay" and value < 0:
            raise ConfigError(f"train.optimizer.weight_decay must be >= 0, got {value}")
        if key == "clipnorm" and value <= 0:
            raise ConfigError(f"train.optimizer.clipnorm must be > 0 (or left out), got {value}")
        opts[key] = value
    return opts


def make_optimizer(cfg: OptimizerCfg, schedule: ScheduleCfg | None = None, *,
                   steps_per_epoch: int = 1, epochs: int = 1, learning_rate: float | None = None) -> Any:
    """Build the Keras optimizer named in the recipe with its (scheduled) learning rate.

    Every accepted :class:`OptimizerCfg` key reaches it (see :func:`optimizer_options`).
    """
    import keras

    opts = optimizer_options(cfg)  # refuse a bad key before anything else
    lr_value = cfg.learning_rate if learning_rate is None else learning_rate
    if lr_value <= 0:
        raise ConfigError(f"train.optimizer.learning_rate must be > 0, got {lr_value}")
    lr = make_schedule(schedule or ScheduleCfg(), lr_value, steps_per_epoch=steps_per_epoch, epochs=epochs)
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop, "nadam": keras.optimizers.Nadam}
    return classes[cfg.name.lower()](learning_rate=lr, **opts)
