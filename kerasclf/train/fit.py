"""Run one recipe end to end: data → split manifest → model → stages → evaluation → artefacts.

Everything a run writes goes into one folder, ``<output_dir>/<name>/``:
``recipe.yaml`` (as run), ``split.csv`` (manifest), ``history.csv``, ``batch_loss.csv``,
``checkpoints/best.keras``, ``model.keras``, ``metrics.json``, ``curves.png``, ``confusion.png``
and ``skipped.csv`` (files that could not be read, with the reason).

Example:
    >>> from kerasclf.train import train, load_recipe          # doctest: +SKIP
    >>> result = train(load_recipe("demo"))
    >>> result.metrics["test"]["accuracy"]
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, RunExistsError
from kerasclf.train.recipe import Recipe

__all__ = ["train", "RunResult", "prepare_run_dir", "compile_for_task", "predict_dataset"]


@dataclass
class RunResult:
    """What a finished run produced: its folder, final model path and metrics."""

    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    model: Any = None


def prepare_run_dir(recipe: Recipe, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``output_dir/name``; refuse to touch an existing one without overwrite/resume."""
    run_dir = Path(recipe.output_dir) / recipe.name
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            return run_dir
        if not overwrite:
            raise RunExistsError(str(run_dir))
        if not (run_dir / "recipe.yaml").is_file():
            raise ConfigError(f"{run_dir} exists and is not a kerasclf run folder (no recipe.yaml); "
                              f"refusing to delete it even with --overwrite; choose another name")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def compile_for_task(model: Any, task: str, optimizer: Any, *, label_smoothing: float = 0.0,
                     one_hot: bool = False, jit_compile: Any = "auto", steps_per_execution: int = 1) -> None:
    """Compile with the loss and metrics that fit the task (binary / multiclass / multilabel).

    ``one_hot``: multiclass labels arrive one-hot (label smoothing, MixUp, CutMix).
    """
    import keras

    if task == "multiclass":
        if label_smoothing or one_hot:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    elif task in ("binary", "multilabel"):
        loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc",
                                                                                   multi_label=task == "multilabel")]
    else:
        raise ConfigError(f"unknown task '{task}'; use binary, multiclass or multilabel")
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)


def predict_dataset(model: Any, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)`` over a finite dataset, aligned batch by batch."""
    ys, ps = [], []
    for images, labels in ds:
        ps.append(np.asarray(model.predict_on_batch(images)))
        ys.append(np.asarray(labels))
    if not ys:
        return np.zeros((0,)), np.zeros((0,))
    return np.concatenate(ys), np.concatenate(ps)


def _load_spec(recipe: Recipe) -> DataSpec:
    from kerasclf.data import sources

    return sources.load({"source": recipe.data.source, **recipe.data.options})


def _one_hot(num_classes: int):  # for label smoothing with multiclass
    import tensorflow as tf

    def f(x, y):
        return x, tf.one_hot(tf.cast(y, tf.int32), num_classes)

    return f


def train(recipe: Recipe, **kwargs: Any) -> RunResult:
    """Train the recipe's model on its data and write the run folder (see :func:`_train`).

    Keras's global dtype policy (mixed precision) is restored afterwards, so a run never changes
    how models built later in the same process compute.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    try:
        return _train(recipe, **kwargs)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train(recipe: Recipe, *, spec: DataSpec | None = None, overwrite: bool = False,
          resume: bool = False, verbose: int | None = None,
          callbacks: list[Any] | None = None, evaluate_test: bool = True) -> RunResult:
    """Train the recipe's model on its data and write the run folder.

    Args:
        recipe: a validated :class:`~kerasclf.train.recipe.Recipe`.
        spec: data to use instead of the recipe's ``data`` source (Python API).
        overwrite: replace an existing run folder of the same name.
        resume: continue an interrupted run in the existing folder (BackupAndRestore).
        verbose: Keras progress-bar verbosity (default: the recipe's ``train.verbose``).
        callbacks: extra Keras callbacks, added to both stages.
        evaluate_test: score the test split too; ``compare`` turns this off so that only the
            model chosen on validation ever sees the test set.
    """
    import keras

    from kerasclf.data import pipeline, splits
    from kerasclf.zoo import build, get_cfg
    from kerasclf.zoo.transfer import set_backbone_trainable
    from kerasclf.train.callbacks import make_callbacks
    from kerasclf.train.distribute import (chief_path, is_chief, make_strategy, num_replicas, scaled_batch_and_lr,
                                          shard_by_data, tf_config)
    from kerasclf.train.optim import make_optimizer
    from kerasclf.train.speed import apply_speed_settings

    cfg_t = recipe.train
    verbose = cfg_t.verbose if verbose is None else verbose
    # first: MultiWorkerMirroredStrategy must exist before any other TensorFlow work
    strategy = make_strategy(cfg_t.strategy)
    model_cfg = get_cfg(recipe.model.name)  # fail fast on an unknown model, before touching disk
    spec = spec if spec is not None else _load_spec(recipe)
    run_dir = prepare_run_dir(recipe, overwrite=overwrite, resume=resume)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml())
    keras.utils.set_random_seed(cfg_t.seed)
    # measured defaults for "auto": mixed precision, XLA, steps per execution (train/speed.py)
    speed = apply_speed_settings(cfg_t, model=recipe.model.options.get("backbone", recipe.model.name))
    replicas = num_replicas(strategy)
    batch_size, base_lr = scaled_batch_and_lr(recipe.data.batch_size, cfg_t.optimizer.learning_rate, replicas)
    if replicas > 1:
        cfg_t = dataclasses.replace(cfg_t, optimizer=dataclasses.replace(cfg_t.optimizer, learning_rate=base_lr))
    if not is_chief():  # multi-worker: only the chief writes the real run folder
        run_dir = chief_path(run_dir)

    s = recipe.data.split
    manifest = Path(s.manifest) if s.manifest else run_dir / "split.csv"
    parts = splits.split_or_reuse(spec, manifest, (s.train, s.val, s.test), s.seed)
    if manifest != run_dir / "split.csv":
        shutil.copyfile(manifest, run_dir / "split.csv")

    size = tuple(recipe.data.image_size or model_cfg.input_shape[:2])
    channels = model_cfg.input_shape[2] if len(model_cfg.input_shape) > 2 else 3
    policy = None
    if recipe.data.augment not in (None, "none", False):
        from kerasclf.data.augment import get_policy

        policy = get_policy(recipe.data.augment, image_size=size, seed=cfg_t.seed,
                            num_classes=spec.num_classes if spec.task == "multiclass" else None)
    policy_one_hot = bool(getattr(policy, "one_hot_labels", False))  # MixUp / CutMix
    one_hot = spec.task == "multiclass" and (bool(cfg_t.label_smoothing) or policy_one_hot)

    def ds(name: str, training: bool, *, plain: bool = False) -> Any:
        if name not in parts or len(parts[name]) == 0:
            return None
        d = pipeline.make_dataset(spec, parts[name], image_size=size, channels=channels,
                                  batch_size=batch_size, shuffle=training,
                                  seed=cfg_t.seed, cache=recipe.data.cache,
                                  augment=policy if training else None)
        if one_hot and not plain and not (training and policy_one_hot):
            d = d.map(_one_hot(spec.num_classes))
        if replicas > 1 and tf_config():  # workers split in-memory datasets by element
            d = shard_by_data(d)
        return d

    train_ds, val_ds, test_ds = ds("train", True), ds("val", False), ds("test", False)
    if train_ds is None:
        raise ConfigError(f"{recipe.name}: the training split is empty; check data.split ratios")

    with _scope(strategy):
        model = build(recipe.model.name, num_classes=spec.num_classes, task=spec.task,
                      input_shape=(*size, channels), **recipe.model.options)
    autoencoder = model_cfg.family == "autoencoder"
    if autoencoder:  # unlabelled reconstruction: target = input in 0..1, MSE, monitored on val_loss
        from kerasclf.train.autoencoder import as_reconstruction

        train_ds, val_ds, test_ds = (as_reconstruction(d) if d is not None else None
                                     for d in (train_ds, val_ds, test_ds))
        if "acc" in cfg_t.monitor:
            cfg_t = dataclasses.replace(cfg_t, monitor="val_loss")
    n_train = len(parts["train"])
    steps = cfg_t.steps_per_epoch or int(np.ceil(n_train / batch_size))
    if cfg_t.steps_per_epoch:
        train_ds = train_ds.repeat()

    def compile_with(opt: Any) -> None:  # both stages: the run's loss, metrics and speed settings
        fast = dict(jit_compile=speed["jit_compile"], steps_per_execution=speed["steps_per_execution"])
        if autoencoder:
            model.compile(optimizer=opt, loss="mse", **fast)
        else:
            compile_for_task(model, spec.task, opt, label_smoothing=cfg_t.label_smoothing, one_hot=one_hot, **fast)

    with _scope(strategy):
        compile_with(make_optimizer(cfg_t.optimizer, cfg_t.schedule, steps_per_epoch=steps, epochs=cfg_t.epochs))

    fit_kw = dict(validation_data=val_ds, steps_per_epoch=cfg_t.steps_per_epoch, verbose=verbose,
                  shuffle=False)  # the tf.data pipeline shuffles
    history: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    done_marker = run_dir / "checkpoints" / "stage1.json"
    if resume and done_marker.is_file():
        stage1 = json.loads(done_marker.read_text())
        model.load_weights(run_dir / "checkpoints" / "stage1.weights.h5")
        epochs_done, best = stage1["epochs"], stage1.get("best")
    else:
        cbs = make_callbacks(cfg_t, run_dir, stage=1, has_validation=val_ds is not None,
                             schedule_active=cfg_t.schedule.name != "none") + list(callbacks or [])
        h = model.fit(train_ds, epochs=cfg_t.epochs, callbacks=cbs, **fit_kw)
        _merge(history, h.history)
        epochs_done = len(h.epoch) and (h.epoch[-1] + 1)
        best = _best(cbs)
        model.save_weights(run_dir / "checkpoints" / "stage1.weights.h5")
        done_marker.write_text(json.dumps({"epochs": int(epochs_done), "best": best}))

    ft = cfg_t.fine_tune
    if ft is not None and ft.epochs > 0:
        if model_cfg.backbone is None:
            raise ConfigError(f"train.fine_tune: model '{recipe.model.name}' has no pretrained backbone to "
                              f"unfreeze; remove train.fine_tune or use a transfer model")
        set_backbone_trainable(model, ft.unfreeze)
        with _scope(strategy):
            compile_with(make_optimizer(cfg_t.optimizer, None, learning_rate=ft.learning_rate * replicas))
        cbs = make_callbacks(cfg_t, run_dir, stage=2, has_validation=val_ds is not None) + list(callbacks or [])
        for cb in cbs:  # the best checkpoint must beat stage 1's best, not start from scratch
            if isinstance(cb, keras.callbacks.ModelCheckpoint) and best is not None:
                cb.best = best
        h = model.fit(train_ds, epochs=epochs_done + ft.epochs, initial_epoch=epochs_done,
                      callbacks=cbs, **fit_kw)
        _merge(history, h.history)
    train_time = time.perf_counter() - t0

    best_path = run_dir / "checkpoints" / "best.keras"
    if best_path.is_file():
        model.load_weights(best_path)  # the weights only; no second model is deserialised

    meta = {"class_names": spec.class_names, "task": "autoencoder" if autoencoder else spec.task,
            "image_size": list(size),
            "model_name": recipe.model.name, "num_outputs": int(model.outputs[0].shape[-1]),
            "threshold": 0.5, "recipe": recipe.name}
    from kerasclf.io import save_model

    model_path = save_model(model, run_dir / "model.keras", meta=meta, overwrite=True)

    metrics: dict[str, Any] = {
        "model": recipe.model.name, "params": int(model.count_params()),
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "epochs": len(history.get("loss", [])), "train_time_s": round(train_time, 2),
        "train_images_per_s": round(n_train * max(1, len(history.get("loss", []))) / max(train_time, 1e-9), 1),
        "split_sizes": {k: int(len(v)) for k, v in parts.items()},
        "speed": {**speed, "strategy": cfg_t.strategy, "replicas": replicas, "global_batch_size": batch_size},
    }
    from kerasclf.analysis.metrics import classification_metrics, probs_to_pred
    from kerasclf.analysis.plots import plot_confusion, plot_history

    for name, d in (("val", val_ds), ("test", test_ds if evaluate_test else None)):
        if d is None:
            continue
        if autoencoder:
            from kerasclf.train.autoencoder import plot_reconstructions, reconstruction_error

            metrics[name] = {"mse": reconstruction_error(model, d)}
            if name == "val" or val_ds is None:
                plot_reconstructions(model, d, run_dir / "reconstructions.png")
            continue
        y, p = predict_dataset(model, ds(name, False, plain=True) if one_hot else d)
        metrics[name] = classification_metrics(y, p, spec.task, spec.class_names)
        if name == ("test" if evaluate_test else "val") and spec.task != "multilabel":
            plot_confusion(y.reshape(-1) if spec.task == "binary" else y,
                           probs_to_pred(p, spec.task, 0.5), spec.class_names, run_dir / "confusion.png")
    batch_loss = run_dir / "batch_loss.csv"
    plot_history(run_dir / "history.csv", run_dir / "curves.png",
                 batch_losses=batch_loss if batch_loss.is_file() else None)
    skipped = list(spec.skipped)
    if skipped:
        with (run_dir / "skipped.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason"])
            w.writerows(skipped)
        metrics["skipped_files"] = len(skipped)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return RunResult(run_dir=run_dir, model_path=model_path, metrics=metrics, history=history, model=model)


def _scope(strategy: Any) -> Any:
    """The strategy's scope on TensorFlow (build and compile inside it), else a no-op."""
    import contextlib

    import keras

    if strategy is not None and hasattr(strategy, "scope") and keras.backend.backend() == "tensorflow":
        return strategy.scope()
    return contextlib.nullcontext()


def _merge(history: dict[str, list[float]], new: dict[str, list[float]]) -> None:
    for k, v in new.items():
        history.setdefault(k, []).extend(float(x) for x in v)


def _best(callbacks: list[Any]) -> float | None:
    import keras

    for cb in callbacks:
        if isinstance(cb, keras.callbacks.ModelCheckpoint):
            if cb.best is None:
                return None
            b = float(cb.best)
            return b if np.isfinite(b) else None
    return None
