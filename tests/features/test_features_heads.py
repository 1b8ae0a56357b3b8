"""scikit-learn heads on CNN features of real digits: accuracy, metrics, save / load / predict."""
from __future__ import annotations

import numpy as np
import pytest

from kerasclf.analysis.metrics import classification_metrics
from kerasclf.errors import KerasclfError
from kerasclf.features import (
    HeadPipeline,
    evaluate_head,
    extract_features,
    fit_head,
    load_head,
    save_head,
)
from kerasclf.features.artifacts import save_artifact


@pytest.fixture(scope="module")
def digits_features(digits_spec, cnn_factory, tmp_path_factory):
    """GAP features of a random-init tiny CNN on all 1,797 digits (upsampled to 32x32 RGB)."""
    model = cnn_factory(0)
    fs = extract_features(model, digits_spec, image_size=(32, 32),
                          cache_dir=tmp_path_factory.mktemp("heads_cache"), verbose=0)
    train = np.arange(len(fs)) % 5 != 0
    return model, fs, train


def test_logreg_on_cnn_features_beats_chance_widely(digits_features, digits_spec):
    _, fs, train = digits_features
    X, y = np.asarray(fs.features), fs.labels
    head = fit_head(X[train], y[train], kind="logreg")
    m = evaluate_head(head, X[~train], y[~train], digits_spec.class_names)
    print(f"\nlogreg on random-init CNN features, digits held-out accuracy: {m['accuracy']:.3f}")
    assert m["accuracy"] > 0.75  # chance is 0.10
    assert np.asarray(m["confusion_matrix"]).shape == (10, 10)
    assert np.asarray(m["confusion_counts"]).sum() == (~train).sum()
    assert set(m["per_class"]["3"]) >= {"precision", "recall", "f1"}
    assert m["n_images"] == (~train).sum()


@pytest.mark.parametrize("kind,opts,floor", [("linear_svm", {}, 0.7),
                                             ("linear_svm", {"calibrate": True}, 0.7),
                                             ("hgb", {"max_iter": 25}, 0.6)])
def test_other_heads_give_probabilities(digits_features, kind, opts, floor):
    _, fs, train = digits_features
    X, y = np.asarray(fs.features), fs.labels
    head = fit_head(X[train], y[train], kind=kind, **opts)
    p = head.predict_proba(X[~train])
    assert p.shape == ((~train).sum(), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.mean(p.argmax(1) == y[~train]) > floor


def test_head_metrics_are_the_keras_metrics():
    """One metrics module: a head's metrics are classification_metrics of its probabilities."""
    rng = np.random.default_rng(1)
    X = np.r_[rng.normal(0, 1, (30, 4)), rng.normal(2, 1, (30, 4)), rng.normal(-2, 1, (30, 4))]
    y = np.repeat([0, 1, 2], 30)
    head = fit_head(X, y, kind="logreg")
    m = evaluate_head(head, X, y, ["a", "b", "c"])
    ref = classification_metrics(y, head.predict_proba(X), "multiclass", ["a", "b", "c"])
    assert m["n_images"] == 90 and m["accuracy"] == ref["accuracy"] > 0.8
    assert m["confusion_matrix"] == ref["confusion_matrix"] and m["per_class"] == ref["per_class"]


def test_binary_metrics_and_bad_inputs():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (40, 3)), rng.normal(3, 1, (40, 3))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    head = fit_head(X, y, kind="linear_svm")
    m = evaluate_head(head, X, y, ["cat", "dog"], task="binary")
    assert m["accuracy"] > 0.9
    with pytest.raises(KerasclfError, match="head kind 'forest'"):
        fit_head(X, y, kind="forest")
    with pytest.raises(KerasclfError, match="single class"):
        fit_head(X, np.zeros(80, int))


def test_saved_head_predicts_images_and_files(digits_features, digits_spec, tmp_path, png_writer):
    model, fs, train = digits_features
    X, y = np.asarray(fs.features), fs.labels
    head = fit_head(X[train], y[train], kind="logreg")
    path = save_head(tmp_path / "head.skops", head, fs.record, extractor=model)
    assert (tmp_path / "head.json").is_file() and (tmp_path / "head.extractor.keras").is_file()
    with pytest.raises(KerasclfError, match="already exists"):
        save_head(path, head, fs.record, extractor=model)
    with pytest.raises(KerasclfError, match="extractor"):  # random weights need the model itself
        save_head(tmp_path / "other.skops", head, fs.record)

    pipe = load_head(path)
    assert isinstance(pipe, HeadPipeline) and pipe.class_names == digits_spec.class_names
    imgs = digits_spec.images[:30]
    expected = head.predict_proba(X[:30])
    np.testing.assert_allclose(pipe.predict_proba_images(imgs), expected, rtol=1e-4, atol=1e-5)

    files = png_writer(tmp_path / "new", digits_spec.images[:12], size=32)
    (tmp_path / "new" / "zz_broken.png").write_bytes(b"nope")
    rows = pipe.predict_paths([tmp_path / "new"], out_csv=tmp_path / "pred.csv")
    assert [r["path"] for r in rows if not r["error"]] == files
    assert rows[-1]["error"] and rows[-1]["class"] == ""
    acc = np.mean([r["class"] == str(t) for r, t in zip(rows, digits_spec.labels[:12])])
    assert acc > 0.5  # PNG round trip + resize still classifies
    assert (tmp_path / "pred.csv").read_text().startswith("path,class,probability")


def test_load_head_rejects_other_files(tmp_path):
    save_artifact({"x": 1, "info": {"kind": "something else"}}, tmp_path / "x.skops")
    with pytest.raises(KerasclfError, match="not a kerasclf head"):
        load_head(tmp_path / "x.skops")
    with pytest.raises(KerasclfError, match="not found"):
        load_head(tmp_path / "missing.skops")
