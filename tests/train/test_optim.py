"""Every optimizer key a recipe accepts reaches the Keras optimizer, or is refused by name."""
import numpy as np
import pytest

import keras

from kerasclf.errors import ConfigError, UnknownNameError
from kerasclf.train.optim import OPTIMIZERS, make_optimizer, optimizer_options
from kerasclf.train.recipe import OptimizerCfg, Recipe

TAKES = {"adam": {"weight_decay", "clipnorm"}, "adamw": {"weight_decay", "clipnorm"},
         "nadam": {"weight_decay", "clipnorm"}, "sgd": {"momentum", "weight_decay", "clipnorm"},
         "rmsprop": {"momentum", "weight_decay", "clipnorm"}}
VALUES = {"momentum": 0.5, "weight_decay": 0.01, "clipnorm": 2.0}


def test_every_recipe_optimizer_is_covered():
    assert set(OPTIMIZERS) == set(TAKES)


@pytest.mark.parametrize("name", sorted(TAKES))
@pytest.mark.parametrize("key", sorted(VALUES))
def test_each_key_has_an_effect_or_is_refused_by_name(name, key):
    cfg = OptimizerCfg(name=name, learning_rate=0.01, **{key: VALUES[key]})
    if key in TAKES[name]:
        opt = make_optimizer(cfg)
        assert float(getattr(opt, key)) == pytest.approx(VALUES[key])
    else:
        with pytest.raises(ConfigError, match=f"train.optimizer.{key} has no effect on {name}"):
            make_optimizer(cfg)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_rmsprop_keeps_its_momentum(momentum):
    """The old code turned momentum 0.9 (the then-default) into 0.0 for RMSprop."""
    opt = make_optimizer(OptimizerCfg(name="rmsprop", momentum=momentum))
    assert isinstance(opt, keras.optimizers.RMSprop) and opt.momentum == pytest.approx(momentum)


def test_rmsprop_momentum_changes_the_update():
    def two_steps(momentum):
        var = keras.Variable(np.ones(3, "float32"))
        opt = make_optimizer(OptimizerCfg(name="rmsprop", learning_rate=0.1, momentum=momentum))
        for _ in range(2):
            opt.apply_gradients([(keras.ops.ones(3), var)])
        return keras.ops.convert_to_numpy(var)

    assert not np.allclose(two_steps(0.0), two_steps(0.9))


def test_unset_keys_take_each_optimizers_default():
    assert make_optimizer(OptimizerCfg(name="sgd")).momentum == pytest.approx(0.9)
    assert make_optimizer(OptimizerCfg(name="rmsprop")).momentum == pytest.approx(0.0)
    assert make_optimizer(OptimizerCfg(name="adamw")).weight_decay == pytest.approx(1e-4)
    assert make_optimizer(OptimizerCfg(name="adam")).weight_decay is None
    assert optimizer_options(OptimizerCfg(name="adam")) == {}


def test_zero_weight_decay_for_adamw_is_kept():
    """The old code read `weight_decay or 1e-4`: an explicit 0 became 1e-4."""
    assert make_optimizer(OptimizerCfg(name="adamw", weight_decay=0.0)).weight_decay == 0.0


@pytest.mark.parametrize("key,value,match", [("momentum", 1.5, "momentum must be in"),
                                             ("weight_decay", -0.1, "weight_decay must be >= 0"),
                                             ("clipnorm", 0.0, "clipnorm must be > 0")])
def test_out_of_range_values_are_config_errors(key, value, match):
    with pytest.raises(ConfigError, match=match):
        make_optimizer(OptimizerCfg(name="sgd", **{key: value}))


def test_unknown_optimizer_name():
    with pytest.raises(UnknownNameError, match="did you mean: rmsprop"):
        make_optimizer(OptimizerCfg(name="rmsprob"))


def test_recipe_momentum_for_adam_is_refused_and_round_trips_for_sgd():
    adam = Recipe.from_dict({"train": {"optimizer": {"name": "adam", "momentum": 0.9}}})
    with pytest.raises(ConfigError, match="train.optimizer.momentum"):
        make_optimizer(adam.train.optimizer)
    sgd = Recipe.from_dict({"train": {"optimizer": {"name": "sgd", "momentum": 0.8}}})
    again = Recipe.from_dict(sgd.to_dict())
    assert make_optimizer(again.train.optimizer).momentum == pytest.approx(0.8)
