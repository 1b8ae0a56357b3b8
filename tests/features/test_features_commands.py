"""The CLI-facing task functions: features summary, a head run, loading either pipeline kind."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kerasclf.errors import KerasclfError
from kerasclf.features import (ClusterModel, HeadPipeline, fit_clusters, load_predictor, run_features,
                               run_head)


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
