"""Training: recipes, optimizers/schedules, callbacks, and the run of one recipe.

``train`` and ``RunResult`` live in :mod:`kerasclf.train.fit`, loaded on first use: the run
needs TensorFlow's tf.data, which is optional when Keras runs on JAX, where
``kerasclf.train.speed`` and ``kerasclf.train.distribute`` must import without it.

Example:
    >>> from kerasclf.train import load_recipe, train      # doctest: +SKIP
    >>> result = train(load_recipe("demo"), overwrite=True)
"""
from typing import Any

from kerasclf.train.recipe import Recipe, apply_overrides, load_recipe

__all__ = ["Recipe", "RunResult", "load_recipe", "apply_overrides", "train", "lr_find_recipe", "lr_find_path"]


def __getattr__(name: str) -> Any:
    if name in ("train", "RunResult", "lr_find_recipe", "lr_find_path"):
        from kerasclf.train import fit  # TensorFlow: optional on the JAX backend (see above)

        return getattr(fit, name)
    raise AttributeError(f"module 'kerasclf.train' has no attribute {name!r}")
