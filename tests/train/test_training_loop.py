"""Issue 11's training-loop tools: one-cycle, per-variable LR factors, the LR finder, the cached
frozen stage, layer groups, class weights, exact resume, determinism and TensorBoard logs."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasclf.cli import main
from kerasclf.data.augment import get_policy
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError
from kerasclf.io import load_model
from kerasclf.train import fit as fit_module
from kerasclf.train.cached import can_cache, head_model
from kerasclf.train.callbacks import TensorBoardLogger
from kerasclf.train.finetune import open_groups, unfreeze_groups
from kerasclf.train import load_recipe
from kerasclf.train.fit import _class_weight, lr_find_recipe, prepare_run_dir, train
from kerasclf.train.lr_find import lr_find
from kerasclf.train.optim import OneCycle, with_lr_factors
from kerasclf.train.recipe import FineTuneCfg, LRFindCfg, Recipe
from kerasclf.zoo import build, set_backbone_trainable


def _spec(n=48, size=32, seed=0):
    """Two classes a tiny CNN separates: bright left half vs bright right half, plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, size, size, 3)).astype("uint8")
    y = np.arange(n) % 2
    x[y == 0, :, : size // 2] += 150
    x[y == 1, :, size // 2:] += 150
    return DataSpec.from_arrays(x, y, ["left", "right"])


def _recipe(tmp_path, name="r", **train_cfg):
    return Recipe.from_dict({
        "name": name, "output_dir": str(tmp_path / "runs"),
        "data": {"source": "digits", "image_size": [32, 32], "batch_size": 8, "split": {"seed": 1}},
        "model": {"name": "simple_cnn"},
        "train": {"epochs": 3, "verbose": 0, "mixed_precision": None, "jit_compile": False,
                  "steps_per_execution": 1, **train_cfg},
    })


def test_one_cycle_rises_to_the_peak_then_anneals():
    s = OneCycle(0.1, total_steps=100, warmup=0.25, div_factor=10, final_div=100)
    lrs = np.array([float(s(k)) for k in range(101)])
    assert lrs[0] == pytest.approx(0.01) and lrs.argmax() == 25 and lrs[25] == pytest.approx(0.1)
    assert lrs[100] == pytest.approx(0.001, rel=1e-4)
    assert np.all(np.diff(lrs[:26]) > 0) and np.all(np.diff(lrs[25:]) < 0)


def test_lr_factors_scale_each_variables_update():
    a, b = keras.layers.Dense(1, use_bias=False), keras.layers.Dense(1, use_bias=False)
    a.build((None, 1))
    b.build((None, 1))
    opt = with_lr_factors(keras.optimizers.SGD(0.1, momentum=0.0), {a.kernel.path: 0.25})
    before = [np.array(a.kernel), np.array(b.kernel)]
    opt.apply([np.ones((1, 1), "float32"), np.ones((1, 1), "float32")], [a.kernel, b.kernel])
    da, db = before[0] - np.array(a.kernel), before[1] - np.array(b.kernel)
    assert db.item() == pytest.approx(0.1) and da.item() == pytest.approx(0.025)
    assert keras.saving.serialize_keras_object(opt)["class_name"] == "SGD"


def test_lr_finder_suggests_an_lr_in_range_and_puts_the_weights_back():
    spec = _spec(64)
    x = spec.images.astype("float32") / 255.0
    ds = __import__("tensorflow").data.Dataset.from_tensor_slices((x, spec.labels)).batch(16)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    w0 = [np.array(w) for w in model.get_weights()]

    def compile_fn(opt):
        model.compile(opt, "sparse_categorical_crossentropy")

    result = lr_find(model, ds, compile_fn, LRFindCfg(start=1e-5, end=10.0, steps=60))
    assert all(np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))
    for name in ("valley", "steepest"):  # each suggestion sits where the loss had already come down
        at = int(np.argmin(np.abs(np.log(result.lrs) - np.log(result.suggestion(name)))))
        assert result.smoothed[at] < result.smoothed[0], (name, result.suggestion(name))
    assert np.all(np.diff(result.lrs) > 0) and result.smoothed.min() < result.smoothed[0]
    reg = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    with pytest.raises(ConfigError, match="diverged after .* steps.*lower train.lr_find.start"):
        lr_find(reg, ds, lambda opt: reg.compile(opt, "mse"), LRFindCfg(start=1e3, end=1e6, steps=20),
                optimizer=lambda sweep: keras.optimizers.SGD(sweep))


@pytest.fixture(scope="module")
def mobilenet():
    return build("backbone_head", num_classes=3, backbone="MobileNet", alpha=0.25, weights=None,
                 input_shape=(32, 32, 3))


def test_head_model_on_features_equals_the_full_model(mobilenet):
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    feats = keras.Model(mobilenet.inputs, mobilenet.get_layer("features").output).predict_on_batch(x)
    head = head_model(mobilenet)
    np.testing.assert_allclose(head.predict_on_batch(feats), mobilenet.predict_on_batch(x), atol=1e-5)
    assert {id(w) for w in head.weights} <= {id(w) for w in mobilenet.weights}  # shared, not copied
    assert can_cache(mobilenet)
    set_backbone_trainable(mobilenet, 5)
    assert not can_cache(mobilenet)
    set_backbone_trainable(mobilenet, False)


def test_layer_groups_stem_to_head_and_gradual_opening(mobilenet):
    groups = unfreeze_groups(mobilenet, FineTuneCfg(unfreeze=True, groups=3))
    backbone = mobilenet.get_layer("backbone")
    order = {id(layer): i for i, layer in enumerate(backbone.layers)}
    firsts = [min(order[id(layer)] for layer in g if id(layer) in order) for g in groups]
    assert len(groups) == 3 and firsts == sorted(firsts)
    assert mobilenet.get_layer("predictions") in groups[-1]
    assert not any(layer.trainable for layer in backbone.layers
                   if isinstance(layer, keras.layers.BatchNormalization))  # freeze_bn
    open_groups(mobilenet, groups, 1)
    assert all(layer.trainable for layer in groups[2]) and not any(layer.trainable for layer in groups[0])
    set_backbone_trainable(mobilenet, False)


def test_discriminative_lrs_on_a_model_without_backbone_are_refused(tmp_path):
    recipe = _recipe(tmp_path, epochs=1, fine_tune={"epochs": 1, "groups": 3, "lr_decay": 0.3})
    with pytest.raises(ConfigError, match="no pretrained backbone.*lr_decay"):
        train(recipe, spec=_spec())
    with pytest.raises(ConfigError, match="groups >= 2"):
        Recipe.from_dict({"train": {"fine_tune": {"lr_decay": 0.3}}})


def test_balanced_class_weight_reaches_fit(tmp_path):
    spec = _spec(40)
    spec.labels[:] = np.r_[np.zeros(30, int), np.ones(10, int)]
    data = type("D", (), {"spec": spec, "parts": {"train": np.arange(40)}})()
    w = _class_weight(_recipe(tmp_path, class_weight="balanced").train, data, False)
    assert w[0] == pytest.approx(40 / (2 * 30)) and w[1] == pytest.approx(40 / (2 * 10))
    assert _class_weight(_recipe(tmp_path).train, data, False) is None


def _weights(run_dir):
    return load_model(run_dir / "model.keras").model.get_weights()


@pytest.mark.slow  # four training runs: ~40 s on 2 quiet cores
def test_exact_resume_after_a_crash_mid_epoch(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 1:
                raise RuntimeError("killed mid-epoch")

    cfg = dict(epochs=4, deterministic=True, schedule={"name": "one_cycle"}, optimizer={"name": "sgd",
               "learning_rate": 0.05})

    def recipe(name, **more):  # augmented too: its draws are keyed by epoch and batch like the shuffle
        r = _recipe(tmp_path, name, **{**cfg, **more})
        r.data.augment = "light"
        return r

    full = train(recipe("full"), spec=_spec())
    with pytest.raises(RuntimeError, match="mid-epoch"):
        train(recipe("cut"), spec=_spec(), callbacks=[Crash()])
    resumed = train(recipe("cut"), spec=_spec(), resume=True)
    assert len(resumed.history["loss"]) == 2  # epochs 2 and 3 ran again, 0-1 came from the backup
    for a, b in zip(_weights(full.run_dir), _weights(resumed.run_dir)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="recipe changed.*train.epochs: 4 -> 5.*--overwrite"):
        train(recipe("cut", epochs=5), spec=_spec(), resume=True)


def test_a_resumed_run_reads_only_the_epochs_it_trains(tmp_path, monkeypatch):
    """--resume replayed every pass over the training pipeline a finished epoch had made (two per epoch)
    to restore its shuffle and augmentation state; with passes keyed by epoch it reads none of them."""
    made = []  # training batches the pipeline augmented (a counting policy wraps the recipe's)

    def counting(name, **kw):
        real = get_policy(name, **kw)

        def policy(images, labels):
            images = tf.numpy_function(lambda x: made.append(len(x)) or x, [images], tf.float32, stateful=True)
            return real(tf.ensure_shape(images, [None, 32, 32, 3]), labels)
        return policy

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("killed")

    monkeypatch.setattr(fit_module, "get_policy", counting)
    recipe = _recipe(tmp_path, "count", epochs=4, ood=False)
    recipe.data.augment = "light"
    with pytest.raises(RuntimeError, match="killed"):
        train(recipe, spec=_spec(), callbacks=[Crash()])
    made.clear()
    result = train(recipe, spec=_spec(), resume=True)
    steps = int(np.ceil(result.metrics["split_sizes"]["train"] / 8))
    assert len(result.history["loss"]) == 2 and len(made) >= 2 * steps  # epochs 2 and 3 trained
    # at most a pass per epoch trained, one per epoch that Keras opens and drops, one to build the model;
    # replaying the two finished epochs' passes (2 each) made at least 6
    assert len(made) <= 5 * steps, (len(made), steps)


@pytest.mark.slow  # two training runs: ~30 s on 2 quiet cores
def test_deterministic_runs_agree(tmp_path):
    cfg = dict(epochs=2, deterministic=True)
    a = train(_recipe(tmp_path, "a", **cfg), spec=_spec())
    b = train(_recipe(tmp_path, "b", **cfg), spec=_spec())
    timing = ("train_time_s", "train_images_per_s")
    ma, mb = (json.loads((r.run_dir / "metrics.json").read_text()) for r in (a, b))
    assert {k: v for k, v in ma.items() if k not in timing} == {k: v for k, v in mb.items() if k not in timing}
    for wa, wb in zip(_weights(a.run_dir), _weights(b.run_dir)):
        np.testing.assert_array_equal(wa, wb)


def test_tensorboard_logs_scalars_lr_and_images(tmp_path):
    spec = _spec(16)
    x, y = spec.images.astype("float32"), spec.labels
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    model.compile(keras.optimizers.SGD(OneCycle(0.1, total_steps=4, warmup=0.5)), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[TensorBoardLogger(tmp_path / "tb", images=x[:3])])
    tags = {}
    for path in (tmp_path / "tb").rglob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                tags.setdefault(f"{path.parent.name}/{v.tag}", []).append(float(tf.make_ndarray(v.tensor))
                                                                          if v.tag != "images" else 0.0)
    assert len(tags["train/epoch_loss"]) == 2 and len(tags["validation/epoch_accuracy"]) == 2
    assert tags["train/epoch_learning_rate"] == pytest.approx([float(OneCycle(0.1, 4, 0.5)(k)) for k in (2, 4)])
    assert len(tags["validation/images"]) == 1


@pytest.mark.slow  # a transfer run with a sweep and three fits: ~35 s
def test_transfer_run_with_found_lr_cached_stage_and_gradual_discriminative_fine_tune(tmp_path):
    recipe = _recipe(tmp_path, "ft", epochs=1, optimizer={"name": "adam", "learning_rate": "find"},
                     lr_find={"steps": 20, "start": 1e-5, "end": 1.0}, class_weight="balanced",
                     fine_tune={"epochs": 2, "learning_rate": 1e-4, "unfreeze": True, "groups": 2, "lr_decay": 0.5,
                                "gradual": True, "schedule": "one_cycle"})
    recipe.model.name = "backbone_head"
    recipe.model.options = {"backbone": "MobileNet", "alpha": 0.25, "weights": None}
    result = train(recipe, spec=_spec(32))
    run = result.run_dir
    found = json.loads((run / "lr_find.json").read_text())
    assert found["used"] == pytest.approx(found["suggestions"]["valley"])  # the recipe's suggestion, used
    assert json.loads((run / "checkpoints" / "stage1.json").read_text())["cached_views"] == 1
    assert (run / "checkpoints" / "stage2.1.json").is_file() and len(result.history["loss"]) == 3
    backbone = result.model.get_layer("backbone")
    assert any(layer.trainable for layer in backbone.layers)  # both groups open at the end


class _CompiledWith(keras.callbacks.Callback):
    """Records what each fitted model was compiled with."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append((self.model.name, int(self.model.steps_per_execution), self.model.jit_compile))


def test_cached_frozen_stage_uses_the_runs_speed_settings(tmp_path, capsys):
    """The cached head compiles with the run's steps_per_execution (it was hard-coded to 16), and a
    run with verbose 0 that finds its LR prints nothing."""
    recipe = _recipe(tmp_path, "spe", epochs=1, steps_per_execution=3, cache_frozen=True,
                     optimizer={"name": "adam", "learning_rate": "find"},
                     lr_find={"steps": 20, "start": 1e-5, "end": 1.0})
    recipe.model.name = "backbone_head"
    recipe.model.options = {"backbone": "MobileNet", "alpha": 0.25, "weights": None}
    seen = _CompiledWith()
    result = train(recipe, spec=_spec(32), callbacks=[seen])
    assert json.loads((result.run_dir / "checkpoints" / "stage1.json").read_text())["cached_views"] == 1
    assert seen.seen and all(spe == 3 and jit is False for _, spe, jit in seen.seen), seen.seen
    assert (result.run_dir / "lr_find.json").is_file()
    assert "lr-find" not in capsys.readouterr().out  # verbose 0: _resolve_lr printed its suggestion before


@pytest.mark.slow  # over 20 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_lr_find_recipe_applies_the_runs_speed_settings(tmp_path, monkeypatch):
    """``kerasclf lr-find`` sweeps the model compiled as train() compiles it: the recipe's
    steps_per_execution and XLA setting and its dtype policy (it used steps_per_execution 16, jit auto)."""
    seen = []

    def spy(model, ds, compile_fn, cfg, **kw):
        result = lr_find(model, ds, compile_fn, cfg, **kw)
        seen.append((int(model.steps_per_execution), model.jit_compile, keras.mixed_precision.global_policy().name))
        return result

    monkeypatch.setattr(fit_module, "lr_find", spy)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # a policy left by something else is reset
    try:
        recipe = _recipe(tmp_path, "lrf", steps_per_execution=3, lr_find={"steps": 20, "start": 1e-5, "end": 1.0})
        lr_find_recipe(recipe, out=tmp_path / "lr.png", spec=_spec(32))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert seen == [(3, False, "float32")] and (tmp_path / "lr.png").is_file()


def test_lr_find_command_writes_into_the_run_folder_and_never_overwrites(tmp_path, monkeypatch, capsys):
    """`kerasclf lr-find RECIPE --set output_dir=D` wrote lr_find.png into the current folder (and replaced
    one there); now the plot and its sweep go to D/<name>/lr_find/, kept unless --overwrite, and a
    later `train` of that recipe goes into the same run folder."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "D"
    args = ["lr-find", "demo", "--set", f"output_dir={runs}", "--set", "train.lr_find.steps=20",
            "--set", "train.lr_find.end=1.0"]
    assert main(args) == 0
    plot = runs / "demo" / "lr_find" / "lr_find.png"
    sweep = json.loads(plot.with_suffix(".json").read_text())
    printed = capsys.readouterr().out
    assert f"valley {sweep['suggestions']['valley']:.2e}" in printed and str(plot) in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]  # nothing in the current folder
    assert len(sweep["lrs"]) == len(sweep["smoothed"]) >= 5 and sweep["stage"] == 1
    before = plot.read_bytes()
    assert main(args) == 2  # the plot is there: refused, before any sweep, the file untouched
    assert "--overwrite" in capsys.readouterr().err and plot.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0
    run_dir = prepare_run_dir(load_recipe("demo", [f"output_dir={runs}"]))  # the run trains into it
    assert run_dir == runs / "demo" and plot.is_file()
