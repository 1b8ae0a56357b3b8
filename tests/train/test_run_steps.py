"""The training flow's named steps: every pipeline key of a recipe has an effect."""
import numpy as np
import pytest

from kerasclf.data.sources import digits
from kerasclf.errors import ConfigError
from kerasclf.train.fit import _loss_monitors, build_model, prepare_data
from kerasclf.train.recipe import Recipe, TrainCfg
from kerasclf.zoo import get_cfg


def _prepare(tmp_path, **data):
    recipe = Recipe.from_dict({"name": "steps", "data": {"source": "digits", "batch_size": 64, **data},
                               "model": "simple_cnn"})
    spec = digits()
    return recipe, prepare_data(recipe, spec, tmp_path, get_cfg("simple_cnn"), batch_size=64)


def _first_labels(ds):
    return np.asarray(next(iter(ds))[1])


def test_shuffle_false_keeps_the_manifest_order(tmp_path):
    _, still = _prepare(tmp_path / "a", shuffle=False)
    expected = still.spec.labels[still.parts["train"][:64]]
    assert np.array_equal(_first_labels(still.datasets["train"]), expected)
    _, shuffled = _prepare(tmp_path / "b")  # default: reshuffled every epoch
    assert not np.array_equal(_first_labels(shuffled.datasets["train"]), expected)


def test_channels_reaches_the_pipeline_and_the_model(tmp_path):
    recipe, data = _prepare(tmp_path, channels=1)
    x, _ = next(iter(data.datasets["train"]))
    assert x.shape[1:] == (32, 32, 1) and data.channels == 1
    model = build_model(recipe, data, strategy=None)
    assert model.inputs[0].shape[-1] == 1
    assert np.asarray(model.predict_on_batch(x)).shape == (64, 10)


def test_bad_channels_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.channels"):
        _prepare(tmp_path, channels=2)


def test_a_pipeline_key_is_never_passed_to_the_source():
    recipe = Recipe.from_dict({"data": {"source": "digits", "shuffle": False, "channels": 1}})
    assert recipe.data.options == {} and recipe.data.load_spec().num_classes == 10


def test_autoencoder_monitors_its_loss_whatever_the_recipe_says():
    cfg = Recipe.from_dict({"train": {"monitor": "val_mse", "early_stopping": {"monitor": "val_accuracy"},
                                      "reduce_lr": {"monitor": "auc"}}}).train
    fixed = _loss_monitors(cfg)
    assert (fixed.monitor, fixed.early_stopping.monitor, fixed.reduce_lr.monitor) == ("val_loss", "val_loss", "loss")
    assert _loss_monitors(TrainCfg()).monitor == "val_loss"
