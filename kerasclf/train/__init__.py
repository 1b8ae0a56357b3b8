"""Training: recipes, optimizers/schedules, callbacks, and the run of one recipe.

Example:
    >>> from kerasclf.train import load_recipe, train      # doctest: +SKIP
    >>> result = train(load_recipe("demo"), overwrite=True)
"""
from kerasclf.train.recipe import Recipe, apply_overrides, load_recipe

__all__ = ["Recipe", "load_recipe", "apply_overrides", "train"]


def train(*args, **kwargs):  # lazy: keeps `import kerasclf.train` free of TensorFlow
    from kerasclf.train.fit import train as _train

    return _train(*args, **kwargs)


train.__doc__ = "Run one recipe; see :func:`kerasclf.train.fit.train`."
