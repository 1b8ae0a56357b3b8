"""The per-batch loss log recovers each batch's loss from Keras's running means; the monitored
metric's direction (max for AUC/F1/precision/recall, min for losses) reaches every callback."""
import csv

import keras
import pytest

from kerasclf.errors import ConfigError
from kerasclf.train.callbacks import BatchLossLogger, make_callbacks, monitor_mode
from kerasclf.train.recipe import EarlyStoppingCfg, ReduceLRCfg, TrainCfg


@pytest.mark.parametrize("every", [1, 8])
def test_batch_losses_are_recovered_from_running_means(tmp_path, every):
    losses = [4.0, 2.0, 3.0, 1.0, 0.5, 0.25, 2.0, 1.0, 0.5, 0.1, 0.3, 0.2, 0.9, 0.4, 0.6, 0.7]
    log = BatchLossLogger(tmp_path / "b.csv")
    log.on_epoch_begin(0)
    for b in range(every - 1, len(losses), every):  # Keras calls back every `every` batches
        log.on_train_batch_end(b, {"loss": sum(losses[:b + 1]) / (b + 1)})
    log.on_epoch_end(0)
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    expected = [sum(losses[b - every + 1:b + 1]) / every for b in range(every - 1, len(losses), every)]
    assert [round(float(r["loss"]), 6) for r in rows] == [round(e, 6) for e in expected]
    assert min(float(r["loss"]) for r in rows) > 0


@pytest.mark.parametrize("monitor,mode", [
    ("val_loss", "min"), ("loss", "min"), ("val_accuracy", "max"), ("val_acc", "max"), ("val_auc", "max"),
    ("val_auc_1", "max"), ("val_f1_score", "max"), ("val_precision", "max"), ("val_recall", "max"),
    ("val_mean_io_u", "max"), ("val_iou", "max"), ("val_top_k_categorical_accuracy", "max"),
    ("val_mse", "min"), ("val_mae", "min"), ("val_mean_squared_error", "min"),
    ("val_categorical_crossentropy", "min"), ("val_false_positives", "min")])
def test_monitor_mode_knows_which_way_is_better(monitor, mode):
    assert monitor_mode(monitor) == mode


def test_monitor_mode_refuses_a_name_it_cannot_read():
    with pytest.raises(ConfigError, match="train.early_stopping.monitor 'val_widgets'"):
        monitor_mode("val_widgets", key="train.early_stopping.monitor")


def _tiny_compiled_model():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    return model


@pytest.mark.parametrize("monitor", ["val_auc", "val_f1_score", "val_precision", "val_recall"])
def test_rising_score_neither_stops_nor_cuts_the_learning_rate(tmp_path, monitor):
    """Old code picked mode "min" for these: a rising AUC looked like no improvement."""
    cfg = TrainCfg(monitor=monitor, early_stopping=EarlyStoppingCfg(monitor=monitor, patience=1,
                                                                   restore_best_weights=False),
                   reduce_lr=ReduceLRCfg(monitor=monitor, patience=1, factor=0.5))
    cbs = make_callbacks(cfg, tmp_path, stage=1)
    model = _tiny_compiled_model()
    es = next(cb for cb in cbs if isinstance(cb, keras.callbacks.EarlyStopping))
    rlr = next(cb for cb in cbs if isinstance(cb, keras.callbacks.ReduceLROnPlateau))
    ckpt = next(cb for cb in cbs if isinstance(cb, keras.callbacks.ModelCheckpoint))
    for cb in (es, rlr):
        cb.set_model(model)
        cb.on_train_begin()
    for epoch, score in enumerate([0.5, 0.6, 0.7, 0.8]):
        for cb in (es, rlr):
            cb.on_epoch_end(epoch, {monitor: score})
    assert not model.stop_training
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.1)
    assert ckpt.mode == "max"  # the best checkpoint keeps the highest score


def test_falling_loss_is_still_minimised(tmp_path):
    cfg = TrainCfg(monitor="val_loss", early_stopping=EarlyStoppingCfg(patience=1, restore_best_weights=False))
    cbs = make_callbacks(cfg, tmp_path, stage=1)
    es = next(cb for cb in cbs if isinstance(cb, keras.callbacks.EarlyStopping))
    model = _tiny_compiled_model()
    es.set_model(model)
    es.on_train_begin()
    for epoch, loss in enumerate([1.0, 1.1, 1.2]):
        es.on_epoch_end(epoch, {"val_loss": loss})
    assert model.stop_training  # a rising loss is no improvement
