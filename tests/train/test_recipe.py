"""Recipe validation: defaults, overrides, unknown keys, bad types, built-in and zoo recipes."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from kerasclf.errors import ConfigError
from kerasclf.experiment import _entry_recipe, load_comparison
from kerasclf.train.recipe import Recipe, apply_overrides, load_recipe, recipe_changes
from kerasclf.zoo import is_registered

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_sections():
    r = Recipe.from_dict({"name": "x", "data": {"source": "folder", "path": "imgs", "batch_size": 8},
                          "model": {"name": "resnet", "stages": [8, 16]}})
    assert r.data.batch_size == 8
    assert r.data.options == {"path": "imgs"}  # source options kept apart from pipeline keys
    assert r.model.options == {"stages": [8, 16]}
    assert r.train.optimizer.name == "adam" and r.data.split.train == 0.7
    assert Recipe.from_dict(r.to_dict()) == r  # round trip


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'recipe.train.epoch'.*epochs"):
        Recipe.from_dict({"train": {"epoch": 3}})


def test_bad_type_is_reported():
    with pytest.raises(ConfigError, match=r"train.epochs: expected int"):
        Recipe.from_dict({"train": {"epochs": "many"}})


def test_true_means_defaults_for_optional_sections():
    r = Recipe.from_dict({"train": {"early_stopping": True, "reduce_lr": False}})
    assert r.train.early_stopping.patience == 5 and r.train.reduce_lr is None


def test_overrides_parse_yaml_values():
    raw = apply_overrides({"train": {"epochs": 5}}, ["train.epochs=2", "data.image_size=[16, 16]",
                                                      "train.fine_tune=null"])
    assert raw == {"train": {"epochs": 2, "fine_tune": None}, "data": {"image_size": [16, 16]}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.epochs"])


def test_load_builtin_and_yaml_errors(tmp_path):
    assert load_recipe("demo").data.source == "digits"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "kerasclf" / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_zoo_recipe_validates_and_names_a_registered_model(path):
    raw = yaml.safe_load(path.read_text())
    if "models" in raw:  # a comparison: every entry must make a valid recipe
        comparison = load_comparison(path)
        for entry in comparison["models"]:
            _, recipe = _entry_recipe(comparison, entry, path, path.parent)
            assert is_registered(recipe.model.name), recipe.model.name
        return
    recipe = load_recipe(path)
    assert is_registered(recipe.model.name), recipe.model.name
    assert yaml.safe_load(recipe.to_yaml())["name"] == recipe.name


def test_max_images_is_a_seeded_stratified_sample():
    full = load_recipe("demo").data.load_spec()
    small = load_recipe("demo", ["data.max_images=50"]).data.load_spec()
    assert len(small) == 50
    counts = np.bincount(small.labels, minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6  # every class keeps its share
    again = load_recipe("demo", ["data.max_images=50"]).data.load_spec()
    assert np.array_equal(small.images, again.images)  # same seed, same sample
    other = load_recipe("demo", ["data.max_images=50", "data.split.seed=7"]).data.load_spec()
    assert not np.array_equal(small.images, other.images)
    assert len(load_recipe("demo", [f"data.max_images={len(full) + 5}"]).data.load_spec()) == len(full)
    with pytest.raises(ConfigError, match="data.max_images"):
        load_recipe("demo", ["data.max_images=1"])


def test_recipe_changes_ignore_keys_added_since_at_their_defaults():
    """A run folder written before kerasclf added a key (at its default) resumes; real edits do not."""
    now = load_recipe("demo").to_dict()
    before = yaml.safe_load(yaml.safe_dump(now))
    del before["data"]["max_images"], before["train"]["class_weight"], before["train"]["lr_find"]
    assert recipe_changes(before, now) == []
    edited = load_recipe("demo", ["train.epochs=3", "data.max_images=100", "train.verbose=0"]).to_dict()
    assert recipe_changes(before, edited) == ["data.max_images: None -> 100", "train.epochs: 15 -> 3"]
