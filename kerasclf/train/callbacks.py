"""The callbacks a run uses, configured from the recipe: Keras's own, plus a per-batch loss log.

Example:
    >>> from kerasclf.train.recipe import TrainCfg
    >>> cbs = make_callbacks(TrainCfg(), "/tmp/kerasclf-doc-run", stage=1)   # doctest: +SKIP
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasclf.errors import ConfigError
from kerasclf.train.distribute import backup_dir
from kerasclf.train.recipe import TrainCfg

__all__ = ["make_callbacks", "BatchLossLogger", "TensorBoardLogger", "EpochSeeds", "EpochKey", "monitor_mode",
           "current_lr"]

# Parts of a Keras metric name that say which way is better. "Lower" is checked first, so a
# loss or error of anything ("accuracy_loss", "mean_absolute_error") is minimised.
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "rmse", "crossentropy", "hinge",
                    "divergence", "logcosh", "poisson", "false_positives", "false_negatives")
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "io_u", "r2",
                     "sensitivity", "specificity", "true_positives", "true_negatives", "kappa")


def monitor_mode(monitor: str, *, key: str = "train.monitor") -> str:
    """``"max"`` or ``"min"``: whether a higher value of the monitored Keras metric is better.

    Accuracy / AUC / precision / recall / F1 / IoU-like metrics are maximised, losses and errors
    (MSE, MAE, crossentropy ...) minimised; the ``val_`` prefix does not matter. A name that says
    neither is a ConfigError naming ``key`` (Keras's "auto" would silently minimise it).

    Example:
        >>> monitor_mode("val_auc"), monitor_mode("val_f1_score"), monitor_mode("val_loss")
        ('max', 'max', 'min')
    """
    name = monitor.lower().removeprefix("val_")
    if any(part in name for part in _LOWER_IS_BETTER):
        return "min"
    if any(part in name for part in _HIGHER_IS_BETTER):
        return "max"
    raise ConfigError(f"{key} '{monitor}': cannot tell whether higher is better; monitor a loss/error or an "
                      f"accuracy/auc/precision/recall/f1/iou metric (e.g. val_loss, val_accuracy)")


class BatchLossLogger(keras.callbacks.Callback):
    """Appends ``epoch, batch, loss`` for every training batch to a CSV (loss per iteration).

    Keras 3 reports the running mean of the epoch in ``logs["loss"]``; the loss of the batches
    since the previous call is recovered from consecutive means (exact for equal-sized batches,
    as all but the last are). With ``steps_per_execution=k`` Keras calls back every k batches,
    so each row is then the mean of those k batches.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self._epoch = 0
        self._prev_mean = 0.0
        self._prev_seen = 0
        self._rows: list[tuple[int, int, float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._prev_mean = 0.0
        self._prev_seen = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if logs and "loss" in logs:
            mean, seen = float(logs["loss"]), batch + 1
            chunk = max(1, seen - self._prev_seen)
            self._rows.append((self._epoch, batch, (seen * mean - self._prev_seen * self._prev_mean) / chunk))
            self._prev_mean, self._prev_seen = mean, seen

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch", "batch", "loss"])
            w.writerows(self._rows)
        self._rows.clear()


class EpochSeeds(keras.callbacks.Callback):
    """Sets every Keras seed generator (dropout ...) of the model to a state fixed by its seed and the
    epoch at the start of each epoch: the generators are not among the weights a backup saves, so a
    resumed run would otherwise draw other dropout masks than an uninterrupted one."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for layer in self.model._flatten_layers():
            for gen in getattr(layer, "_seed_generators", []):
                state = np.asarray(gen.state.value)
                gen.state.assign(np.array([state[0], epoch * 1_000_000], dtype=state.dtype))


class EpochKey(keras.callbacks.Callback):
    """The epoch number the training pipeline reads (:meth:`kerasclf.data.pipeline.Passes.epochs`): set
    when each epoch begins, before ``fit`` opens that epoch's iterator, so epoch ``e`` reads pass ``e``
    (its shuffle and augmentation keyed by ``e``) in a run that started at epoch 0 or resumed at ``e``.

    Example:
        >>> key = EpochKey(first=3)
        >>> int(key.epoch.numpy())
        3
    """

    def __init__(self, first: int = 0):
        super().__init__()
        import tensorflow as tf  # the tf.data pipeline's variable

        self.epoch = tf.Variable(int(first), dtype=tf.int64, trainable=False, name="kerasclf_epoch")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.assign(int(epoch))


def current_lr(model: Any) -> float:
    """The optimizer's learning rate now (a schedule evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes TensorBoard event files with TensorFlow's own ``tf.summary.write`` (the ``tensorboard``
    package, needed for ``tf.summary.scalar``/``image``, only reads them): every epoch's logs and the
    learning rate as scalars, and a batch of validation images. ``tensorboard --logdir runs``.
    """

    def __init__(self, log_dir: str | Path, images: Any = None, max_images: int = 8):
        super().__init__()
        import tensorflow as tf  # TensorBoard event files: TensorFlow only

        self._tf = tf
        self.log_dir = Path(log_dir)
        self._writers = {name: tf.summary.create_file_writer(str(self.log_dir / name))
                         for name in ("train", "validation")}
        self._images = images
        self._max_images = max_images

    def _write(self, split: str, tag: str, tensor: Any, step: int, plugin: str, data_class: int) -> None:
        from tensorflow.core.framework import summary_pb2  # the SummaryMetadata proto of TensorBoard's plugins

        meta = summary_pb2.SummaryMetadata(data_class=data_class)
        meta.plugin_data.plugin_name = plugin
        with self._writers[split].as_default():
            self._tf.summary.write(tag, tensor, step=step, metadata=meta)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._images is None:
            return
        x = np.asarray(self._images[: self._max_images], dtype="float32")
        if x.ndim == 4 and x.shape[-1] in (1, 3):
            tf = self._tf
            pngs = [tf.io.encode_png(np.clip(img, 0, 255).astype("uint8")) for img in x]
            tensor = tf.stack([tf.constant(str(x.shape[2])), tf.constant(str(x.shape[1]))] + pngs)
            self._write("validation", "images", tensor, 0, "images", 3)  # DATA_CLASS_BLOB_SEQUENCE
        self._images = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        logs.setdefault("learning_rate", current_lr(self.model))
        for key, value in logs.items():
            split = "validation" if key.startswith("val_") else "train"
            self._write(split, f"epoch_{key.removeprefix('val_')}", self._tf.constant(float(value), "float32"),
                        epoch, "scalars", 1)  # DATA_CLASS_SCALAR
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for w in self._writers.values():
            w.flush()


def make_callbacks(cfg: TrainCfg, run_dir: str | Path, *, stage: int | str = 1,
                   has_validation: bool = True, schedule_active: bool = False, images: Any = None) -> list[Any]:
    """CSVLogger, per-batch loss log, best checkpoint, BackupAndRestore, TensorBoard logs (``images``:
    a batch to show), and the optional EarlyStopping / ReduceLROnPlateau of the recipe."""
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    monitor = cfg.monitor if has_validation else cfg.monitor.replace("val_", "")
    mode = monitor_mode(monitor)
    cbs: list[Any] = [
        keras.callbacks.BackupAndRestore(str(backup_dir(run_dir / "backup" / f"stage{stage}")),
                                         delete_checkpoint=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        BatchLossLogger(run_dir / "batch_loss.csv"),
        EpochSeeds(),
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / "best.keras"), monitor=monitor,
                                        mode=mode, save_best_only=True, verbose=0),
    ]
    if cfg.tensorboard and keras.backend.backend() == "tensorflow":
        cbs.append(TensorBoardLogger(run_dir / "tensorboard", images=images))
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        es_monitor = es.monitor if has_validation else es.monitor.replace("val_", "")
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=es_monitor, patience=es.patience, min_delta=es.min_delta,
            mode=monitor_mode(es_monitor, key="train.early_stopping.monitor"),
            restore_best_weights=es.restore_best_weights))
    if cfg.reduce_lr is not None:
        if schedule_active:
            raise ConfigError("train.reduce_lr cannot be combined with train.schedule (a schedule owns "
                              "the learning rate); remove one of them")
        r = cfg.reduce_lr
        r_monitor = r.monitor if has_validation else r.monitor.replace("val_", "")
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=r_monitor, factor=r.factor, patience=r.patience,
                                                     min_lr=r.min_lr,
                                                     mode=monitor_mode(r_monitor, key="train.reduce_lr.monitor")))
    return cbs
