"""Run one recipe end to end, in named steps a reader can follow:

:func:`prepare_data` (source → split manifest → tf.data pipelines) → :func:`build_model` →
:func:`fit_stage` (stage 1; stage 2 unfreezes the backbone for fine-tuning) → :func:`finish_run`
(best weights, saved model, metrics, figures). :func:`train` composes them.

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

import contextlib
import csv
import dataclasses
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasclf._progress import fit_verbose
from kerasclf.analysis.metrics import classification_metrics, probs_to_pred
from kerasclf.analysis.ood import fit_split_detector, ood_path
from kerasclf.analysis.plots import plot_confusion, plot_history
from kerasclf.data import pipeline, splits
from kerasclf.data.augment import get_policy
from kerasclf.data.pipeline import Passes
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, RunExistsError
from kerasclf.export.compose import tta_model
from kerasclf.io import model_card, save_model, write_card
from kerasclf.train.autoencoder import as_reconstruction, plot_reconstructions, reconstruction_error
from kerasclf.train.budget import EpochClock, RunBudget, finish_reserve
from kerasclf.train.cached import FEATURES, can_cache, cached_features, feature_passes, head_model
from kerasclf.train.callbacks import EpochKey, make_callbacks, monitor_mode
from kerasclf.train.distribute import (
    chief_path,
    is_chief,
    make_strategy,
    num_replicas,
    scaled_batch_and_lr,
    shard_by_data,
    tf_config,
)
from kerasclf.train.finetune import open_groups, unfreeze_groups
from kerasclf.train.lr_find import lr_find, plot_lr_find
from kerasclf.train.optim import lr_factors, make_optimizer, with_lr_factors
from kerasclf.train.recipe import OptimizerCfg, Recipe, ScheduleCfg, TrainCfg
from kerasclf.train.resume import backup_epoch, best_so_far, check_same_data, check_same_recipe
from kerasclf.train.speed import apply_speed_settings
from kerasclf.zoo import ModelCfg, build, get_cfg
from kerasclf.zoo.cut import feature_model

__all__ = ["train", "RunResult", "RunData", "prepare_run_dir", "prepare_data", "build_model", "fit_stage",
           "finish_run", "lr_find_recipe", "lr_find_path", "compile_for_task", "predict_dataset", "LR_FIND_DIR"]


@dataclass
class RunResult:
    """What a finished run produced: its folder, final model path and metrics."""

    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    model: Any = None


#: the subfolder of a run folder where ``kerasclf lr-find`` writes (a run folder holding only it is not a run yet)
LR_FIND_DIR = "lr_find"


def prepare_run_dir(recipe: Recipe, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``output_dir/name``; refuse to touch an existing one without overwrite/resume. A folder
    holding nothing but ``kerasclf lr-find``'s :data:`LR_FIND_DIR` is trained into, that kept."""
    run_dir = Path(recipe.output_dir) / recipe.name
    if run_dir.exists() and any(p.name != LR_FIND_DIR for p in run_dir.iterdir()):
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


def _as_is(ds: Any) -> Any:
    return ds


@dataclass
class RunData:
    """The prepared data of a run: the spec, its split, the pipeline settings and the datasets.

    ``datasets`` holds ``train`` (its pass 0) / ``val`` / ``test`` (``None`` for an empty split) as the
    model is fitted on them (one-hot labels where the loss needs them, reconstruction targets for an
    autoencoder); :meth:`for_metrics` gives a split with its plain labels for scoring. The training
    split is read as :class:`~kerasclf.data.pipeline.Passes` keyed by number (:meth:`train_pass`,
    :meth:`train_epochs`, :meth:`train_stream`): epoch ``e`` reads pass ``e`` whatever came before, so
    a resumed run reads exactly what an uninterrupted one would, at no extra cost.
    """

    spec: DataSpec
    parts: dict[str, np.ndarray]
    image_size: tuple[int, int]
    channels: int
    batch_size: int
    one_hot: bool
    make: Callable[..., Any]
    passes: Passes
    fitted: Callable[[Any], Any] = _as_is  # a training dataset -> as fit reads it (one-hot, targets, sharding)
    datasets: dict[str, Any] = field(default_factory=dict)
    augmented: bool = False  # the training split is augmented
    shuffle: bool = True  # the training split is reshuffled every pass

    @property
    def steps(self) -> int:
        """Batches per training pass."""
        return self.passes.steps

    def train_pass(self, p: int) -> Any:
        """Training pass ``p``, as fit reads it."""
        return self.fitted(self.passes.one(p))

    def train_epochs(self, key: Any) -> Any:
        """The training pass the variable ``key`` names when an epoch's iterator starts (one per epoch)."""
        return self.fitted(self.passes.epochs(key))

    def train_stream(self, first: int = 0) -> Any:
        """Training passes ``first, first + 1, ...`` without end (the LR finder; ``train.steps_per_epoch``)."""
        return self.fitted(self.passes.stream(first))

    def mapped(self, fn: Callable[[Any], Any]) -> "RunData":
        """This data with ``fn`` applied to every dataset it gives (an autoencoder's reconstruction targets)."""
        fitted = self.fitted
        return dataclasses.replace(self, fitted=lambda ds: fn(fitted(ds)),
                                   datasets={k: fn(d) if d is not None else None for k, d in self.datasets.items()})

    def for_metrics(self, name: str) -> Any:
        """The split ``name`` with integer / 0-1 labels (what the metrics module reads)."""
        return self.make(name, plain=True) if self.one_hot else self.datasets[name]


def prepare_data(recipe: Recipe, spec: DataSpec, run_dir: Path, model_cfg: ModelCfg, *, batch_size: int,
                 replicas: int = 1) -> RunData:
    """Split the data (or reuse the manifest), copy the manifest into the run, build the pipelines."""
    cfg_d, cfg_t = recipe.data, recipe.train
    s = cfg_d.split
    manifest = Path(s.manifest) if s.manifest else run_dir / "split.csv"
    parts = splits.split_or_reuse(spec, manifest, (s.train, s.val, s.test), s.seed)
    if manifest != run_dir / "split.csv":  # the run's own copy, with the labels this run uses
        splits.write_manifest(run_dir / "split.csv", spec, parts)
    size = tuple(cfg_d.image_size or model_cfg.input_shape[:2])
    channels = cfg_d.channels or (model_cfg.input_shape[2] if len(model_cfg.input_shape) > 2 else 3)
    if channels not in (1, 3):
        raise ConfigError(f"data.channels: {channels} is not 1 (grayscale) or 3 (RGB)")
    policy = None
    if cfg_d.augment not in (None, "none", False):
        policy = get_policy(cfg_d.augment, image_size=size, seed=cfg_t.seed,
                            num_classes=spec.num_classes if spec.task == "multiclass" else None)
    policy_one_hot = bool(getattr(policy, "one_hot_labels", False))  # MixUp / CutMix
    one_hot = spec.task == "multiclass" and (bool(cfg_t.label_smoothing) or policy_one_hot)

    def fitted(d: Any, *, training: bool = True, plain: bool = False) -> Any:
        if one_hot and not plain and not (training and policy_one_hot):
            d = d.map(_one_hot(spec.num_classes))
        if replicas > 1 and tf_config():  # workers split in-memory datasets by element
            d = shard_by_data(d)
        return d

    def make(name: str, *, plain: bool = False) -> Any:
        """A validation / test split (the training split is read as ``passes``)."""
        if name not in parts or len(parts[name]) == 0:
            return None
        d = pipeline.make_dataset(spec, parts[name], image_size=size, channels=channels, batch_size=batch_size,
                                  cache=cfg_d.cache)
        return fitted(d, training=False, plain=plain)

    if len(parts.get("train", [])) == 0:
        raise ConfigError(f"{recipe.name}: the training split is empty; check data.split ratios")
    passes = pipeline.make_passes(spec, parts["train"], image_size=size, channels=channels, batch_size=batch_size,
                                  shuffle=cfg_d.shuffle, seed=cfg_t.seed, cache=cfg_d.cache, augment=policy)
    data = RunData(spec=spec, parts=parts, image_size=size, channels=channels, batch_size=batch_size,
                   one_hot=one_hot, make=make, passes=passes, fitted=fitted, augmented=policy is not None,
                   shuffle=bool(cfg_d.shuffle))
    data.datasets = {"train": data.train_pass(0), "val": make("val"), "test": make("test")}
    return data


def build_model(recipe: Recipe, data: RunData, strategy: Any) -> keras.Model:
    """The recipe's zoo model for this data (classes, task, input size), built in the strategy's scope."""
    with _scope(strategy):
        return build(recipe.model.name, num_classes=data.spec.num_classes, task=data.spec.task,
                     input_shape=(*data.image_size, data.channels), **recipe.model.options)


@dataclass
class _Stage:
    """What fitting one stage needs besides the model: its number, epochs and optimizer.

    ``optimizer`` is a factory: the optimizer must be created inside the strategy's scope.
    """

    number: int | str
    first_epoch: int
    epochs: int
    optimizer: Callable[[], Any]
    schedule_active: bool = False
    best: float | None = None  # the best monitored value so far (stage 2 must beat stage 1's)


def fit_stage(model: keras.Model, data: RunData, stage: _Stage, *, cfg_t: TrainCfg, run_dir: Path,
              compile_fn: Callable[[Any], None], strategy: Any, history: dict[str, list[float]],
              verbose: int, callbacks: list[Any] | None = None, class_weight: dict[int, float] | None = None,
              resume: bool = False) -> tuple[int, float | None]:
    """Compile with the stage's optimizer and fit; returns ``(epochs done in total, best monitored value)``.

    Epoch ``e`` reads training pass ``e`` (:class:`~kerasclf.train.callbacks.EpochKey`), so a resumed
    stage (``resume``, Keras's backup of it on disk) sees the batches an uninterrupted run would have
    seen without replaying anything; it keeps the best monitored value of ``history.csv``.
    """
    with _scope(strategy):
        compile_fn(stage.optimizer())
    val_ds = data.datasets["val"]
    images = next(iter(val_ds.take(1)))[0] if val_ds is not None else None
    cbs = make_callbacks(cfg_t, run_dir, stage=stage.number, has_validation=val_ds is not None,
                         schedule_active=stage.schedule_active, images=images) + list(callbacks or [])
    restored = backup_epoch(run_dir / "backup" / f"stage{stage.number}") if resume else 0
    if resume:
        monitor = cfg_t.monitor if val_ds is not None else cfg_t.monitor.replace("val_", "")
        stage.best = best_so_far(run_dir, monitor, monitor_mode(monitor)) if restored else stage.best
    for cb in cbs:
        if isinstance(cb, keras.callbacks.ModelCheckpoint) and stage.best is not None:
            cb.best = stage.best
    key = EpochKey(first=stage.first_epoch)
    if cfg_t.steps_per_epoch:  # epochs are not whole passes: passes follow one another, from where the run is
        first = max(stage.first_epoch, restored)  # Keras's backup records the epoch to start at
        train_ds = data.train_stream(first * cfg_t.steps_per_epoch // max(1, data.steps))
    else:
        train_ds = data.train_epochs(key.epoch)
    if has_trainable_strided_1x1(model):
        train_ds = even_batches(train_ds)
    with warnings.catch_warnings():  # a pass of unknown length ends by running out: that is the epoch's end
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        h = model.fit(train_ds, validation_data=val_ds, epochs=stage.first_epoch + stage.epochs,
                      initial_epoch=stage.first_epoch, steps_per_epoch=cfg_t.steps_per_epoch,
                      callbacks=[key, *cbs], verbose=verbose, shuffle=False,  # the tf.data pipeline shuffles
                      class_weight=class_weight)
    _merge(history, h.history)
    done = (h.epoch[-1] + 1) if h.epoch else stage.first_epoch
    return int(done), _best(cbs)


def has_trainable_strided_1x1(model: keras.Model) -> bool:
    """Whether ``model`` (nested models included) trains a 1x1 convolution with stride 2 (the
    shortcut of keras.applications' ResNets). TensorFlow 2.21's oneDNN weight gradient of that
    convolution corrupts memory on a batch of odd size (segfault; measured on this project's CPU
    hosts for batches 3, 5, 7, 9, ... and even sizes fine)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if (isinstance(layer, keras.layers.Conv2D) and layer.trainable
                and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (2, 2)):
            return True
    return False


def even_batches(ds: Any) -> Any:
    """``ds`` with each batch of odd size cut to the even size below it (an epoch's last, partial
    batch loses one image; a 1-image batch is skipped): see :func:`has_trainable_strided_1x1`.

    Example:
        >>> ds = tf.data.Dataset.range(7).batch(4).map(lambda x: (x, x))
        >>> [int(x.shape[0]) for x, _ in even_batches(ds)]
        [4, 2]
    """
    def size(*batch: Any) -> Any:
        return tf.shape(tf.nest.flatten(batch)[0])[0]

    def trim(*batch: Any) -> Any:
        even = size(*batch) // 2 * 2
        return tf.nest.map_structure(lambda t: t[:even], batch)
    return ds.map(trim).filter(lambda *batch: size(*batch) > 0)


def _fit_stage_one(model: keras.Model, data: RunData, *, cfg_t: TrainCfg, run_dir: Path, steps: int,
                   resume: bool, speed: dict[str, Any], budget: RunBudget | None = None,
                   **kw: Any) -> tuple[int, float | None]:
    """Stage 1 (or the only stage); a resumed run whose stage 1 finished loads its weights instead.
    ``speed``: the run's :func:`~kerasclf.train.speed.apply_speed_settings` (the cached head compiles with it).
    ``budget``: stop when the next epoch would not fit (:class:`~kerasclf.train.budget.EpochClock`)."""
    marker = run_dir / "checkpoints" / "stage1.json"
    if resume and marker.is_file():
        done = json.loads(marker.read_text())
        model.load_weights(run_dir / "checkpoints" / "stage1.weights.h5")
        return int(done["epochs"]), done.get("best")
    views = _cache_views(cfg_t, model, data, kw["strategy"])
    fit_model, fit_data, head = model, data, None
    clock = EpochClock(budget, _reserve_fn(data, cfg_t, budget))
    if views:  # the backbone is frozen: train the head on cached pooled features (train/cached.py)
        head = head_model(model)
        t0 = time.perf_counter()
        fit_model, fit_data = head, _cached_data(model, data, views, cfg_t)
        if budget is not None:  # the caching read every training view and the val split once
            n_read = len(data.parts["train"]) * views + len(data.parts.get("val", []))
            clock.measured_val(len(data.parts.get("val", [])) * (time.perf_counter() - t0) / max(n_read, 1))
            clock.reserve_fn = None  # the cached head's validation says nothing about reading images
        kw["compile_fn"] = _head_compile(head, data, cfg_t, speed)
    kw["callbacks"] = [*(kw.get("callbacks") or []), clock]
    lr = _resolve_lr(cfg_t.optimizer.learning_rate, fit_model, fit_data, cfg_t, cfg_t.optimizer, run_dir,
                     "stage1", resume, kw["compile_fn"], kw["verbose"])

    def optimizer() -> Any:
        return make_optimizer(cfg_t.optimizer, cfg_t.schedule, steps_per_epoch=steps, epochs=cfg_t.epochs,
                              learning_rate=lr)

    stage = _Stage(1, 0, cfg_t.epochs, optimizer, schedule_active=cfg_t.schedule.name != "none")
    epochs, best = fit_stage(fit_model, fit_data, stage, cfg_t=cfg_t, run_dir=run_dir, resume=resume, **kw)
    if head is not None:
        _full_model_checkpoint(model, head, run_dir)
    model.save_weights(run_dir / "checkpoints" / "stage1.weights.h5")
    marker.write_text(json.dumps({"epochs": epochs, "best": best, "cached_views": views}))
    return epochs, best


def _cache_views(cfg_t: TrainCfg, model: keras.Model, data: RunData, strategy: Any) -> int:
    """How many views of the training split stage 1 caches (0: it runs the backbone every epoch).

    ``cache_frozen: auto`` caches when it can (frozen backbone, one device, whole epochs): one view,
    or 2 augmented views with augmentation; an integer asks for that many views; ``true`` refuses
    a run where caching is impossible.
    """
    want = cfg_t.cache_frozen
    if want is False:
        return 0
    reason = None
    if not can_cache(model):
        reason = "the model has trainable layers before its 'features' layer (the backbone is not frozen)"
    elif num_replicas(strategy) > 1:
        reason = "the run is distributed over several devices"
    elif cfg_t.steps_per_epoch:
        reason = "train.steps_per_epoch is set (cached epochs are whole passes)"
    elif keras.backend.backend() != "tensorflow":
        reason = "the cached pipeline is tf.data (TensorFlow backend)"
    if reason:
        if want is True or isinstance(want, int) and not isinstance(want, bool):
            raise ConfigError(f"train.cache_frozen: cannot cache stage 1: {reason}; use cache_frozen: auto or false")
        return 0
    if isinstance(want, int) and not isinstance(want, bool):
        return max(1, int(want))
    return 2 if data.augmented else 1


def _cached_data(model: keras.Model, data: RunData, views: int, cfg_t: TrainCfg) -> RunData:
    """``data`` with the training and validation splits as cached pooled features: view ``v`` is
    training pass ``v``; the head's epoch ``e`` reads view ``e % views`` in an order keyed by ``e``."""
    cut = feature_model(model, FEATURES)  # one cut for both splits: its predict step is traced once
    xt, yt = cached_features(model, [data.train_pass(v) for v in range(views)], cut=cut)
    passes = feature_passes(xt, yt, data.batch_size, shuffle=data.shuffle, seed=cfg_t.seed)
    val = None
    if data.datasets["val"] is not None:
        xv, yv = cached_features(model, [data.datasets["val"]], cut=cut)
        val = tf.data.Dataset.from_tensor_slices((xv[0], yv[0])).batch(data.batch_size)
    return dataclasses.replace(data, passes=passes, fitted=_as_is,
                               datasets={"train": passes.one(0), "val": val, "test": None})


def _run_speed(recipe: Recipe) -> dict[str, Any]:
    """The recipe's speed settings, resolved and applied (Keras's dtype policy) by
    :func:`~kerasclf.train.speed.apply_speed_settings`; ``train`` and ``lr_find_recipe`` both call it."""
    return apply_speed_settings(recipe.train, model=recipe.model.options.get("backbone", recipe.model.name))


def _speed_kw(speed: dict[str, Any]) -> dict[str, Any]:
    """The ``compile`` arguments of the run's speed settings (what :func:`apply_speed_settings` chose)."""
    return {"jit_compile": speed["jit_compile"], "steps_per_execution": speed["steps_per_execution"]}


def _head_compile(head: keras.Model, data: RunData, cfg_t: TrainCfg, speed: dict[str, Any]) -> Callable[[Any], None]:
    """Compile ``head`` (or any classifier of the run) with the run's loss, metrics and speed settings."""
    def compile_fn(optimizer: Any) -> None:
        compile_for_task(head, data.spec.task, optimizer, label_smoothing=cfg_t.label_smoothing, one_hot=data.one_hot,
                         **_speed_kw(speed))

    return compile_fn


def _full_model_checkpoint(model: keras.Model, head: keras.Model, run_dir: Path) -> None:
    """The cached stage checkpointed the head model: make ``best.keras`` the full model with the best
    head weights (the head keeps its last weights, as an uncached stage 1 would)."""
    best = run_dir / "checkpoints" / "best.keras"
    if not best.is_file():
        return
    last = head.get_weights()
    head.load_weights(best)
    model.save(best)
    head.set_weights(last)


def _resolve_lr(value: float | str, model: keras.Model, data: RunData, cfg_t: TrainCfg, opt_cfg: OptimizerCfg,
                run_dir: Path, tag: str, resume: bool, compile_fn: Callable[[Any], None], verbose: int = 1) -> float:
    """A number stays; ``find`` runs the LR finder (weights put back), writes ``lr_find[_stage2].png`` and
    ``.json`` in the run folder and returns the suggestion (a resumed run reuses the saved one); the
    suggestion is printed unless ``verbose`` is 0."""
    if not isinstance(value, str):
        return float(value)
    stem = "lr_find" if tag == "stage1" else f"lr_find_{tag}"
    saved = run_dir / f"{stem}.json"
    if resume and saved.is_file():
        return float(json.loads(saved.read_text())["used"])
    result = lr_find(model, data.train_stream(0), compile_fn, cfg_t.lr_find,  # passes 0, 1, ...: training is unmoved
                     optimizer=lambda sweep: make_optimizer(opt_cfg, learning_rate=sweep))
    used = result.suggestion(cfg_t.lr_find.suggestion)
    plot_lr_find(result, run_dir / f"{stem}.png", chosen=cfg_t.lr_find.suggestion)
    saved.write_text(json.dumps({"used": used, "suggestion": cfg_t.lr_find.suggestion, "steps_run": result.steps_run,
                                 **result.to_dict()}))
    if verbose:
        print(f"lr-find ({tag}): valley {result.suggestions['valley']:.2e}, steepest "
              f"{result.suggestions['steepest']:.2e}; using {used:.2e} ({run_dir / f'{stem}.png'})")
    return used


def _check_fine_tune(recipe: Recipe, model_cfg: ModelCfg) -> None:
    """A fine-tuning stage needs a backbone: refused before stage 1 spends any time."""
    ft = recipe.train.fine_tune
    if ft is not None and ft.epochs > 0 and model_cfg.backbone is None:
        extra = " (lr_decay / gradual need its layer groups)" if ft.groups > 1 else ""
        raise ConfigError(f"train.fine_tune: model '{recipe.model.name}' has no pretrained backbone to "
                          f"unfreeze{extra}; remove train.fine_tune or use a transfer model")


def _fit_fine_tune(model: keras.Model, data: RunData, recipe: Recipe, model_cfg: ModelCfg, *, epochs_done: int,
                   best: float | None, replicas: int, steps: int, resume: bool, budget: RunBudget | None = None,
                   **kw: Any) -> None:
    """Stage 2: unfreeze (part of) the backbone in layer groups (train/finetune.py) and continue at the
    fine-tuning LR: one LR factor per group (``lr_decay``), the groups opened one per epoch (``gradual``).
    With a ``budget``, the first epoch runs at the full LR and is timed, and the last part of the plan
    gets the epochs that fit (:mod:`kerasclf.train.budget`)."""
    ft, cfg_t, run_dir = recipe.train.fine_tune, recipe.train, kw["run_dir"]
    _check_fine_tune(recipe, model_cfg)
    if budget is not None and not resume and not budget.epoch_fits(len(data.parts["train"])):
        budget.record(event="fine_tune_skipped", left_s=round(budget.left_s(), 1), reserve_s=round(budget.reserve_s, 1))
        if kw["verbose"]:
            print(f"budget {budget.minutes:g} min: {max(budget.left_s(), 0) / 60:.1f} min are left, too few for one "
                  f"fine-tuning epoch ({budget.reserve_s:.0f} s kept for scoring and saving); no fine-tuning. "
                  f"Raise train.budget_minutes to fine-tune", flush=True)
        return
    groups = unfreeze_groups(model, ft)
    factors = lr_factors(groups, ft.lr_decay) if ft.lr_decay < 1 else {}
    lr = _resolve_lr(ft.learning_rate, model, data, cfg_t, cfg_t.optimizer, run_dir, "stage2", resume,
                     kw["compile_fn"], kw["verbose"]) * replicas
    schedule = dataclasses.replace(cfg_t.schedule, name=ft.schedule)
    if ft.gradual:  # one more group per epoch, then the rest of the epochs with all of them
        n = min(len(groups), ft.epochs)
        plan = [(k, 1) for k in range(1, n)] + [(len(groups), ft.epochs - (n - 1))]
    elif budget is not None and ft.epochs > 1:  # the first epoch is timed; the rest fit the budget
        plan = [(len(groups), 1), (len(groups), ft.epochs - 1)]
    else:
        plan = [(len(groups), ft.epochs)]
    clock = EpochClock(budget, _reserve_fn(data, cfg_t, budget))
    kw["callbacks"] = [*(kw.get("callbacks") or []), clock]
    for i, (n_open, epochs) in enumerate(plan, start=1):
        tag = 2 if len(plan) == 1 else f"2.{i}"
        marker = run_dir / "checkpoints" / f"stage{tag}.json"
        if resume and marker.is_file():
            done = json.loads(marker.read_text())
            model.load_weights(run_dir / "checkpoints" / f"stage{tag}.weights.h5")
            epochs_done, best = int(done["epochs"]), done.get("best")
            continue
        if ft.gradual:
            open_groups(model, groups, n_open)
        last = i == len(plan) and len(plan) > 1
        if budget is not None and last:
            epochs = _budget_epochs(budget, clock, run_dir, most=epochs, resume=resume, verbose=kw["verbose"])
            if epochs == 0:
                break
        timed = budget is not None and not ft.gradual and len(plan) > 1 and i == 1
        stage_schedule = ScheduleCfg(name="none") if timed else schedule  # the timed epoch: the full LR

        def optimizer(epochs: int = epochs, stage_schedule: ScheduleCfg = stage_schedule) -> Any:
            opt = make_optimizer(cfg_t.optimizer, stage_schedule, steps_per_epoch=steps, epochs=epochs,
                                 learning_rate=lr)
            return with_lr_factors(opt, factors) if factors else opt

        stage = _Stage(tag, epochs_done, epochs, optimizer, schedule_active=stage_schedule.name != "none", best=best)
        epochs_done, best = fit_stage(model, data, stage, resume=resume, **kw)
        if len(plan) > 1:
            model.save_weights(run_dir / "checkpoints" / f"stage{tag}.weights.h5")
            marker.write_text(json.dumps({"epochs": epochs_done, "best": best}))
        if clock.stopped and not (budget is not None and i < len(plan)):  # the budget decides the last part
            break


def _reserve_fn(data: RunData, cfg_t: TrainCfg, budget: RunBudget | None) -> Callable[[float], None] | None:
    """With a budget: a function that sets the budget's reserve from a measured validation time."""
    if budget is None:
        return None
    n_val = len(data.parts.get("val", []))

    def update(val_s: float) -> None:
        budget.image_s = val_s / max(n_val, 1)
        budget.reserve_s = finish_reserve(val_s, n_val, n_train=len(data.parts["train"]),
                                          n_test=len(data.parts.get("test", [])), tta_views=len(cfg_t.tta),
                                          ood=cfg_t.ood)
    return update


def _budget_epochs(budget: RunBudget, clock: EpochClock, run_dir: Path, *, most: int, resume: bool,
                   verbose: int) -> int:
    """The epochs of the budget-sized part of fine-tuning, decided once from the timed epoch (a resumed
    run reads the decision back from ``checkpoints/budget.json``) and printed."""
    saved = run_dir / "checkpoints" / "budget.json"
    if resume and saved.is_file():
        return int(json.loads(saved.read_text())["epochs"])
    timed = clock.last()
    if timed is None:
        return most
    n = budget.epochs_that_fit(timed, left_s=budget.left_s(), reserve_s=budget.reserve_s, most=most)
    decision = {"event": "fine_tune_epochs", "epochs": n, "of_most": most, "timed_epoch_s": round(timed.total_s, 1),
                "left_s": round(budget.left_s(), 1), "reserve_s": round(budget.reserve_s, 1)}
    budget.record(**decision)
    saved.write_text(json.dumps(decision))
    if verbose:
        print(f"budget {budget.minutes:g} min: a fine-tuning epoch takes {timed.total_s:.0f} s, "
              f"{budget.left_s() / 60:.1f} min are left ({budget.reserve_s:.0f} s kept for scoring and saving): "
              f"{1 + n} fine-tuning epochs in all (at most {1 + most})", flush=True)
    return n


def finish_run(model: keras.Model, data: RunData, recipe: Recipe, run_dir: Path, *, history: dict[str, list[float]],
               train_time: float, speed: dict[str, Any], autoencoder: bool, evaluate_test: bool,
               extra: dict[str, Any] | None = None) -> "RunResult":
    """Load the best weights, save the model with its metadata, score val (and test), write figures;
    ``extra`` joins ``metrics.json`` (the budget's decisions)."""
    best_path = run_dir / "checkpoints" / "best.keras"
    if best_path.is_file():
        model.load_weights(best_path)  # the weights only; no second model is deserialised
    spec, size = data.spec, data.image_size
    meta = {"class_names": spec.class_names, "task": "autoencoder" if autoencoder else spec.task,
            "image_size": list(size), "model_name": recipe.model.name,
            "num_outputs": int(model.outputs[0].shape[-1]), "threshold": 0.5, "recipe": recipe.name}
    model_path = save_model(model, run_dir / "model.keras", meta=meta, overwrite=True)
    n_train, epochs = len(data.parts["train"]), len(history.get("loss", []))
    metrics: dict[str, Any] = {
        "model": recipe.model.name, "params": int(model.count_params()),
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "epochs": epochs, "train_time_s": round(train_time, 2),
        "train_images_per_s": round(n_train * max(1, epochs) / max(train_time, 1e-9), 1),
        "split_sizes": {k: int(len(v)) for k, v in data.parts.items()}, "speed": speed,
    }
    scored = ("val", "test") if evaluate_test else ("val",)
    for name in scored:
        if data.datasets[name] is None:
            continue
        if autoencoder:
            metrics[name] = {"mse": reconstruction_error(model, data.datasets[name])}
            if name == "val" or data.datasets["val"] is None:
                plot_reconstructions(model, data.datasets[name], run_dir / "reconstructions.png")
            continue
        y, p = predict_dataset(model, data.for_metrics(name))
        metrics[name] = classification_metrics(y, p, spec.task, spec.class_names)
        if name == scored[-1] and spec.task != "multilabel":
            plot_confusion(y.reshape(-1) if spec.task == "binary" else y, probs_to_pred(p, spec.task, 0.5),
                           spec.class_names, run_dir / "confusion.png")
    if recipe.train.tta and not autoencoder:
        metrics.update(_score_tta(model, data, recipe.train.tta, scored, metrics, meta, run_dir))
    batch_loss = run_dir / "batch_loss.csv"
    plot_history(run_dir / "history.csv", run_dir / "curves.png",
                 batch_losses=batch_loss if batch_loss.is_file() else None)
    if spec.skipped:
        with (run_dir / "skipped.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason"])
            w.writerows(spec.skipped)
        metrics["skipped_files"] = len(spec.skipped)
    ood = None  # predict's ood flag; train.ood: false skips it
    if recipe.train.ood and not autoencoder:
        ood = fit_split_detector(model, spec, data.parts, size, channels=data.channels, batch_size=data.batch_size)
    if ood is not None:
        ood.save(ood_path(model_path))
        metrics["ood"] = ood.card()
    metrics.update(extra or {})
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    write_card(model_path, model_card(model_path, meta, **({"ood": ood.card()} if ood else {})))  # classes, input, metrics, split hash, OOD flag
    return RunResult(run_dir=run_dir, model_path=model_path, metrics=metrics, history=history, model=model)


def _score_tta(model: keras.Model, data: RunData, views: list[str], scored: tuple[str, ...],
               metrics: dict[str, Any], meta: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Score the splits with ``views`` averaged in (``val_tta``, ``test_tta``), save that model as
    ``model.tta.keras``, and say whether its validation accuracy beat the plain model's (``tta.chosen``)."""
    tmodel = tta_model(model, views)
    out: dict[str, Any] = {}
    for name in scored:
        if data.datasets[name] is not None:
            y, p = predict_dataset(tmodel, data.for_metrics(name))
            out[f"{name}_tta"] = classification_metrics(y, p, data.spec.task, data.spec.class_names)
    path = save_model(tmodel, run_dir / "model.tta.keras", meta={**meta, "tta_of": "model.keras"}, overwrite=True)
    val, val_tta = (metrics.get("val") or {}).get("accuracy"), (out.get("val_tta") or {}).get("accuracy")
    out["tta"] = {"views": list(views), "model": path.name, "val_plain": val, "val_tta": val_tta,
                  "chosen": val is not None and val_tta is not None and val_tta > val}
    return out


def _one_hot(num_classes: int) -> Callable[[Any, Any], tuple[Any, Any]]:
    """Map integer labels to one-hot (label smoothing, MixUp/CutMix with a plain loss)."""
    def f(x: Any, y: Any) -> tuple[Any, Any]:
        return x, tf.one_hot(tf.cast(y, tf.int32), num_classes)

    return f


def train(recipe: Recipe, **kwargs: Any) -> RunResult:
    """Train the recipe's model on its data and write the run folder (see :func:`_train`).

    Keras's global dtype policy (mixed precision) is restored afterwards, so a run never changes
    how models built later in the same process compute.
    """
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
        verbose: Keras's verbosity (default: the recipe's ``train.verbose``): 0 silent, 2 one line per
            epoch, 1 a progress bar when stdout is a terminal (else one line per epoch).
        callbacks: extra Keras callbacks, added to both stages.
        evaluate_test: score the test split too; ``compare`` turns this off so that only the
            model chosen on validation ever sees the test set.
    """
    started = time.perf_counter()
    cfg_t = recipe.train
    verbose = fit_verbose(cfg_t.verbose if verbose is None else verbose)  # a bar on a terminal, else a line per epoch
    strategy = make_strategy(cfg_t.strategy)  # first: MultiWorkerMirroredStrategy precedes other TF work
    model_cfg = get_cfg(recipe.model.name)  # fail fast on an unknown model, before touching disk
    _check_fine_tune(recipe, model_cfg)
    spec = spec if spec is not None else recipe.data.load_spec()
    if recipe.train.class_weight is not None and (spec.task == "multilabel" or model_cfg.family == "autoencoder"):
        raise ConfigError(f"train.class_weight: balanced needs one class per image; this run is "
                          f"{'an autoencoder' if model_cfg.family == 'autoencoder' else 'multilabel'}; "
                          f"set train.class_weight=null")  # refused before the run folder is made
    run_dir = prepare_run_dir(recipe, overwrite=overwrite, resume=resume)
    if resume:
        check_same_recipe(run_dir, recipe.to_yaml())
        check_same_data(run_dir, spec)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml())
    keras.utils.set_random_seed(cfg_t.seed)
    if cfg_t.deterministic:  # same results run to run on CPU (slower: see docs/training.md)
        tf.config.experimental.enable_op_determinism()
    # measured defaults for "auto": mixed precision, XLA, steps per execution (train/speed.py)
    speed = _run_speed(recipe)
    replicas = num_replicas(strategy)
    lr0 = cfg_t.optimizer.learning_rate  # "find": the finder's LR is found at the global batch size
    batch_size, base_lr = scaled_batch_and_lr(recipe.data.batch_size, 1.0 if lr0 == "find" else lr0, replicas)
    if replicas > 1 and lr0 != "find":
        cfg_t = dataclasses.replace(cfg_t, optimizer=dataclasses.replace(cfg_t.optimizer, learning_rate=base_lr))
    if not is_chief():  # multi-worker: only the chief writes the real run folder
        run_dir = chief_path(run_dir)

    data = prepare_data(recipe, spec, run_dir, model_cfg, batch_size=batch_size, replicas=replicas)
    model = build_model(recipe, data, strategy)
    autoencoder = model_cfg.family == "autoencoder"
    if autoencoder:  # unlabelled reconstruction: target = input in 0..1, MSE, monitored on a loss
        data = data.mapped(as_reconstruction)
        cfg_t = _loss_monitors(cfg_t)

    def compile_fn(optimizer: Any) -> None:  # both stages: the run's loss, metrics and speed settings
        fast = _speed_kw(speed)
        if autoencoder:
            model.compile(optimizer=optimizer, loss="mse", **fast)
        else:
            compile_for_task(model, spec.task, optimizer, label_smoothing=cfg_t.label_smoothing,
                             one_hot=data.one_hot, **fast)

    history: dict[str, list[float]] = {}
    steps = cfg_t.steps_per_epoch or data.steps
    fit_kw = dict(cfg_t=cfg_t, run_dir=run_dir, compile_fn=compile_fn, strategy=strategy, history=history,
                  verbose=verbose, callbacks=callbacks, class_weight=_class_weight(cfg_t, data, autoencoder))
    budget = RunBudget(cfg_t.budget_minutes, start=started) if cfg_t.budget_minutes else None
    t0 = time.perf_counter()
    epochs_done, best = _fit_stage_one(model, data, steps=steps, resume=resume, speed=speed, budget=budget, **fit_kw)
    if cfg_t.fine_tune is not None and cfg_t.fine_tune.epochs > 0:
        _fit_fine_tune(model, data, recipe, model_cfg, epochs_done=epochs_done, best=best, replicas=replicas,
                       steps=steps, resume=resume, budget=budget, **fit_kw)
    speed = {**speed, "strategy": cfg_t.strategy, "replicas": replicas, "global_batch_size": batch_size}
    return finish_run(model, data, recipe, run_dir, history=history, train_time=time.perf_counter() - t0,
                      speed=speed, autoencoder=autoencoder, evaluate_test=evaluate_test,
                      extra={"budget": budget.report()} if budget is not None else None)


def lr_find_path(recipe: Recipe, stage: int = 1) -> Path:
    """Where ``kerasclf lr-find`` puts its plot by default: ``<output_dir>/<name>/lr_find/lr_find[_stage2].png``,
    beside what the run of that recipe writes (its ``.json`` sweep goes next to it).

    Example:
        >>> lr_find_path(Recipe.from_dict({"name": "demo", "output_dir": "runs"}), stage=2).as_posix()
        'runs/demo/lr_find/lr_find_stage2.png'
    """
    return Path(recipe.output_dir) / recipe.name / LR_FIND_DIR / ("lr_find.png" if stage == 1 else "lr_find_stage2.png")


def lr_find_recipe(recipe: Recipe, *, stage: int = 1, out: str | Path | None = None, overwrite: bool = False,
                   spec: DataSpec | None = None) -> Any:
    """``kerasclf lr-find``: the LR finder on the recipe's data and model, for stage 1 (on cached features
    when the backbone is frozen) or stage 2 (the backbone unfrozen as ``train.fine_tune`` says); writes
    the plot to ``out`` (default :func:`lr_find_path`) and the sweep beside it (``.json``), and returns
    the :class:`~kerasclf.train.lr_find.LRFindResult`. Nothing is trained.

    Raises:
        ConfigError: the plot or its sweep exists and ``overwrite`` is false (checked before the sweep).

    Example:
        >>> r = lr_find_recipe(load_recipe("demo"), out="/tmp/lr_find.png")   # doctest: +SKIP
        >>> r.suggestion("valley")
    """
    out = Path(out) if out is not None else lr_find_path(recipe, stage)
    taken = [p for p in (out, out.with_suffix(".json")) if p.exists()]
    if taken and not overwrite:
        raise ConfigError(f"lr-find: {taken[0]} already exists; pass --overwrite to replace it or --out elsewhere")
    cfg_t = recipe.train
    model_cfg = get_cfg(recipe.model.name)
    if model_cfg.family == "autoencoder":
        raise ConfigError(f"lr-find: {recipe.model.name} is an autoencoder; the finder sweeps classifiers")
    if stage == 2 and cfg_t.fine_tune is None:
        raise ConfigError("lr-find --stage 2 sweeps the fine-tuning stage; the recipe has no train.fine_tune")
    keras.utils.set_random_seed(cfg_t.seed)
    spec = spec if spec is not None else recipe.data.load_spec()
    speed = _run_speed(recipe)  # what train() applies: dtype policy, XLA, steps per execution
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(recipe, spec, Path(tmp), model_cfg, batch_size=recipe.data.batch_size)
        model = build_model(recipe, data, None)
        if stage == 2:
            unfreeze_groups(model, cfg_t.fine_tune)
        sweep_model, sweep_data = model, data
        if stage == 1 and can_cache(model) and keras.backend.backend() == "tensorflow":
            sweep_model = head_model(model)
            sweep_data = _cached_data(model, data, 1, cfg_t)
        result = lr_find(sweep_model, sweep_data.train_stream(0), _head_compile(sweep_model, data, cfg_t, speed),
                         cfg_t.lr_find, optimizer=lambda sweep: make_optimizer(cfg_t.optimizer, learning_rate=sweep))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_lr_find(result, out, chosen=cfg_t.lr_find.suggestion)
    out.with_suffix(".json").write_text(json.dumps({"stage": stage, "suggestion": cfg_t.lr_find.suggestion,
                                                    "steps_run": result.steps_run, **result.to_dict()}))
    return result


def _class_weight(cfg_t: TrainCfg, data: RunData, autoencoder: bool) -> dict[int, float] | None:
    """``class_weight: balanced``: weight ``n / (k * n_c)`` per class of the training split (sklearn's rule)."""
    if cfg_t.class_weight is None:
        return None
    if autoencoder or data.spec.task == "multilabel":
        raise ConfigError(f"train.class_weight: balanced needs one class per image; this run is "
                          f"{'an autoencoder' if autoencoder else 'multilabel'}; remove train.class_weight")
    labels = np.asarray(data.spec.labels)[data.parts["train"]].reshape(-1).astype(int)
    counts = np.bincount(labels, minlength=data.spec.num_classes if data.spec.task == "multiclass" else 2)
    k = int((counts > 0).sum())
    return {c: float(len(labels) / (k * n)) for c, n in enumerate(counts) if n > 0}


def _loss_monitors(cfg_t: TrainCfg) -> TrainCfg:
    """An autoencoder is compiled with its loss only: every monitor that is not a loss becomes one."""
    def fix(monitor: str) -> str:
        name = monitor.removeprefix("val_")
        return monitor if name == "loss" else ("val_loss" if monitor.startswith("val_") else "loss")

    es, lr = cfg_t.early_stopping, cfg_t.reduce_lr
    return dataclasses.replace(
        cfg_t, monitor=fix(cfg_t.monitor),
        early_stopping=dataclasses.replace(es, monitor=fix(es.monitor)) if es is not None else None,
        reduce_lr=dataclasses.replace(lr, monitor=fix(lr.monitor)) if lr is not None else None)


def _scope(strategy: Any) -> Any:
    """The strategy's scope on TensorFlow (build and compile inside it), else a no-op."""
    if strategy is not None and hasattr(strategy, "scope") and keras.backend.backend() == "tensorflow":
        return strategy.scope()
    return contextlib.nullcontext()


def _merge(history: dict[str, list[float]], new: dict[str, list[float]]) -> None:
    for k, v in new.items():
        history.setdefault(k, []).extend(float(x) for x in v)


def _best(callbacks: list[Any]) -> float | None:
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.ModelCheckpoint):
            if cb.best is None:
                return None
            b = float(cb.best)
            return b if np.isfinite(b) else None
    return None
