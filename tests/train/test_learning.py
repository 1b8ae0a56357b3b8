"""The fast suite proves learning: one small learnable problem per task type, trained through
``train()`` exactly as a recipe runs, must score well above chance on its held-out test split."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasclf.cli import main
from kerasclf.data.spec import DataSpec
from kerasclf.io import load_model, model_card, read_card, write_card
from kerasclf.testing import square_images
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe

SMALL_RESNET = {"name": "resnet", "stages": [8, 16], "units_per_stage": [1, 1]}


def _recipe(tmp_path, model=SMALL_RESNET, epochs=8, **train_cfg):
    return Recipe.from_dict({
        "name": "learn", "output_dir": str(tmp_path),
        "data": {"source": "digits", "image_size": [24, 24], "batch_size": 16, "split": {"seed": 3}},
        "model": dict(model),
        "train": {"epochs": epochs, "verbose": 0, "seed": 3, "optimizer": {"name": "adam", "learning_rate": 0.003},
                  **train_cfg},
    })


@pytest.mark.parametrize("classes", [2, 4], ids=["binary", "multiclass"])
def test_single_label_tasks_learn(tmp_path, classes):
    images, labels = square_images(n_per_class=40, size=24, classes=classes, seed=classes)
    spec = DataSpec.from_arrays(images, labels, [f"c{i}" for i in range(classes)])
    result = train(_recipe(tmp_path), spec=spec)
    test = result.metrics["test"]
    assert test["n"] >= 8 * classes // 2
    assert test["accuracy"] >= 0.9, test  # chance is 1 / classes


def test_multilabel_task_learns_each_attribute(tmp_path):
    """Two independent attributes (a bright square top-left, another bottom-right)."""
    rng = np.random.default_rng(0)
    n, size = 160, 24
    y = rng.integers(0, 2, (n, 2))
    x = rng.integers(0, 70, (n, size, size, 3)).astype("uint8")
    x[y[:, 0] == 1, :8, :8] = 255
    x[y[:, 1] == 1, -8:, -8:] = 255
    spec = DataSpec.from_arrays(x, y, ["top_left", "bottom_right"], task="multilabel")
    result = train(_recipe(tmp_path), spec=spec)
    test = result.metrics["test"]
    majority = max(y.mean(), 1 - y.mean())
    assert test["accuracy"] >= 0.9 > majority + 0.2, test  # mean per-attribute accuracy


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_autoencoder_reconstructs_better_than_the_mean_image(tmp_path):
    images, _ = square_images(n_per_class=40, size=24, classes=3, seed=5)
    spec = DataSpec.from_arrays(images, np.zeros(len(images), int), ["photo"], task="autoencoder")
    recipe = _recipe(tmp_path, model={"name": "conv_autoencoder", "latent_dim": 16, "filters": [8, 16]},
                     epochs=10, monitor="val_loss")
    result = train(recipe, spec=spec)
    x = images.astype("float64") / 255.0
    mean_image_mse = float(np.mean((x - x.mean(axis=0)) ** 2))
    assert result.metrics["test"]["mse"] < 0.8 * mean_image_mse, (result.metrics["test"], mean_image_mse)


def test_flip_tta_scores_val_and_test_saves_the_averaged_model_and_chooses_by_validation(tmp_path, capsys):
    rng = np.random.default_rng(4)  # the class is a colour, so a mirror image keeps its class
    labels = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 90, (120, 24, 24, 3)).astype("uint8")
    for i, c in enumerate(labels):
        top, left = rng.integers(0, 14, 2)
        images[i, top:top + 10, left:left + 10, c] = 250
    spec = DataSpec.from_arrays(images, labels, [f"c{i}" for i in range(3)])
    result = train(_recipe(tmp_path, tta=["flip"]), spec=spec)
    m = result.metrics
    assert m["test_tta"]["n"] == m["test"]["n"] and m["test_tta"]["accuracy"] >= 0.9, m["test_tta"]
    assert m["tta"]["chosen"] == (m["val_tta"]["accuracy"] > m["val"]["accuracy"])
    tta = load_model(result.run_dir / m["tta"]["model"])
    assert tta.meta["class_names"] == spec.class_names
    x = images[:6].astype("float32")
    expected = (result.model.predict(x, verbose=0) + result.model.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(tta.model.predict(x, verbose=0), expected, atol=1e-5)
    with pytest.raises(Exception, match="train.tta: unknown view 'rotate'"):
        _recipe(tmp_path, tta=["rotate"])
    # `kerasclf predict RUN` predicts with the model the run chose on validation, as its card says, and
    # says which (it tried to read the run folder as a SavedModel); both outcomes of the choice
    folder = tmp_path / "new"
    folder.mkdir()
    for i, img in enumerate(images[:6]):
        Image.fromarray(img).save(folder / f"{i}.png")
    run = result.run_dir
    for chosen in (False, True):  # whichever won here, both are checked (the card is rewritten as a run writes it)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["tta"]["chosen"] = chosen
        (run / "metrics.json").write_text(json.dumps(metrics))
        write_card(run / "model.keras", model_card(run / "model.keras"))
        name = "model.tta.keras" if chosen else "model.keras"
        assert read_card(run / "model.keras")["chosen_model"]["file"] == name
        assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "p.csv")]) == 0
        assert f"model: {run / name} (flip TTA {'won' if chosen else 'did not beat'}" in capsys.readouterr().out
        rows = list(csv.DictReader((tmp_path / "p.csv").open()))
        want = load_model(run / name).model.predict(images[:6].astype("float32"), verbose=0).max(axis=1)
        got = [float(r["probability"]) for r in sorted(rows, key=lambda r: int(Path(r["path"]).stem))]
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert all(r["ood_score"] != "" for r in rows)  # the run's OOD flag scores the plain model either way
    assert main(["predict", str(run / "model.keras"), str(folder)]) == 0  # a file given: used, the choice named
    assert "note: its run chose model.tta.keras" in capsys.readouterr().out
