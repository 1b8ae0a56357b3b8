"""The CLI-facing task functions: features summary, a head run, loading either pipeline kind."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from kerasclf.data.sources import from_folder
from kerasclf.data.spec import DataSpec
from kerasclf.errors import KerasclfError
from kerasclf.features import (
    ClusterModel,
    HeadPipeline,
    extract_features,
    fit_clusters,
    load_predictor,
    run_features,
    run_head,
)
from kerasclf.features.heads import HEAD_CS
from kerasclf.testing import write_image_folder


def test_run_features_then_hit(digits_spec, cnn_factory, tmp_path):
    spec = digits_spec.subset(np.arange(128))
    model = cnn_factory(0)
    first = run_features(model, spec, cache_dir=tmp_path, image_size=(32, 32), verbose=0)
    again = run_features(model, spec, cache_dir=tmp_path, image_size=(32, 32), verbose=0)
    assert first["n_images"] == 128 and first["dim"] == 32 and not first["from_cache"]
    assert again["from_cache"] and again["path"] == first["path"]


def test_run_head_and_load_predictor(digits_spec, cnn_factory, tmp_path):
    model = cnn_factory(0)
    out = run_head(digits_spec, features_model=model, kind="logreg", out_dir=tmp_path / "h",
                   image_size=(32, 32), verbose=0)
    assert out["metrics"]["accuracy"] > 0.75 and out["n_train"] + out["n_test"] == len(digits_spec)
    assert json.loads((tmp_path / "h" / "metrics.json").read_text())["test"]["accuracy"] == out["metrics"]["accuracy"]
    pipe = load_predictor(out["head"])
    assert isinstance(pipe, HeadPipeline)
    p = pipe.predict_proba_images(digits_spec.images[:50])
    assert np.mean(p.argmax(1) == digits_spec.labels[:50]) > 0.7
    with pytest.raises(KerasclfError, match="already exists"):
        run_head(digits_spec, features_model=model, out_dir=tmp_path / "h", verbose=0)

    cm = fit_clusters(np.random.default_rng(0).normal(size=(30, 4)), k=3)
    cm.save(tmp_path / "c.skops")
    assert isinstance(load_predictor(tmp_path / "c.skops"), ClusterModel)
    with pytest.raises(KerasclfError, match="not found"):
        load_predictor(tmp_path / "none.skops")


def test_run_head_with_flip_taps_and_c_chosen_on_validation_predicts_the_same_from_files(tmp_path):
    keras.utils.set_random_seed(0)
    spec = from_folder(write_image_folder(tmp_path / "d", n_per_class=20, size=32, classes=2, formats=("png",)))
    out = run_head(spec, features_model="MobileNet", build_kwargs={"alpha": 0.25}, weights=None,
                   image_size=(32, 32), tta=True, taps="auto", C="auto", ratios=(0.6, 0.2, 0.2),
                   out_dir=tmp_path / "h", verbose=0)
    saved = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert out["C"] in HEAD_CS and sorted(out["val_log_loss"]) == sorted(str(c) for c in HEAD_CS)
    assert min(out["val_log_loss"].values()) == out["val_log_loss"][str(out["C"])]
    assert saved["features"] == {"tta": True, "taps": ["conv_pw_5_relu", "conv_pw_7_relu", "conv_pw_11_relu",
                                                       "conv_pw_12_relu"], "dim": 832}
    assert out["n_train"] == 32 and out["n_test"] == 8 and out["metrics"]["accuracy"] >= 0.75
    # the saved extractor flips and taps as the fit's features did: same probabilities from the files
    pipe = load_predictor(out["head"])
    files = sorted(str(p) for p in (tmp_path / "d").rglob("*.png"))
    rows = {r["path"]: r for r in pipe.predict_paths(files, top_k=2)}
    fs = extract_features(pipe.feature_extractor(), spec, layer=None, image_size=(32, 32),
                          cache_dir=tmp_path / "h" / "features", verbose=0)
    assert fs.from_cache  # the reloaded extractor is the fit's: its cache entry holds the fitted features
    p = pipe.predict_proba_features(np.asarray(fs.features))
    names = pipe.class_names
    for i, path in enumerate(fs.ids):
        assert rows[path]["class"] == names[int(p[i].argmax())]
        assert abs(float(rows[path]["probability"]) - float(p[i].max())) < 1e-3
    with pytest.raises(KerasclfError, match="validation split"):
        run_head(spec, features_model="MobileNet", build_kwargs={"alpha": 0.25}, weights=None, image_size=(32, 32),
                 C="auto", out_dir=tmp_path / "h2", verbose=0)


def test_run_head_keeps_the_arrays_size_for_a_size_free_model_and_fits_hgb_without_a_c(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    images = rng.integers(0, 60, (60, 12, 12, 3)).astype("uint8")
    images[labels == 1, :, :, 0] = 230  # class 1 is red: learnable, and the same in a mirror image
    spec = DataSpec.from_arrays(images, labels, ["grey", "red"])
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="features")(
        keras.layers.Conv2D(4, 3, kernel_initializer="ones")(inputs)))
    for tta in (False, True):
        out = run_head(spec, features_model=model, kind="hgb", tta=tta, ratios=(0.6, 0.2, 0.2),
                       out_dir=tmp_path / f"h{tta}", verbose=0)
        info = json.loads((tmp_path / f"h{tta}" / "head.json").read_text())
        assert info["record"]["image_size"] == [12, 12], info["record"]  # not upsampled to 224
        assert out["C"] is None and "val_log_loss" not in out and out["metrics"]["accuracy"] == 1.0
