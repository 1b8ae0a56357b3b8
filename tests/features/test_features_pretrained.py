"""Real ImageNet features (MobileNet alpha 0.25 from ../shared/assets) on digits: head and clusters."""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasclf.features import (
    cluster_scores,
    evaluate_head,
    extract_features,
    fit_clusters,
    fit_head,
)

ASSETS = Path(os.environ.get("KERASCLF_ASSETS") or Path(__file__).resolve().parents[2].parent / "shared" / "assets")
WEIGHTS = ASSETS / "keras" / "models" / "mobilenet_2_5_224_tf_no_top.h5"


@pytest.mark.assets
def test_imagenet_mobilenet_features_on_digits(digits_spec, tmp_path):
    if not WEIGHTS.is_file():
        pytest.skip(f"{WEIGHTS} not found (set KERASCLF_ASSETS)")

    L = keras.layers
    size = 96
    backbone = keras.applications.MobileNet(alpha=0.25, include_top=False, weights=None,
                                            input_shape=(size, size, 3))
    backbone.load_weights(str(WEIGHTS))  # what weights="imagenet" does, offline
    inp = keras.Input((None, None, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="preprocess")(L.Resizing(size, size, name="resize")(inp))
    x = L.GlobalAveragePooling2D(name="features")(backbone(x))
    model = keras.Model(inp, L.Dense(10, activation="softmax", name="predictions")(x), name="mobilenet025")
    fs = extract_features(model, digits_spec, image_size=(size, size), cache_dir=tmp_path, verbose=0)
    assert fs.features.shape == (1797, 256)
    X, y = np.asarray(fs.features), fs.labels
    train = np.arange(len(y)) % 5 != 0
    acc = evaluate_head(fit_head(X[train], y[train]), X[~train], y[~train])["accuracy"]
    cm = fit_clusters(X, pca=50, k=10, standardize=True)
    s = cluster_scores(y, cm.predict(X))
    print(f"\nMobileNet-0.25 ImageNet features @96px on digits: {fs.images_per_second:.0f} images/s, "
          f"logreg acc {acc:.3f}, KMeans purity {s['purity']:.3f}, ARI {s['ari']:.3f}")
    assert acc > 0.8 and s["purity"] > 0.35
