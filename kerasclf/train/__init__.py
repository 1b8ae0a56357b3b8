"""Training: recipes, optimizers/schedules, callbacks, and the run of one recipe.

Example:
    >>> from kerasclf.train import load_recipe, train      # doctest: +SKIP
    >>> result = train(load_recipe("demo"), overwrite=True)
"""
from kerasclf.train.fit import RunResult, train
from kerasclf.train.recipe import Recipe, apply_overrides, load_recipe

__all__ = ["Recipe", "RunResult", "load_recipe", "apply_overrides", "train"]
