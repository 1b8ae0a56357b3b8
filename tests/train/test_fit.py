"""Training runs end to end on small real image folders: artefacts, stages, resume, refusals."""
import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasclf.data.pipeline import make_dataset
from kerasclf.data.sources import from_folder
from kerasclf.data.splits import read_manifest
from kerasclf.errors import ConfigError, RunExistsError
from kerasclf.io import load_model
from kerasclf.testing import run_apart, square_images
from kerasclf.train.fit import even_batches, has_trainable_strided_1x1, train
from kerasclf.train.recipe import Recipe


def _write_folder(root, n_per_class=16, size=24):
    """Three classes a small CNN can learn: a bright square in a class-specific corner."""
    rng = np.random.default_rng(0)
    corners = {"left": (0, 0), "middle": (8, 8), "right": (14, 14)}
    for cls, (y, x) in corners.items():
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, size=(size, size, 3)).astype("uint8")
            img[y:y + 9, x:x + 9] = 255
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(img).save(root / cls / f"{cls}_{i}.{ext}")
    return root


@pytest.fixture
def folder(tmp_path):
    return _write_folder(tmp_path / "images")


def _recomputed_test_metrics(run, folder, image_size=(32, 32)):
    """Accuracy and confusion counts recomputed here from the saved model's own predictions on the
    test rows of the run's split.csv (independent of the evaluation code under test)."""
    spec = from_folder(folder)
    ds = make_dataset(spec, read_manifest(run / "split.csv", spec)["test"], image_size=image_size, cache=None)
    x, y = (np.concatenate([np.asarray(t) for t in part]) for part in zip(*ds))
    y = np.asarray(y).reshape(len(x), -1)
    y = y.argmax(1) if y.shape[1] > 1 else y[:, 0]  # one-hot (mixup) or sparse labels
    pred = np.asarray(load_model(run / "model.keras").model.predict(x, verbose=0)).argmax(1)
    counts = np.zeros((len(spec.class_names),) * 2, dtype=int)
    np.add.at(counts, (y.astype(int), pred), 1)
    return {"n": len(y), "accuracy": float(np.mean(pred == y)), "confusion_counts": counts.tolist()}


def _recipe(tmp_path, folder, **train):
    return Recipe.from_dict({
        "name": "t", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "folder", "path": str(folder), "image_size": [32, 32], "batch_size": 8,
                 "split": {"seed": 1}},
        "model": {"name": "simple_cnn"},
        "train": {"epochs": 2, "verbose": 0, **train},
    })


def test_run_writes_every_artefact(tmp_path, folder):
    result = train(_recipe(tmp_path, folder))
    run = result.run_dir
    for name in ("recipe.yaml", "split.csv", "history.csv", "batch_loss.csv", "checkpoints/best.keras",
                 "model.keras", "metrics.json", "curves.png", "confusion.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert sum(metrics["split_sizes"].values()) == 48 and min(metrics["split_sizes"].values()) >= 3
    # the recorded test metrics are those of the saved model on the manifest's test rows
    again = _recomputed_test_metrics(run, folder)
    assert metrics["test"]["n"] == again["n"] == metrics["split_sizes"]["test"]
    assert metrics["test"]["accuracy"] == pytest.approx(again["accuracy"])
    assert metrics["test"]["confusion_counts"] == again["confusion_counts"]
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 2 and "val_loss" in rows[0]
    with pytest.raises(RunExistsError, match="--overwrite"):
        train(_recipe(tmp_path, folder))
    assert (run / "model.keras").is_file()  # untouched by the refused run


def test_two_stage_transfer_and_fine_tune(tmp_path, folder):
    recipe = _recipe(tmp_path, folder, epochs=1, fine_tune={"epochs": 1, "learning_rate": 1e-4, "unfreeze": 5})
    recipe.model.name = "backbone_head"
    recipe.model.options = {"backbone": "MobileNet", "alpha": 0.25, "weights": None}
    result = train(recipe)
    rows = list(csv.DictReader((result.run_dir / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    backbone = result.model.get_layer("backbone")
    assert any(layer.trainable for layer in backbone.layers)  # stage 2 unfroze the top


def test_fine_tune_on_a_model_without_backbone_is_refused(tmp_path, folder):
    with pytest.raises(ConfigError, match="no pretrained backbone"):
        train(_recipe(tmp_path, folder, epochs=1, fine_tune={"epochs": 1}))


@pytest.mark.slow  # 35-55 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_interrupted_run_resumes(tmp_path, folder):
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    recipe = _recipe(tmp_path, folder, epochs=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(recipe, callbacks=[Boom()])
    result = train(recipe, resume=True)
    epochs = [int(r["epoch"]) for r in csv.DictReader((result.run_dir / "history.csv").open())]
    assert epochs[-1] == 3 and 2 in epochs and len(result.history["loss"]) == 2  # only epochs 2-3 re-run


def test_unknown_model_fails_before_touching_disk(tmp_path, folder):
    recipe = _recipe(tmp_path, folder)
    recipe.model.name = "simple_cn"
    with pytest.raises(ConfigError, match="simple_cnn"):
        train(recipe)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_mixup_policy_trains_with_one_hot_labels(tmp_path, folder):
    recipe = _recipe(tmp_path, folder, epochs=1)
    recipe.data.augment = "mixup"
    result = train(recipe)
    again = _recomputed_test_metrics(result.run_dir, folder)  # evaluated on the true (not mixed) labels
    assert result.metrics["test"]["accuracy"] == pytest.approx(again["accuracy"])
    assert result.metrics["test"]["confusion_counts"] == again["confusion_counts"]
    assert np.isfinite(result.history["loss"]).all()


def test_autoencoder_trains_on_an_unlabelled_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    images, _ = square_images(n_per_class=10, size=32, classes=3)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"p{i}.png")  # no class subfolders
    recipe = Recipe.from_dict({
        "name": "ae", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "unlabelled", "path": str(folder), "image_size": [32, 32], "batch_size": 8},
        "model": {"name": "conv_autoencoder", "latent_dim": 8, "filters": [8, 16]},
        "train": {"epochs": 3, "verbose": 0, "monitor": "val_accuracy", "optimizer": {"learning_rate": 0.003}},
    })
    result = train(recipe)
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert 0.0 <= result.metrics["test"]["mse"] < 0.2
    for name in ("reconstructions.png", "curves.png", "model.keras"):
        assert (result.run_dir / name).is_file(), name

    assert load_model(result.model_path).meta["task"] == "autoencoder"


def test_training_does_not_leak_its_mixed_precision_policy(tmp_path, folder):
    before = keras.mixed_precision.global_policy().name
    result = train(_recipe(tmp_path, folder, epochs=1, mixed_precision="mixed_bfloat16"))
    assert result.metrics["speed"]["mixed_precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before


def _write_colours(root, n_per_class=16, size=24):
    """Three trivially separable classes: noisy red, green and blue images."""
    rng = np.random.default_rng(0)
    for cls, rgb in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            img = np.clip(np.array(rgb) + rng.integers(-40, 40, size=(size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(root / cls / f"{cls}_{i}.png")
    return root


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_strategy_option_is_used_by_train_and_recorded(tmp_path):
    """``train.strategy: mirrored`` goes through train(): the run records it and still learns."""
    folder = _write_colours(tmp_path / "colours")
    recipe = _recipe(tmp_path, folder, epochs=3, strategy="mirrored")
    recipe.model.options = {"bn_momentum": 0.0}  # moving statistics usable after a dozen steps
    result = train(recipe)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    replicas = tf.distribute.MirroredStrategy().num_replicas_in_sync
    assert metrics["speed"]["strategy"] == "mirrored" and metrics["speed"]["replicas"] == replicas
    assert metrics["speed"]["global_batch_size"] == 8 * replicas  # data.batch_size is per replica
    assert result.history["accuracy"][-1] >= 0.9  # chance is 1/3
    assert metrics["test"]["accuracy"] >= 6 / 9 - 1e-9 and metrics["test"]["n"] == 9
    again = _recomputed_test_metrics(result.run_dir, folder)
    assert metrics["test"]["accuracy"] == pytest.approx(again["accuracy"])


def test_odd_batches_are_evened_only_for_models_that_train_a_strided_1x1_conv():
    """TF 2.21's oneDNN weight gradient of a 1x1 stride-2 conv (keras.applications ResNets'
    shortcut) segfaults on odd batches: fit_stage evens the batches of such models only."""
    resnet = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    assert has_trainable_strided_1x1(resnet)
    resnet.trainable = False
    assert not has_trainable_strided_1x1(resnet)
    mobilenet = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.25)
    assert not has_trainable_strided_1x1(mobilenet)  # its stride-2 convs are 3x3 or depthwise
    ds = tf.data.Dataset.range(41).batch(32).map(lambda i: (tf.cast(i, "float32"), i % 2, tf.ones_like(i)))
    sizes = [int(x.shape[0]) for x, _, _ in even_batches(ds)]
    assert sizes == [32, 8]
    one = tf.data.Dataset.range(33).batch(32).map(lambda i: (i, i))
    assert [int(x.shape[0]) for x, _ in even_batches(one)] == [32]  # a 1-image batch is skipped


def test_a_strided_1x1_conv_trains_on_evened_batches_without_crashing():
    """41 images at batch 32 end in a batch of 9, which crashed the process (run apart)."""
    script = ("import numpy as np, keras, tensorflow as tf\n"
              "from kerasclf.train.fit import even_batches\n"
              "i = keras.Input((16, 16, 3)); x = keras.layers.Conv2D(8, 3, padding='same')(i)\n"
              "x = keras.layers.Conv2D(16, 1, strides=2)(x); x = keras.layers.GlobalAveragePooling2D()(x)\n"
              "m = keras.Model(i, keras.layers.Dense(2)(x))\n"
              "m.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
              "x = np.random.default_rng(0).uniform(0, 1, (41, 16, 16, 3)).astype('float32')\n"
              "ds = tf.data.Dataset.from_tensor_slices((x, np.arange(41) % 2)).batch(32)\n"
              "m.fit(even_batches(ds), epochs=2, verbose=0)\n"
              "print('trained')\n")
    run_apart(script)
