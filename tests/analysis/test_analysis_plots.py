"""Curves, confusion matrix, per-class bars and galleries are valid PNGs of sane size."""
import csv

import numpy as np
import pytest

from kerasclf.analysis.metrics import classification_metrics
from kerasclf.analysis.plots import plot_confusion, plot_gallery, plot_history, plot_per_class
from kerasclf.errors import DataError


def test_history_from_dict_and_csvlogger_file(tmp_path, png_ok):
    hist = {"loss": [1.2, 0.8, 0.6], "accuracy": [0.4, 0.6, 0.7], "val_loss": [1.3, 1.0, 0.9],
            "val_accuracy": [0.35, 0.5, 0.6], "learning_rate": [1e-3] * 3}
    png_ok(plot_history(hist, tmp_path / "a.png"))
    # the CSVLogger layout: epoch first, columns sorted; plus kerasclf's batch_loss.csv
    with (tmp_path / "history.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "accuracy", "loss", "val_accuracy", "val_loss"])
        for e in range(3):
            w.writerow([e, hist["accuracy"][e], hist["loss"][e], hist["val_accuracy"][e], hist["val_loss"][e]])
    with (tmp_path / "batch_loss.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "batch", "loss"])
        w.writerows([(i // 10, i % 10, 1.5 * np.exp(-i / 20)) for i in range(30)])
    png_ok(plot_history(tmp_path / "history.csv", tmp_path / "b.png", batch_losses=tmp_path / "batch_loss.csv"))
    with pytest.raises(DataError, match="not found"):
        plot_history(tmp_path / "missing.csv", tmp_path / "c.png")


@pytest.mark.parametrize("k", [3, 100])
def test_confusion_png_sane_for_few_and_many_classes(tmp_path, png_ok, k):
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, 20 * k)
    pred = np.where(rng.uniform(size=y.size) < 0.7, y, rng.integers(0, k, y.size))
    w, h = png_ok(plot_confusion(y, pred, [f"class_{i}" for i in range(k)], tmp_path / "cm.png"))
    assert max(w, h) <= 2000
    if k == 100:
        assert min(w, h) >= 1000  # large enough to read 100 rows


def test_per_class_png(tmp_path, png_ok):
    m = classification_metrics([0, 1, 2, 2], np.eye(3)[[0, 1, 2, 1]], "multiclass", ["a", "b", "c"])
    png_ok(plot_per_class(m, tmp_path / "pc.png"))


def test_gallery_with_and_without_overlays(tmp_path, png_ok):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (7, 24, 24, 3)).astype("uint8")
    titles = [f"true: a\npred: b ({i / 10:.2f})" for i in range(7)]
    png_ok(plot_gallery(imgs, titles, tmp_path / "g1.png"))
    heat = rng.uniform(size=(7, 24, 24))
    png_ok(plot_gallery(imgs, titles, tmp_path / "g2.png", overlays=heat))
    w, h = png_ok(plot_gallery(imgs.astype("float32") / 255, titles, tmp_path / "g3.png",
                               overlays={"gradcam": heat, "gradcam++": heat, "smoothgrad": heat[:, ::2, ::2]}))
    assert w <= 2000 and h <= 2000
    with pytest.raises(DataError):
        plot_gallery(imgs, titles[:2], tmp_path / "bad.png")
