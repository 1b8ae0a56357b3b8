"""Curves, confusion matrix, per-class bars and galleries: valid PNGs of sane size, and the figure
behind each one (read back with ``return_figure=True``) shows the data it was given."""
import csv

import numpy as np
import pytest

from kerasclf.analysis.metrics import classification_metrics
from kerasclf.analysis.plots import plot_confusion, plot_gallery, plot_history, plot_per_class
from kerasclf.errors import DataError


def _lines(ax):
    """``{legend label: y data}`` of an axes' lines."""
    return {line.get_label(): np.asarray(line.get_ydata(), dtype="float64") for line in ax.get_lines()}


def test_history_from_dict_and_csvlogger_file(tmp_path, png_ok):
    hist = {"loss": [1.2, 0.8, 0.6], "accuracy": [0.4, 0.6, 0.7], "val_loss": [1.3, 1.0, 0.9],
            "val_accuracy": [0.35, 0.5, 0.6], "learning_rate": [1e-3] * 3}
    path, fig = plot_history(hist, tmp_path / "a.png", return_figure=True)
    png_ok(path)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]  # the learning rate is not a panel
    for ax, key in zip(axes, ("loss", "accuracy")):
        assert ax.get_xlabel() == "epoch"
        lines = _lines(ax)
        np.testing.assert_allclose(lines["train"], hist[key])
        np.testing.assert_allclose(lines["validation"], hist[f"val_{key}"])
        np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3])  # epochs counted from 1
    # the CSVLogger layout: epoch first, columns sorted; plus kerasclf's batch_loss.csv
    with (tmp_path / "history.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "accuracy", "loss", "val_accuracy", "val_loss"])
        for e in range(3):
            w.writerow([e, hist["accuracy"][e], hist["loss"][e], hist["val_accuracy"][e], hist["val_loss"][e]])
    batch = [1.5 * np.exp(-i / 20) for i in range(30)]
    with (tmp_path / "batch_loss.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "batch", "loss"])
        w.writerows([(i // 10, i % 10, batch[i]) for i in range(30)])
    path, fig = plot_history(tmp_path / "history.csv", tmp_path / "b.png", batch_losses=tmp_path / "batch_loss.csv",
                             return_figure=True)
    png_ok(path)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy", "training loss per iteration"]
    np.testing.assert_allclose(_lines(axes[0])["validation"], hist["val_loss"])  # read back from the CSV
    per_batch = _lines(axes[2])
    np.testing.assert_allclose(per_batch["per batch"], batch)
    np.testing.assert_allclose(per_batch["mean of 5"], np.convolve(batch, np.ones(5) / 5, mode="valid"))
    assert axes[2].get_xlabel() == "iteration (batch)"
    with pytest.raises(DataError, match="not found"):
        plot_history(tmp_path / "missing.csv", tmp_path / "c.png")


@pytest.mark.parametrize("k", [3, 100])
def test_confusion_png_sane_for_few_and_many_classes(tmp_path, png_ok, k):
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, 20 * k)
    pred = np.where(rng.uniform(size=y.size) < 0.7, y, rng.integers(0, k, y.size))
    names = [f"class_{i}" for i in range(k)]
    path, fig = plot_confusion(y, pred, names, tmp_path / "cm.png", return_figure=True)
    w, h = png_ok(path)
    assert max(w, h) <= 2000
    if k == 100:
        assert min(w, h) >= 1000  # large enough to read 100 rows
    ax = fig.get_axes()[0]
    counts = np.zeros((k, k))
    for t, p in zip(y, pred):
        counts[t, p] += 1
    shown = np.asarray(ax.get_images()[0].get_array())
    np.testing.assert_allclose(shown, counts / counts.sum(1, keepdims=True))  # rows = true class, fractions
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    step = 1 if k <= 60 else 2  # tick labels thin out beyond 60 classes
    assert [t.get_text() for t in ax.get_yticklabels()] == names[::step]
    assert [t.get_text() for t in ax.get_xticklabels()] == names[::step]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    if k <= 25:  # the numbers are written in the non-empty cells
        assert cells == {(i, j): f"{shown[i, j]:.2f}" for i in range(k) for j in range(k) if shown[i, j]}
    else:
        assert cells == {}


def test_per_class_png(tmp_path, png_ok):
    m = classification_metrics([0, 1, 2, 2], np.eye(3)[[0, 1, 2, 1]], "multiclass", ["a", "b", "c"])
    path, fig = plot_per_class(m, tmp_path / "pc.png", return_figure=True)
    png_ok(path)
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["precision", "recall", "f1"]
    heights = np.array([bar.get_height() for bar in ax.patches]).reshape(3, 3)  # one group of bars per metric
    expected = [[m["per_class"][c][key] for c in "abc"] for key in ("precision", "recall", "f1")]
    np.testing.assert_allclose(heights, expected)
    np.testing.assert_allclose(heights, [[1, 0.5, 1], [1, 1, 0.5], [1, 2 / 3, 2 / 3]])  # worked by hand


def test_gallery_with_and_without_overlays(tmp_path, png_ok):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (7, 24, 24, 3)).astype("uint8")
    titles = [f"true: a\npred: b ({i / 10:.2f})" for i in range(7)]
    path, fig = plot_gallery(imgs, titles, tmp_path / "g1.png", return_figure=True)
    png_ok(path)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == titles
    for ax, img in zip(axes, imgs):
        np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array()), img)  # drawn as given
    heat = rng.uniform(size=(7, 24, 24))
    png_ok(plot_gallery(imgs, titles, tmp_path / "g2.png", overlays=heat))
    path, fig = plot_gallery(imgs.astype("float32") / 255, titles, tmp_path / "g3.png", return_figure=True,
                             overlays={"gradcam": heat, "gradcam++": heat, "smoothgrad": heat[:, ::2, ::2]})
    w, h = png_ok(path)
    assert w <= 2000 and h <= 2000
    # each image is followed by one panel per method, titled with the method's name
    panel_titles = [ax.get_title() for ax in fig.get_axes()]
    assert panel_titles == [t for title in titles for t in (title, "gradcam", "gradcam++", "smoothgrad")]
    first = np.asarray(fig.get_axes()[0].get_images()[0].get_array())
    assert abs(first.astype(int) - imgs[0].astype(int)).max() <= 1  # 0..1 floats shown as 0..255
    with pytest.raises(DataError):
        plot_gallery(imgs, titles[:2], tmp_path / "bad.png")
