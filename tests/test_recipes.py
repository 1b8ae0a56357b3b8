"""Built-in recipes ship in the package: found by name from any folder, listed by `kerasclf recipes`."""
import tomllib
from pathlib import Path

import pytest

from kerasclf.cli import main
from kerasclf.data.sources import SOURCES
from kerasclf.experiment import load_comparison
from kerasclf.recipes import builtin_path, describe, list_builtin
from kerasclf.train import load_recipe
from kerasclf.zoo import get_cfg

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"demo", "cifar100_simple_cnn", "cifar100_deep_cnn", "cifar100_efficientnet_b0", "catsdogs_vgg16",
         "catsdogs_flat_names", "celeba_resnet", "autoencoder_photos", "own_folder", "compare_digits",
         "fashion_mnist", "cifar10_scratch"}
NEEDS_PATH = {"own_folder": "path", "catsdogs_vgg16": "path", "catsdogs_flat_names": "path",
              "autoencoder_photos": "path", "celeba_resnet": "attr_file", "cifar10_scratch": "path"}


def test_one_copy_of_each_recipe_inside_the_package():
    assert set(list_builtin()) == SEEDS
    assert not list((ROOT / "zoo").glob("*.yaml"))  # the top-level folder only says where they live
    assert "kerasclf/recipes/" in (ROOT / "zoo" / "README.md").read_text()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "recipes/*.yaml" in package_data["kerasclf"]


@pytest.mark.parametrize("name", sorted(SEEDS - {"compare_digits"}))
def test_builtin_recipe_loads_and_validates_by_name_from_another_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(name)
    assert recipe.description
    assert get_cfg(recipe.model.name).name  # a model the zoo knows
    assert recipe.data.source in SOURCES
    # no path relative to the current folder: a recipe that reads files leaves it to --set
    for key in ("path", "attr_file", "image_dir", "csv_path"):
        assert key not in recipe.data.options, f"{name}: data.{key} should be given with --set"


def test_comparison_recipe_loads_by_name_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = load_comparison("compare_digits")
    assert len(raw["models"]) == 6 and raw["data"]["source"] == "digits"


@pytest.mark.parametrize("name", sorted(NEEDS_PATH))
def test_recipe_without_its_path_names_the_set_to_pass(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["train", name, "--output-dir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"--set data.{NEEDS_PATH[name]}=" in err[0]
    assert not (tmp_path / "runs").exists()


def test_recipes_command_lists_name_and_description(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    described = describe()
    assert len(lines) == len(described) == len(SEEDS)
    for line, (name, text) in zip(lines, described.items()):
        assert line.split()[0] == name and line.endswith(text)
    assert builtin_path("demo") is not None and builtin_path("nope") is None
