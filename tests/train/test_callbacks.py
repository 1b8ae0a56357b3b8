"""The per-batch loss log recovers each batch's loss from Keras's running means."""
import csv

import pytest

from kerasclf.train.callbacks import BatchLossLogger


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
