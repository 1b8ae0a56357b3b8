"""Optimizers and learning-rate schedules from a recipe, using Keras's own classes.

Example:
    >>> from kerasclf.train.recipe import OptimizerCfg, ScheduleCfg
    >>> opt = make_optimizer(OptimizerCfg(name="sgd", learning_rate=0.1),
    ...                      ScheduleCfg(name="exponential"), steps_per_epoch=100, epochs=10)
    >>> type(opt).__name__
    'SGD'
"""
from __future__ import annotations

import math
from typing import Any

import keras

from kerasclf.errors import ConfigError, UnknownNameError
from kerasclf.train.recipe import OptimizerCfg, ScheduleCfg

__all__ = ["make_optimizer", "make_schedule", "optimizer_options", "OneCycle", "with_lr_factors", "lr_factors",
           "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SCHEDULES = ("none", "exponential", "cosine", "one_cycle")


@keras.saving.register_keras_serializable(package="kerasclf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle LR (Smith; fastai's ``fit_one_cycle``): cosine from ``max_lr / div_factor`` up to
    ``max_lr`` over the first ``warmup`` fraction of ``total_steps``, then cosine down to
    ``max_lr / final_div``; the last value holds after ``total_steps``.

    Example:
        >>> s = OneCycle(1.0, total_steps=100, warmup=0.3, div_factor=25, final_div=1e4)
        >>> [round(float(s(k)), 4) for k in (0, 30, 100)]
        [0.04, 1.0, 0.0001]
    """

    def __init__(self, max_lr: float, total_steps: int, warmup: float = 0.3, div_factor: float = 25.0,
                 final_div: float = 1e4):
        if not 0 <= warmup < 1 or div_factor < 1 or final_div < 1 or total_steps < 1:
            raise ConfigError(f"train.schedule one_cycle: need 0 <= warmup < 1, div_factor >= 1, final_div >= 1 "
                              f"(got warmup={warmup}, div_factor={div_factor}, final_div={final_div})")
        self.max_lr, self.total_steps, self.warmup = float(max_lr), int(total_steps), float(warmup)
        self.div_factor, self.final_div = float(div_factor), float(final_div)

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        step = ops.cast(step, "float32")
        up = max(1.0, self.warmup * self.total_steps)
        down = max(1.0, self.total_steps - up)
        start, end = self.max_lr / self.div_factor, self.max_lr / self.final_div

        def cos(a: float, b: float, t: Any) -> Any:  # a at t=0 to b at t=1
            t = ops.clip(t, 0.0, 1.0)
            return b + (a - b) * (1.0 + ops.cos(math.pi * t)) / 2.0

        warm = cos(start, self.max_lr, step / up)
        anneal = cos(self.max_lr, end, (step - up) / down)
        return ops.where(step < up, warm, anneal) if self.warmup > 0 else anneal

    def get_config(self) -> dict[str, Any]:
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "warmup": self.warmup,
                "div_factor": self.div_factor, "final_div": self.final_div}


def make_schedule(cfg: ScheduleCfg, learning_rate: float, *, steps_per_epoch: int, epochs: int) -> Any:
    """A ``keras.optimizers.schedules`` object, or the plain float for ``none``."""
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
    if name == "one_cycle":
        return OneCycle(learning_rate, cfg.decay_steps or max(1, steps_per_epoch * epochs), warmup=cfg.warmup,
                        div_factor=cfg.div_factor, final_div=cfg.final_div)
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
                   steps_per_epoch: int = 1, epochs: int = 1, learning_rate: Any = None) -> Any:
    """Build the Keras optimizer named in the recipe with its (scheduled) learning rate.

    Every accepted :class:`OptimizerCfg` key reaches it (see :func:`optimizer_options`).
    """
    opts = optimizer_options(cfg)  # refuse a bad key before anything else
    lr_value = cfg.learning_rate if learning_rate is None else learning_rate
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop, "nadam": keras.optimizers.Nadam}
    if isinstance(lr_value, keras.optimizers.schedules.LearningRateSchedule):  # e.g. the LR finder's sweep
        return classes[cfg.name.lower()](learning_rate=lr_value, **opts)
    if isinstance(lr_value, str):
        raise ConfigError("learning_rate 'find' must be resolved by the LR finder before the optimizer is built")
    if lr_value <= 0:
        raise ConfigError(f"train.optimizer.learning_rate must be > 0, got {lr_value}")
    lr = make_schedule(schedule or ScheduleCfg(), lr_value, steps_per_epoch=steps_per_epoch, epochs=epochs)
    return classes[cfg.name.lower()](learning_rate=lr, **opts)


def lr_factors(groups: list[list[Any]], decay: float) -> dict[str, float]:
    """``{variable path: LR factor}`` for layer groups ordered stem to head: the last group gets 1,
    each group below ``decay`` times the one above (discriminative learning rates).

    Example:
        >>> a, b = keras.layers.Dense(2), keras.layers.Dense(2)
        >>> a.build((None, 2)); b.build((None, 2))
        >>> sorted(set(lr_factors([[a], [b]], 0.5).values()))
        [0.5, 1.0]
    """
    out: dict[str, float] = {}
    for depth, group in enumerate(reversed(groups)):
        for layer in group:
            for v in layer.trainable_weights:
                out[v.path] = decay ** depth
    return out


def with_lr_factors(optimizer: Any, factors: dict[str, float]) -> Any:
    """The same optimizer (class, config) whose update of each variable uses its learning rate times
    ``factors[variable.path]`` (1 for variables not listed). A scaled gradient would not do: Adam
    divides it out. The optimizer still saves and loads as its own Keras class.

    Example:
        >>> opt = with_lr_factors(keras.optimizers.Adam(1e-3), {"dense/kernel": 0.1})
        >>> type(opt).__name__, keras.optimizers.Adam in type(opt).__mro__
        ('Adam', True)
    """
    base = type(optimizer)

    def build(self: Any, variables: list[Any]) -> None:
        base.build(self, variables)
        self._kerasclf_factors = [float(factors.get(v.path, 1.0)) for v in variables]

    def update_step(self: Any, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        factor = self._kerasclf_factors[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, factor)
        return base.update_step(self, gradient, variable, learning_rate)

    cls = type(base.__name__, (base,), {"build": build, "update_step": update_step,
                                        "__module__": base.__module__, "__qualname__": base.__qualname__})
    return cls.from_config(optimizer.get_config())
