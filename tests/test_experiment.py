"""`compare`: four small models (every mode: scratch, feature extraction, fine-tune, a scikit-learn head) on one split, resumable."""
import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from kerasclf.cli import main
from kerasclf.errors import ConfigError
from kerasclf.experiment import RecipeChangedError, compare

MODELS = [
    {"name": "simple_cnn", "mode": "scratch", "label": "simple"},
    {"name": "backbone_head", "mode": "feature_extraction", "label": "mnet_fe", "backbone": "MobileNet",
     "alpha": 0.25, "weights": None},
    {"name": "backbone_head", "mode": "fine_tune", "label": "mnet_ft", "backbone": "MobileNet", "alpha": 0.25,
     "weights": None, "train": {"fine_tune": {"epochs": 1, "learning_rate": 1e-4, "unfreeze": 10}}},
    {"name": "backbone_head", "mode": "sklearn", "label": "mnet_logreg", "backbone": "MobileNet",
     "alpha": 0.25, "weights": None, "head": "logreg"},
]


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cmp", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "digits", "image_size": [32, 32], "batch_size": 32},
        "train": {"epochs": 1, "steps_per_epoch": 6, "verbose": 0},
        "models": MODELS, "tta": True, "ensemble": 3,
    }))
    return path


@pytest.mark.slow  # four models trained (~100 s); test_candidates checks the choosing with untrained members
def test_compare_four_modes_leaderboard_and_resume(recipe, tmp_path):
    board = compare(recipe)
    out = tmp_path / "runs" / "cmp"
    assert len(board.rows) == 4
    assert {r["mode"] for r in board.rows} == {"scratch", "feature_extraction", "fine_tune", "sklearn"}
    vals = [r["val_acc"] for r in board.rows]
    assert vals == sorted(vals, reverse=True) and board.best == board.rows[0]["label"]
    assert all(r["params"] and r["train_time_s"] is not None for r in board.rows)
    test = board.test
    print(f"\nbest {board.best}: val {board.rows[0]['val_acc']:.3f}; chosen {board.chosen}: test {test['accuracy']:.3f}")
    chosen = board.candidates[0]
    assert test["configuration"] == board.chosen == chosen["configuration"] and test["val_acc"] == chosen["val_acc"]
    assert chosen["val_acc"] == max(c["val_acc"] for c in board.candidates) >= board.rows[0]["val_acc"]
    with (out / "split.csv").open() as f:
        assert test["n"] == sum(row["split"] == "test" for row in csv.DictReader(f))
    assert test["accuracy"] == pytest.approx(np.trace(test["confusion_counts"]) / test["n"])
    assert test["accuracy"] > 0.3  # ten digits: chance is 0.1
    # each model alone and with TTA, and the top-3 ensemble with and without TTA (heads included)
    assert len(board.candidates) == 2 * 4 + 2 and {c["kind"] for c in board.candidates} == {"single", "tta", "ensemble"}
    assert all(c["gain"] == pytest.approx(c["val_acc"] - board.rows[0]["val_acc"]) for c in board.candidates)
    assert board.saved.get("test_max_abs_diff", 0.0) < 1e-4  # the saved model is the tested one
    for name in ("leaderboard.csv", "leaderboard.json", "split.csv", "report.html"):
        assert (out / name).is_file(), name
    # each model trained on the same manifest, and none of them saw the test split
    manifests = {(out / "models" / r["label"] / "split.csv").read_text()
                 for r in board.rows if r["mode"] != "sklearn"}
    assert manifests == {(out / "split.csv").read_text()}
    for r in board.rows:
        metrics = json.loads((out / "models" / r["label"] / "metrics.json").read_text())
        assert "test" not in metrics
    # resume: nothing is retrained
    stamps = {r["label"]: (out / "models" / r["label"] / "metrics.json").stat().st_mtime_ns for r in board.rows}
    again = compare(recipe)
    assert [r["label"] for r in again.rows] == [r["label"] for r in board.rows]
    assert stamps == {r["label"]: (out / "models" / r["label"] / "metrics.json").stat().st_mtime_ns
                      for r in again.rows}


# --- an edited recipe never silently reuses or rewrites a comparison folder -------------------

def _small(root, epochs=1, lr=0.01, name="small"):
    """A one-model comparison on 24 tiny images (three classes), written to ``root/<name>.yaml``."""
    images = root / "images"
    if not images.is_dir():
        rng = np.random.default_rng(0)
        for c in range(3):
            (images / f"c{c}").mkdir(parents=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype("uint8")).save(images / f"c{c}" / f"{i}.png")
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "output_dir": str(root / "runs"),
        "data": {"source": "folder", "path": str(images), "image_size": [32, 32], "batch_size": 8},
        "train": {"epochs": epochs, "verbose": 0, "jit_compile": False},
        "models": [{"name": "simple_cnn", "label": "cnn", "train": {"optimizer": {"name": "sgd",
                                                                                  "learning_rate": lr}}}],
    }))
    return path


@pytest.fixture(scope="module")
def small_done(tmp_path_factory):
    """One finished one-model comparison, shared (read-only) by the tests below: ``(root, out)``."""
    root = tmp_path_factory.mktemp("cmp_small")
    compare(_small(root))
    return root, root / "runs" / "small"


def _state(out):
    return ((out / "comparison.yaml").read_text(), (out / "split.csv").read_text(),
            (out / "models" / "cnn" / "recipe.yaml").read_text(),
            (out / "models" / "cnn" / "metrics.json").stat().st_mtime_ns)


def test_compare_resumes_only_the_identical_recipe(small_done):
    root, out = small_done
    before = _state(out)
    board = compare(_small(root))  # the identical recipe resumes: nothing retrained or rewritten
    assert _state(out) == before and board.rows[0]["label"] == "cnn"
    for edit, overrides, change in [({"epochs": 2}, None, "train.epochs: 1 -> 2"),
                                    ({"lr": 0.05}, None, "models[0].train.optimizer.learning_rate: 0.01 -> 0.05"),
                                    ({}, ["data.batch_size=4"], "data.batch_size: 8 -> 4")]:
        with pytest.raises(RecipeChangedError) as info:
            compare(_small(root, **edit), overrides=overrides)
        message = str(info.value)
        assert str(out) in message and change in message and "--overwrite" in message and "\n" not in message
        assert _state(out) == before  # comparison.yaml, split.csv and the model's results untouched
    _small(root)  # the recipe file as it was


def test_cli_compare_prints_one_line_and_exits_2_on_an_edited_recipe(small_done, capsys):
    root, out = small_done
    before = _state(out)
    assert main(["compare", str(_small(root)), "--set", "train.epochs=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train.epochs: 1 -> 3" in err and "--overwrite" in err
    assert len(err.splitlines()) == 1 and _state(out) == before


def test_compare_refuses_a_model_folder_made_by_another_recipe(small_done):
    root, out = small_done
    stored = out / "models" / "cnn" / "recipe.yaml"
    original = stored.read_text()
    recipe = yaml.safe_load(original)
    recipe["train"]["epochs"] = 7  # e.g. a folder left by an older comparison of the same name
    stored.write_text(yaml.safe_dump(recipe, sort_keys=False))
    try:
        with pytest.raises(RecipeChangedError,
                           match=r"models/cnn was run with a different recipe \(train.epochs: 7 -> 1\)"):
            compare(_small(root))
    finally:
        stored.write_text(original)


@pytest.mark.slow  # 35-55 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_overwrite_replaces_a_previous_comparison(tmp_path):
    out = tmp_path / "runs" / "small"
    (out / "models" / "cnn").mkdir(parents=True)
    (out / "comparison.yaml").write_text(yaml.safe_dump({"name": "small", "models": [{"name": "resnet"}]}))
    (out / "models" / "cnn" / "metrics.json").write_text('{"stale": true}')
    with pytest.raises(RecipeChangedError, match="models removed|models\\[0\\].name: 'resnet' -> 'simple_cnn'"):
        compare(_small(tmp_path, epochs=2))
    board = compare(_small(tmp_path, epochs=2), overwrite=True)
    assert yaml.safe_load((out / "comparison.yaml").read_text())["train"]["epochs"] == 2
    metrics = json.loads((out / "models" / "cnn" / "metrics.json").read_text())
    assert "stale" not in metrics and metrics["epochs"] == 2 and board.rows[0]["label"] == "cnn"


def test_compare_never_touches_a_folder_that_is_not_a_comparison(tmp_path):
    out = tmp_path / "runs" / "small"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="not a kerasclf comparison folder"):
            compare(_small(tmp_path), overwrite=overwrite)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
