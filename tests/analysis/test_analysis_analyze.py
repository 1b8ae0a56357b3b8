"""analyze(): every figure, metrics.json and a report with every section, for the three tasks."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from kerasclf.analysis.analyze import analyze, load_split
from kerasclf.data.pipeline import split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError

SECTIONS = ("curves", "confusion", "per-class", "galleries", "embeddings", "calibration", "test")


def _write_history(path, history):
    keys = sorted(history)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history["loss"])):
            w.writerow([e, *[history[k][e] for k in keys]])
    return path


def test_analyze_multiclass_full(tmp_path, trained_square_model, square_data, png_ok):
    model, history = trained_square_model
    xtr, ytr, xte, yte, _ = square_data
    hist = _write_history(tmp_path / "history.csv", history)
    flipped = yte.copy()
    flipped[:3] = 1 - flipped[:3]  # three wrong labels, so the "misclassified" galleries are not empty
    out = analyze(model, (xte, flipped), out_dir=tmp_path / "analysis", class_names=["top_left", "bottom_right"],
                  task="multiclass", history_csv=hist, batch_losses=np.linspace(1, 0.1, 40),
                  val_data=(xtr[:60], ytr[:60]), max_gallery=4, smooth_samples=3,
                  leaderboard=[{"label": "tiny_cnn", "val_acc": 1.0}])
    files = out["files"]
    for key in ("curves", "confusion", "per_class", "gallery_correct_random", "gallery_incorrect_random",
                "gallery_highest_loss", "embedding_pca", "embedding_tsne", "reliability"):
        png_ok(files[key])
    m = json.loads((tmp_path / "analysis" / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(37 / 40)
    np.testing.assert_allclose(np.array(m["confusion_matrix"]).sum(1), 1.0)
    assert "temperature" in m["calibration"] and m["val_test_gap"] == pytest.approx(1 - 37 / 40)
    assert out["warnings"] == []
    html = out["report"].read_text()
    for sid in ("leaderboard", *SECTIONS):
        assert f"id='{sid}'" in html
    assert html.count("data:image/png;base64,") >= 9
    assert "Warning: test accuracy" in html  # the 7.5-point val/test gap is flagged
    assert "http://" not in html and "https://" not in html


def test_analyze_binary_and_multilabel(tmp_path, png_ok, make_squares, make_cnn):
    x, y, _ = make_squares(16, seed=3)
    binary = make_cnn(1, activation="sigmoid")
    out = analyze(binary, images=x, labels=y, out_dir=tmp_path / "bin", class_names=["tl", "br"], task="binary",
                  explain_methods=("gradcam",), embed_methods=("pca",), max_gallery=3)
    png_ok(out["files"]["confusion"])
    png_ok(out["files"]["gallery_correct_random"] if "gallery_correct_random" in out["files"]
           else out["files"]["gallery_incorrect_random"])
    assert "confusion" in out["report"].read_text()

    ml_labels = np.stack([y, 1 - y, (x.mean(axis=(1, 2, 3)) > 100).astype(int)], axis=1)
    multi = make_cnn(3, activation="sigmoid")
    out = analyze(multi, (x, ml_labels), out_dir=tmp_path / "ml", class_names=["tl", "br", "bright"],
                  task="multilabel", explain_methods=(), embed_methods=(), val_data=(x, ml_labels), max_gallery=3)
    m = out["metrics"]
    assert set(m["per_class"]) == {"tl", "br", "bright"} and len(m["thresholds"]) == 3
    assert "confusion" not in out["files"]
    png_ok(out["files"]["per_class"])
    png_ok(out["files"]["reliability"])


def test_analyze_errors(tmp_path, make_cnn):
    model = make_cnn(2)
    with pytest.raises(DataError, match="needs the data"):
        analyze(model, out_dir=tmp_path, class_names=["a", "b"], task="multiclass")
    with pytest.raises(ConfigError, match="unknown task"):
        analyze(model, (np.zeros((2, 8, 8, 3)), [0, 1]), out_dir=tmp_path, class_names=["a", "b"], task="regress")
    with pytest.raises(ConfigError, match="explanation method"):
        analyze(model, (np.zeros((2, 8, 8, 3)), [0, 1]), out_dir=tmp_path, class_names=["a", "b"],
                task="multiclass", explain_methods=("lime",))


def test_load_split_from_dataspec(tmp_path, make_squares):
    x, y, _ = make_squares(4, seed=7)
    xs, ys = load_split(DataSpec.from_arrays(x, y, class_names=["tl", "br"]))
    assert xs.shape == (4, 32, 32, 3) and ys.reshape(-1).tolist() == y.tolist()
    paths = []
    for i, img in enumerate(x):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    spec = DataSpec(class_names=["tl", "br"], labels=y, paths=paths, task="binary")
    xs, _ = load_split(spec, image_size=(16, 20))
    assert xs.shape == (4, 16, 20, 3) and xs.dtype == np.float32

    assert np.array_equal(xs, split_arrays(spec, image_size=(16, 20))[0])  # the training pixels
    with pytest.raises(DataError, match="image size"):
        load_split(spec)  # files need a size: never a silent 224
    with pytest.raises(DataError, match="DataSpec"):
        load_split("not data")
